"""Non-negative ridge regression on relative error, with optional robust reweighting.

Latency is a sum of non-negative per-stage costs, so coefficients are constrained >= 0 (the
intercept is free). Rows are divided by the target, so the fit minimises relative error, the
unit the targets are stated in. `robust` reweights rows by Tukey's bisquare of their relative
residual (centred on its median, scale from the median absolute deviation): published
latency columns contain a minority of measurements in a second mode (GPU clock states,
drifting segments), which plain least squares averages into every prediction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

TUKEY_C = 4.685
IRLS_STEPS = 12
MIN_SCALE = 0.005  # relative residual scale floor: noise-free rows must not all be outliers


@dataclass(frozen=True)
class LinearFit:
    coef: np.ndarray
    intercept: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef + self.intercept


def _solve(z: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    rows = np.sqrt(w) / y
    ones = np.ones((len(y), 1))
    design = np.hstack([z, ones, -ones]) * rows[:, None]
    target = np.sqrt(w)
    if alpha > 0:
        penalty = np.zeros((z.shape[1], z.shape[1] + 2))
        penalty[:, : z.shape[1]] = np.sqrt(alpha * len(y)) * np.eye(z.shape[1])
        design = np.vstack([design, penalty])
        target = np.concatenate([target, np.zeros(z.shape[1])])
    beta, _ = nnls(design, target, maxiter=50 * design.shape[1])
    return beta


def fit_nonneg(x: np.ndarray, y: np.ndarray, alpha: float = 1e-3,
               robust: bool = True) -> LinearFit:
    """y ~ x @ coef + intercept with coef >= 0, minimising squared relative error plus
    `alpha` * |coef|^2 on columns scaled to unit mean."""
    scale = np.abs(x).mean(axis=0)
    scale[scale == 0] = 1.0
    z = x / scale
    w = np.ones(len(y))
    beta = _solve(z, y, w, alpha)
    if robust and len(y) >= 10:
        for _ in range(IRLS_STEPS):
            pred = z @ beta[:-2] + beta[-2] - beta[-1]
            r = (pred - y) / y
            r = r - np.median(r)  # the current fit may be biased by the rows to down-weight
            mad = max(1.4826 * np.median(np.abs(r)), MIN_SCALE)
            u = r / (TUKEY_C * mad)
            w_new = np.where(np.abs(u) < 1, (1 - u ** 2) ** 2, 0.0)
            if w_new.sum() < z.shape[1] + 2:
                break
            if np.allclose(w_new, w, atol=1e-4):
                break
            w = w_new
            beta = _solve(z, y, w, alpha)
    return LinearFit(beta[:-2] / scale, float(beta[-2] - beta[-1]))
