"""Pareto machinery against brute force: dominance, sorting, crowding, hypervolume (2-D and n-D)
and exclusive contributions, on random integer points (ties and duplicates included)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.objectives import Objective
from nas.pareto import (
    crowding_distance,
    dominates,
    hypervolume,
    hypervolume_contributions,
    hypervolume_improvements,
    nadir,
    non_dominated_sort,
    pareto_mask,
    to_minimization,
)


def point_sets(dims: tuple[int, ...] = (2, 3), max_points: int = 25, high: int = 6):
    """Lists of integer points (small range, so ties and duplicates are common)."""
    return st.sampled_from(dims).flatmap(lambda m: st.lists(
        st.lists(st.integers(0, high - 1), min_size=m, max_size=m), min_size=1,
        max_size=max_points)).map(lambda rows: np.array(rows, dtype=float))


def brute_mask(points: np.ndarray) -> np.ndarray:
    return np.array([not any(dominates(q, p) for q in points) for p in points])


def brute_volume(points: np.ndarray, reference: np.ndarray) -> float:
    """Count the unit cells of the integer grid that some point dominates."""
    cells = itertools.product(*(range(int(r)) for r in reference))
    return float(sum(any(np.all(p <= np.array(c)) for p in points) for c in cells))


@settings(max_examples=150, deadline=None)
@given(point_sets())
def test_pareto_mask_matches_brute_force(points):
    assert np.array_equal(pareto_mask(points), brute_mask(points))


@settings(max_examples=100, deadline=None)
@given(point_sets())
def test_non_dominated_sort_levels(points):
    fronts = non_dominated_sort(points)
    assert sorted(np.concatenate(fronts).tolist()) == list(range(len(points)))
    remaining = np.arange(len(points))
    for level, front in enumerate(fronts):
        # Each front is exactly the non-dominated part of what the earlier fronts left.
        expected = remaining[brute_mask(points[remaining])]
        assert sorted(front.tolist()) == sorted(expected.tolist())
        remaining = np.setdiff1d(remaining, front)
        if level:  # every member is dominated by some member of the previous front
            previous = points[fronts[level - 1]]
            assert all(any(dominates(q, points[i]) for q in previous) for i in front)


@settings(max_examples=100, deadline=None)
@given(point_sets(dims=(1, 2, 3, 4), max_points=12, high=5))
def test_hypervolume_matches_grid_count(points):
    reference = np.full(points.shape[1], 5.0)
    assert hypervolume(points, reference) == pytest.approx(brute_volume(points, reference))


@settings(max_examples=100, deadline=None)
@given(point_sets(dims=(2,), max_points=30, high=50))
def test_two_and_three_dimensional_paths_agree(points):
    reference = np.array([50.0, 50.0])
    lifted = np.column_stack([points, np.zeros(len(points))])  # a constant third objective
    assert hypervolume(lifted, [50.0, 50.0, 2.0]) == pytest.approx(
        2 * hypervolume(points, reference))


@settings(max_examples=100, deadline=None)
@given(point_sets(max_points=15))
def test_contributions_are_what_the_front_loses(points):
    reference = np.full(points.shape[1], 6.0)
    mask = pareto_mask(points)
    front = points[mask]
    total = hypervolume(front, reference)
    expected = np.zeros(len(points))
    for k, i in enumerate(np.flatnonzero(mask)):
        expected[i] = total - hypervolume(np.delete(front, k, axis=0), reference)
    assert np.allclose(hypervolume_contributions(points, reference), expected)


@settings(max_examples=50, deadline=None)
@given(point_sets(max_points=15), st.lists(st.integers(0, 5), min_size=3, max_size=3))
def test_adding_a_point_never_lowers_the_hypervolume(points, extra):
    reference = np.full(points.shape[1], 6.0)
    more = np.vstack([points, np.array(extra[: points.shape[1]], dtype=float)])
    assert hypervolume(more, reference) >= hypervolume(points, reference) - 1e-9


@settings(max_examples=60, deadline=None)
@given(point_sets(max_points=12), point_sets(max_points=6))
def test_improvements_are_what_each_candidate_adds(front, candidates):
    if front.shape[1] != candidates.shape[1]:
        candidates = np.resize(candidates, (len(candidates), front.shape[1]))
    reference = np.full(front.shape[1], 6.0)
    expected = [hypervolume(np.vstack([front, c]), reference) - hypervolume(front, reference)
                for c in candidates]
    np.testing.assert_allclose(hypervolume_improvements(candidates, front, reference), expected,
                               atol=1e-9)


def test_points_outside_the_reference_box_count_nothing():
    assert hypervolume([[1.0, 7.0], [7.0, 1.0], [6.0, 6.0]], [6.0, 6.0]) == 0.0
    assert hypervolume([[1.0, 2.0]], [3.0, 5.0]) == 6.0


def test_crowding_distance_favours_the_boundary_and_sparse_points():
    points = np.array([[0.0, 4.0], [1.0, 3.0], [1.5, 2.5], [4.0, 0.0]])
    distance = crowding_distance(points)
    assert np.isinf(distance[0]) and np.isinf(distance[3])
    assert distance[2] > distance[1]  # its neighbours are farther apart
    assert np.all(np.isinf(crowding_distance(points[:2])))


def test_nadir_and_minimisation_form():
    rows = [{"acc": 90.0, "ms": 30.0}, {"acc": 80.0, "ms": 10.0}, {"acc": 70.0, "ms": 20.0}]
    points = to_minimization(rows, [Objective("acc"), Objective("ms", "minimize")])
    assert points.tolist() == [[-90.0, 30.0], [-80.0, 10.0], [-70.0, 20.0]]
    assert nadir(points).tolist() == [-80.0, 30.0]  # the dominated third row is left out


def test_large_two_dimensional_sort_is_exact():
    rng = np.random.default_rng(0)
    points = rng.integers(0, 100, size=(3000, 2)).astype(float)
    fronts = non_dominated_sort(points)
    level = np.empty(len(points), dtype=int)
    for k, front in enumerate(fronts):
        level[front] = k
    # A point's level is one more than the highest level among the points dominating it.
    sample = rng.choice(len(points), 200, replace=False)
    for i in sample:
        dominating = np.all(points <= points[i], axis=1) & np.any(points < points[i], axis=1)
        expected = level[dominating].max() + 1 if dominating.any() else 0
        assert level[i] == expected
