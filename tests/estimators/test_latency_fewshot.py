"""Few-shot latency fit (`estimators.latency.fewshot`) on small synthetic reference sets."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from estimators.latency.fewshot import FewShotError, fit_fewshot, plain_ridge


def _space(seed: int = 0, archs: int = 600, layers: int = 6, ops: int = 4, devices: int = 5):
    """Additive per-layer op costs; devices differ by a positive mix of three cost profiles."""
    rng = np.random.default_rng(seed)
    genes = rng.integers(0, ops, size=(archs, layers))
    onehot = np.zeros((archs, layers * ops))
    onehot[np.arange(archs)[:, None], np.arange(layers) * ops + genes] = 1.0
    profiles = rng.uniform(0.2, 2.0, size=(3, layers * ops))
    mix = rng.uniform(0.2, 1.0, size=(devices, 3))
    reference = (1.0 + onehot @ profiles.T @ mix.T) * rng.lognormal(0, 0.01, (archs, devices))
    return rng, onehot, profiles, reference


def test_new_device_as_a_mix_of_references_ranked_from_ten_rows():
    rng, onehot, profiles, reference = _space()
    new = (1.0 + onehot @ profiles.T @ np.array([0.7, 0.2, 0.5])) * rng.lognormal(0, 0.01, 600)
    rows = rng.choice(600, 10, replace=False)
    fit = fit_fewshot(reference, rows, new[rows], onehot)
    rest = np.setdiff1d(np.arange(600), rows)
    assert spearmanr(fit.predictions[rest], new[rest])[0] > 0.95
    assert np.median(np.abs(fit.predictions[rest] / new[rest] - 1)) < 0.05
    assert fit.predict(rows[:3]) == pytest.approx(fit.predictions[rows[:3]])


def test_device_specific_feature_effect_is_picked_up():
    rng, onehot, profiles, reference = _space(seed=1)
    # An op the references find cheap is slow on the new device (an accelerator unlike them).
    special = np.zeros(onehot.shape[1])
    special[3::4] = 3.0
    new = 1.0 + onehot @ (profiles.mean(0) + special)
    hits = [[], []]
    for seed in range(5):
        rows = np.random.default_rng(seed).choice(600, 20, replace=False)
        rest = np.setdiff1d(np.arange(600), rows)
        with_f = fit_fewshot(reference, rows, new[rows], onehot).predictions
        without = plain_ridge(reference, rows, new[rows])
        hits[0].append(spearmanr(with_f[rest], new[rest])[0])
        hits[1].append(spearmanr(without[rest], new[rest])[0])
    assert np.mean(hits[0]) > 0.8
    assert np.mean(hits[0]) > np.mean(hits[1]) + 0.3


def test_reference_only_fit_without_features():
    rng, _, _, reference = _space(seed=2)
    new = reference[:, 0] ** 0.5 * reference[:, 1] ** 0.5
    rows = rng.choice(600, 10, replace=False)
    fit = fit_fewshot(reference, rows, new[rows])
    assert fit.blocks == ("Z",)
    assert spearmanr(fit.predictions, new)[0] > 0.95


def test_bad_inputs_raise_clear_errors():
    rng, onehot, _, reference = _space(seed=3, archs=50)
    rows = np.arange(10)
    y = reference[rows, 0]
    with pytest.raises(FewShotError, match="positive"):
        fit_fewshot(reference, rows, -y)
    with pytest.raises(FewShotError, match="rows but"):
        fit_fewshot(reference, rows, y[:5])
    with pytest.raises(FewShotError, match="at least 3"):
        fit_fewshot(reference, rows[:2], y[:2])
    with pytest.raises(FewShotError, match="distinct"):
        fit_fewshot(reference, np.array([0, 0, 1]), y[:3])
    with pytest.raises(FewShotError, match="features"):
        fit_fewshot(reference, rows, y, onehot[:10])
    bad = reference.copy()
    bad[0, 0] = 0.0
    with pytest.raises(FewShotError, match="reference"):
        fit_fewshot(bad, rows, y)
