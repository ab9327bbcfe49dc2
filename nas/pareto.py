"""Pareto fronts: dominance, non-dominated sorting, crowding distance and hypervolume; and the
ranked front of a run's rows with the hypervolume box it is measured in.

The array functions work on a float array of shape (n, m) in which each column is MINIMISED;
use `to_minimization` to turn metric values with `Objective` directions into that form.

A run's hypervolume is reported as the share of a box that the front dominates, so it is
unitless and comparable between runs on the same box. Per objective the box runs from the ideal
to the reference value: a cost (minimised) from 0 to its budget bound, or without a bound to the
cost of the space's largest architecture; a percentage accuracy (supernet, train and table
estimators) from 100 to 0; any other maximised score (a zero-cost proxy) from the best to the
worst value on the front, less a 10% margin.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.objectives import Constraint, Objective, all_satisfied

SCORE_MARGIN = 0.1  # share of a score's front range added below it (see `hypervolume_box`)


def to_minimization(rows: Sequence[Mapping[str, float]],
                    objectives: Sequence[Objective]) -> np.ndarray:
    """(n, m) array of the objectives of each row, negated where the objective is maximised."""
    values = np.array([[float(r[o.metric]) for o in objectives] for r in rows], dtype=float)
    return values.reshape(len(rows), len(objectives)) * -np.array([o.sign() for o in objectives])


def _as_points(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    array = np.asarray(points, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n, m), got shape {array.shape}")
    return array


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """True when `a` is no worse than `b` everywhere and better somewhere (minimisation)."""
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_mask(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Boolean mask of the non-dominated rows. Duplicated points are all kept."""
    pts = _as_points(points)
    n, m = pts.shape
    if n == 0:
        return np.zeros(0, dtype=bool)
    if m == 1:
        return pts[:, 0] == pts[:, 0].min()
    if m == 2:
        return _pareto_mask_2d(pts)
    # Keep a shrinking set of candidates: each pass removes everything the next survivor
    # dominates, so the cost is about n * (front size) instead of n^2.
    candidates = np.arange(n)
    i = 0
    while i < len(candidates):
        p = pts[candidates[i]]
        sub = pts[candidates]
        keep = ~(np.all(sub >= p, axis=1) & np.any(sub > p, axis=1))
        i = int(keep[:i].sum()) + 1  # p never dominates itself, so it stays: step past it
        candidates = candidates[keep]
    mask = np.zeros(n, dtype=bool)
    mask[candidates] = True
    return mask


def _pareto_mask_2d(pts: np.ndarray) -> np.ndarray:
    """Sweep in order of the first objective (ties by the second): a distinct point is
    non-dominated when its second objective beats every distinct point before it."""
    unique, inverse = np.unique(pts, axis=0, return_inverse=True)  # sorted by x, then y
    before = np.minimum.accumulate(np.concatenate([[np.inf], unique[:-1, 1]]))
    return (unique[:, 1] < before)[inverse.reshape(-1)]


def non_dominated_sort(points: np.ndarray | Sequence[Sequence[float]]) -> list[np.ndarray]:
    """Fronts as arrays of row indices: front 0 is non-dominated, front 1 is non-dominated once
    front 0 is removed, and so on."""
    pts = _as_points(points)
    if pts.shape[1] == 2 and len(pts):
        return _sort_2d(pts)
    remaining = np.arange(len(pts))
    fronts: list[np.ndarray] = []
    while len(remaining):
        mask = pareto_mask(pts[remaining])
        fronts.append(remaining[mask])
        remaining = remaining[~mask]
    return fronts


def _sort_2d(pts: np.ndarray) -> list[np.ndarray]:
    """Non-dominated sorting in O(n log n): in order of the first objective, a distinct point
    joins the first level whose smallest second objective so far is larger than its own (every
    point before it in that order is no worse on the first objective)."""
    unique, inverse = np.unique(pts, axis=0, return_inverse=True)  # sorted by x, then y
    lowest: list[float] = []  # per level, the smallest y so far (increasing with the level)
    level = np.empty(len(unique), dtype=np.int64)
    for i, y in enumerate(unique[:, 1]):
        k = bisect.bisect_right(lowest, y)
        if k == len(lowest):
            lowest.append(y)
        else:
            lowest[k] = y
        level[i] = k
    of_row = level[inverse.reshape(-1)]
    return [np.flatnonzero(of_row == k) for k in range(len(lowest))]


def crowding_distance(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """NSGA-II crowding distance of each row within its set (boundary points get infinity)."""
    pts = _as_points(points)
    n, m = pts.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(pts[:, j], kind="stable")
        column = pts[order, j]
        span = column[-1] - column[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (column[2:] - column[:-2]) / span
    return distance


def hypervolume(points: np.ndarray | Sequence[Sequence[float]],
                reference: Sequence[float]) -> float:
    """Volume dominated by `points` and bounded by `reference` (minimisation). Points that do
    not strictly beat the reference in every objective contribute nothing."""
    pts = _as_points(points)
    ref = np.asarray(reference, dtype=float)
    if pts.shape[1] != len(ref):
        raise ValueError(f"reference has {len(ref)} values for {pts.shape[1]} objectives")
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = np.unique(pts[pareto_mask(pts)], axis=0)
    return _hv(pts, ref)


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    m = pts.shape[1]
    if m == 1:
        return float(ref[0] - pts[:, 0].min())
    if m == 2:
        return _hv_2d(pts, ref)
    # Slice along the last objective: between consecutive values, the dominated region is the
    # (m-1)-D hypervolume of the points already passed, times the slab height.
    order = np.argsort(pts[:, -1], kind="stable")
    pts = pts[order]
    total = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        height = upper - pts[i, -1]
        if height > 0:
            head = pts[: i + 1, :-1]
            total += _hv(head[pareto_mask(head)], ref[:-1]) * height
    return float(total)


def _hv_2d(pts: np.ndarray, ref: np.ndarray) -> float:
    order = np.lexsort((pts[:, 1], pts[:, 0]))
    total, best_y = 0.0, ref[1]
    for x, y in pts[order]:
        if y < best_y:
            total += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(total)


def hypervolume_contributions(points: np.ndarray | Sequence[Sequence[float]],
                              reference: Sequence[float]) -> np.ndarray:
    """Exclusive contribution of each non-dominated row: the hypervolume the front (the
    non-dominated rows) loses without it. Dominated rows and duplicated points get 0."""
    pts = _as_points(points)
    ref = np.asarray(reference, dtype=float)
    if pts.shape[1] == 2:
        return _contributions_2d(pts, ref)
    out = np.zeros(len(pts))
    idx = np.flatnonzero(pareto_mask(pts))
    front = pts[idx]
    total = hypervolume(front, ref)
    for k, i in enumerate(idx):
        out[i] = total - hypervolume(np.delete(front, k, axis=0), ref)
    return out


def _contributions_2d(pts: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """In 2-D a front point's exclusive box spans to its neighbours on the front."""
    out = np.zeros(len(pts))
    inside = np.all(pts < ref, axis=1)
    mask = np.zeros(len(pts), dtype=bool)
    mask[inside] = pareto_mask(pts[inside])
    idx = np.flatnonzero(mask)
    unique, first, counts = np.unique(pts[idx], axis=0, return_index=True, return_counts=True)
    xs = np.append(unique[:, 0], ref[0])  # x ascending, y descending along the front
    ys = np.concatenate([[ref[1]], unique[:, 1]])
    boxes = (xs[1:] - xs[:-1]) * (ys[:-1] - ys[1:])
    out[idx[first]] = np.where(counts == 1, boxes, 0.0)
    return out


def hypervolume_improvements(candidates: np.ndarray | Sequence[Sequence[float]],
                              front: np.ndarray | Sequence[Sequence[float]],
                              reference: Sequence[float]) -> np.ndarray:
    """For each candidate point, the hypervolume it would add to `front` (minimisation, bounded
    by `reference`); 0 for a candidate the front dominates. Vectorised in 2-D."""
    cands = _as_points(candidates)
    ref = np.asarray(reference, dtype=float)
    pts = _as_points(front) if len(front) else np.zeros((0, len(ref)))
    pts = pts[np.all(pts < ref, axis=1)]
    if len(ref) != 2:
        base = hypervolume(pts, ref) if len(pts) else 0.0
        return np.array([hypervolume(np.vstack([pts, c]), ref) - base for c in cands])
    pts = pts[pareto_mask(pts)] if len(pts) else pts
    pts = pts[np.argsort(pts[:, 0], kind="stable")]
    # The front's staircase: at x in [starts[j], ends[j]) it dominates every y >= levels[j].
    starts = np.concatenate([[-np.inf], pts[:, 0]])
    ends = np.append(pts[:, 0], ref[0])
    levels = np.concatenate([[ref[1]], pts[:, 1]])
    width = np.clip(np.minimum(ends[None, :], ref[0])
                    - np.maximum(starts[None, :], cands[:, :1]), 0.0, None)
    height = np.clip(levels[None, :] - cands[:, 1:2], 0.0, None)
    return (width * height).sum(axis=1)


def nadir(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Worst value of each objective over the non-dominated rows (the front's nadir point)."""
    pts = _as_points(points)
    return pts[pareto_mask(pts)].max(axis=0)


# --- the front of a run's rows -------------------------------------------------------------------
def usable(row: Mapping[str, Any], objectives: Sequence[Objective]) -> bool:
    """No error and a finite value for every objective."""
    if row.get("error"):
        return False
    for objective in objectives:
        value = row.get(objective.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            return False
    return True


def pareto_rows(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective],
                constraints: Sequence[Constraint]) -> list[dict[str, Any]]:
    """Non-dominated usable rows within every constraint, best first on the first objective
    (ties: better on the next), with `rank` from 1."""
    candidates = [dict(r) for r in rows
                  if usable(r, objectives) and all_satisfied(constraints, r)]
    if not candidates:
        return []
    points = to_minimization(candidates, objectives)
    front = [r for r, keep in zip(candidates, pareto_mask(points)) if keep]
    front.sort(key=lambda r: tuple(-o.sign() * float(r[o.metric]) for o in objectives) +
               (str(r.get("key")),))
    for rank, row in enumerate(front, 1):
        row["rank"] = rank
    return front


@dataclass(frozen=True)
class Box:
    """Per objective, the ideal and the reference value (natural units)."""

    ideal: tuple[float, ...]
    reference: tuple[float, ...]

    def as_dict(self, objectives: Sequence[Objective]) -> dict[str, list[float]]:
        return {o.metric: [i, r] for o, i, r in zip(objectives, self.ideal, self.reference)}

    def union(self, other: Box, objectives: Sequence[Objective]) -> Box:
        """The box that holds both (for comparing runs on one scale)."""
        ideal, reference = [], []
        for o, i1, r1, i2, r2 in zip(objectives, self.ideal, self.reference, other.ideal,
                                     other.reference):
            if o.direction == "maximize":
                ideal.append(max(i1, i2))
                reference.append(min(r1, r2))
            else:
                ideal.append(min(i1, i2))
                reference.append(max(r1, r2))
        return Box(tuple(ideal), tuple(reference))


def hypervolume_box(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective],
                    constraints: Sequence[Constraint], estimator: str,
                    largest: Mapping[str, float]) -> Box:
    """The box of the module docstring. `largest`: the cost metrics of the space's largest
    architecture (the reference of an unbounded cost)."""
    bounds = {c.metric: c.bound for c in constraints}
    ideal, reference = [], []
    for objective in objectives:
        metric = objective.metric
        if objective.direction == "minimize":
            ideal.append(0.0)
            worst = bounds.get(metric, largest.get(metric))
            if worst is None:
                values = _values(rows, metric)
                worst = max(values) if values else 1.0
            reference.append(float(worst))
        elif metric.startswith("acc") and _percent(estimator):
            ideal.append(100.0)
            reference.append(0.0)
        else:
            # A score without a scale (a zero-cost proxy): the front's own range, widened by
            # a margin so that its end points count; the worst trials (proxies have outliers
            # of -1e6) would squash every front to the same share.
            values = _values(pareto_rows(rows, objectives, constraints), metric) or \
                _values(rows, metric)
            high = max(values) if values else 1.0
            low = min(values) if values else 0.0
            margin = SCORE_MARGIN * ((high - low) or abs(high) or 1.0)
            ideal.append(high)
            reference.append(low - margin)
    return Box(tuple(ideal), tuple(reference))


def _values(rows: Iterable[Mapping[str, Any]], metric: str) -> list[float]:
    out = []
    for row in rows:
        value = row.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(float(value)) and not row.get("error"):
            out.append(float(value))
    return out


def normalised_hypervolume(front: Sequence[Mapping[str, Any]], objectives: Sequence[Objective],
                           box: Box) -> float:
    """Share of `box` dominated by `front` (0 when empty; 1 = the ideal point)."""
    if not front:
        return 0.0
    points = []
    for row in front:
        point = []
        for o, best, worst in zip(objectives, box.ideal, box.reference):
            span = abs(worst - best) or 1.0
            point.append(abs(float(row[o.metric]) - best) / span
                         if (float(row[o.metric]) - best) * (worst - best) >= 0 else 0.0)
        points.append(point)
    return float(hypervolume(np.array(points), [1.0] * len(objectives)))


def _percent(estimator: str | None) -> bool:
    """Whether the estimator's `acc` is a top-1 percentage (so its box runs 100 to 0)."""
    from estimators.registry import get_estimator, list_estimators

    return estimator in list_estimators() and get_estimator(estimator).unit == "percent"
