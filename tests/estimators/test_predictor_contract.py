"""The contract every performance predictor keeps (`estimators.predictors`), checked for each
one in the registry on NB201 cells with a synthetic target: it learns an additive signal, its
spread is positive and larger away from the training archs, it is deterministic given its seed,
extra features that carry signal help it, and misuse gives one-line errors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import kendalltau

from estimators.predictors import (
    PREDICTORS,
    GeneEncoder,
    PredictorError,
    get_predictor,
    list_predictors,
    make_predictor,
)
from search_spaces import get_space

SPACE = get_space("nb201")
NAMES = list(PREDICTORS)


def archs_and_signal(count: int, seed: int):
    """Distinct random cells and an additive target: a weight per (edge, op)."""
    rng = np.random.default_rng(seed)
    archs = list(dict.fromkeys(SPACE.sample(rng) for _ in range(3 * count)))[:count]
    weights = np.random.default_rng(99).normal(size=GeneEncoder(SPACE).width)
    return archs, GeneEncoder(SPACE)(archs) @ weights


@pytest.fixture(scope="module")
def data():
    archs, values = archs_and_signal(260, seed=1)
    return archs[:60], values[:60], archs[60:], values[60:]


@pytest.mark.parametrize("name", NAMES)
def test_learns_an_additive_signal(name, data):
    train, y, test, truth = data
    prediction = make_predictor(name, SPACE).fit(train, y).predict(test)
    assert prediction.mean.shape == prediction.std.shape == (len(test),)
    assert np.all(np.isfinite(prediction.mean)) and np.all(prediction.std > 0)
    assert kendalltau(prediction.mean, truth)[0] > 0.6


@pytest.mark.parametrize("name", NAMES)
def test_spread_is_larger_away_from_the_training_archs(name, data):
    train, y, test, _ = data
    model = make_predictor(name, SPACE).fit(train, y)
    assert model.predict(train).std.mean() < model.predict(test).std.mean()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model_and_draws_follow_the_rng(name, data):
    train, y, test, _ = data
    first = make_predictor(name, SPACE, seed=3).fit(train, y)
    second = make_predictor(name, SPACE, seed=3).fit(train, y)
    np.testing.assert_array_equal(first.predict(test).mean, second.predict(test).mean)
    draw = first.sample(test, np.random.default_rng(0))
    np.testing.assert_array_equal(draw, second.sample(test, np.random.default_rng(0)))
    assert not np.array_equal(draw, first.sample(test, np.random.default_rng(1)))


@pytest.mark.parametrize("name", NAMES)
def test_features_that_carry_signal_help(name):
    archs, genes = archs_and_signal(200, seed=2)
    hidden = np.random.default_rng(5).normal(size=len(archs))
    y = 0.3 * genes + 3.0 * hidden  # most of the target is invisible in the genes
    features = np.column_stack([hidden, np.full(len(archs), np.nan)])  # a NaN column is ignored
    plain = make_predictor(name, SPACE).fit(archs[:60], y[:60]).predict(archs[60:]).mean
    model = make_predictor(name, SPACE).fit(archs[:60], y[:60], features[:60])
    informed = model.predict(archs[60:], features[60:]).mean
    assert kendalltau(informed, y[60:])[0] > kendalltau(plain, y[60:])[0] + 0.3


@pytest.mark.parametrize("name", NAMES)
def test_misuse_gives_one_line_errors(name, data):
    train, y, test, _ = data
    fresh = make_predictor(name, SPACE)
    cases = [
        (lambda: fresh.predict(test), "before fit"),
        (lambda: fresh.fit(train, y[:-1]), "values"),
        (lambda: fresh.fit(train[:3], [1.0, np.nan, np.nan]), "at least"),
        (lambda: make_predictor(name, SPACE).fit(train, y).predict(test, np.ones((len(test), 2))),
         "features"),
        (lambda: make_predictor(name, SPACE).fit(train, y).predict(
            [get_space("fbnet").sample(np.random.default_rng(0))]), "not an architecture"),
        (lambda: make_predictor(name, SPACE, bogus=1), "unknown options"),
        (lambda: make_predictor("nope", SPACE), "known: mlp"),
    ]
    for call, words in cases:
        with pytest.raises(PredictorError, match=words) as info:
            call()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_predictor_describes_itself(name):
    cls = get_predictor(name)
    assert cls.name == name and cls.summary
    for spec in dataclasses.fields(cls.Options):
        assert spec.metadata["help"], f"{name}.{spec.name} has no help"
    first = dataclasses.fields(cls.Options)[0].name
    with pytest.raises(PredictorError, match=f"predictor {name!r}: {first}"):
        make_predictor(name, SPACE, **{first: -1})
    assert list_predictors() == tuple(PREDICTORS)


@pytest.mark.parametrize("name", NAMES)
def test_rank_targets_learn_in_value_units_and_ignore_monotone_rescaling(name, data):
    train, y, test, truth = data
    model = make_predictor(name, SPACE, targets="ranks").fit(train, y)
    prediction = model.predict(test)
    assert kendalltau(prediction.mean, truth)[0] > 0.6
    assert np.all(prediction.std > 0) and np.all(np.isfinite(prediction.mean))
    span = np.ptp(y)
    assert y.min() - span < prediction.mean.min() and prediction.mean.max() < y.max() + span
    draw = model.sample(test, np.random.default_rng(0))
    assert kendalltau(draw, prediction.mean)[0] > 0.3  # draws in the same units, around it
    # the ranks of exp(y) are those of y: the same model up to the map back, so the same order
    squashed = make_predictor(name, SPACE, targets="ranks").fit(train, np.exp(y))
    assert kendalltau(squashed.predict(test).mean, prediction.mean)[0] > 0.999


def test_rank_scores_map_back_to_the_values_and_extend_past_both_ends():
    from estimators.predictors.base import RankScores

    values = np.array([3.0, 1.0, 2.0, 2.0, 10.0])
    ranks = RankScores(values)
    assert ranks.scores[2] == ranks.scores[3]  # ties share their mid-rank
    assert np.argsort(ranks.scores, kind="stable").tolist() == [1, 2, 3, 0, 4]
    np.testing.assert_allclose(ranks.back(ranks.scores), values)
    top, second = ranks.scores[4], ranks.scores[0]
    slope = (10.0 - 3.0) / (top - second)
    np.testing.assert_allclose(ranks.back(np.array([top + 1.0])), [10.0 + slope])
    assert ranks.back(np.array([-10.0]))[0] < 1.0
