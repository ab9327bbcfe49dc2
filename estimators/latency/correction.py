"""Fitting the whole-network correction: measured ~= overhead + scale * (sum of blocks).

Summed isolated blocks miss what only a whole network has (cold caches between blocks,
Python dispatch between modules, allocator traffic). Both terms are fitted on a handful of
networks by least squares on the relative error, the quantity the targets are stated in.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from estimators.latency.store import Correction

ROBUST_FROM = 10  # networks from which one badly measured network is down-weighted


def fit_correction(block_sums: Sequence[float], measured: Sequence[float]) -> Correction:
    """Overhead and scale minimising the squared relative error (robustly reweighted from
    ROBUST_FROM networks on); scale only if the two-term fit is degenerate (one network, a
    non-positive scale, or a negative overhead: whole-network costs only add to the blocks,
    and a negative overhead fitted on a few noisy networks predicts 0 ms below their range)."""
    sums = np.asarray(block_sums, dtype=float)
    target = np.asarray(measured, dtype=float)
    if len(sums) == 0 or np.any(target <= 0):
        raise ValueError("a correction needs at least one positive measurement")
    if len(sums) >= ROBUST_FROM and np.ptp(sums) > 0:
        from estimators.latency.regression import fit_nonneg

        fit = fit_nonneg(sums[:, None], target, alpha=0.0, robust=True)
        if fit.coef[0] > 0 and fit.intercept >= 0:
            return Correction(fit.intercept, float(fit.coef[0]))
    weights = 1.0 / target
    if len(sums) >= 2 and np.ptp(sums) > 0:
        design = np.stack([weights, sums * weights], axis=1)
        (overhead, scale), *_ = np.linalg.lstsq(design, np.ones_like(target), rcond=None)
        if scale > 0 and overhead >= 0:
            return Correction(float(overhead), float(scale))
    # scale only: minimise sum((s*x/y - 1)^2)
    ratio = sums * weights
    return Correction(0.0, float(ratio.sum() / (ratio ** 2).sum()))


def fit_linear(x: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(intercept, slope) of a single-feature model by relative least squares (the FLOPs-only
    baseline uses this with x = FLOPs)."""
    correction = fit_correction(x, measured)
    return correction.overhead_ms, correction.scale
