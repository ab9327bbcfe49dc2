"""Few-shot latency of a new device from a handful of measured architectures.

The setting is HELP's (Lee et al., "HELP: Hardware-Adaptive Efficient Latency Prediction for
NAS via Meta-Learning", NeurIPS 2021): the latencies of every architecture of the space are
known on a few *reference* devices, and the new device has been measured on about ten of them.
HELP meta-learns a device embedding for this; here a closed-form Bayesian linear model does
the same job in milliseconds, because the reference devices already carry most of what a new
device will show, and what they miss is mostly additive in the architecture's choices.

Model (log latency of the new device, every block a ridge prior of its own strength):

    log y = b + Z w + D v + F u

- `Z`: the reference devices' log latencies, robustly standardised (median and inter-quartile
  range, clipped at +-6 so that a few degenerate architectures measured near zero on one device
  cannot dominate its scale). What the reference devices share with the new device.
- `D`: the same columns *denoised*: each projected on the architecture features by least
  squares over all architectures (the reference set is complete, so this costs nothing of
  the new device's budget). Phone columns measured in integer milliseconds are mostly noise at
  the scale of a ten-row fit; their additive part is not.
- `F`: the centred per-architecture features (e.g. the one-hot of each layer's op), with a
  stronger prior (`feature_penalty` times that of `Z`, `D`), so that with ten rows they only
  move what the reference devices cannot explain (accelerators unlike any reference).
- `b`: the absolute level, unpenalised: fitted apart from the ranking.

The overall strength of the priors, and whether the raw block `Z` enters at all (it helps
where the new device resembles one reference device closely, e.g. two TFLite phones; it hurts
where the reference columns are noisy), are chosen by exact leave-one-out error on the
measured rows (closed form for ridge). Measured on HELP's protocol (`bench/latency_fewshot.py`),
its mean Spearman beats both a plain ridge on the reference log latencies and HELP's published
figures (not on every device: docs/latency.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

GRID: tuple[float, ...] = tuple(float(g) for g in np.logspace(-3, 3, 13))
FEATURE_PENALTY = 10.0
CLIP = 6.0


class FewShotError(ValueError):
    """Inputs a few-shot fit cannot use (shapes, non-positive latencies, too few rows)."""


@dataclass
class FewShotFit:
    """A fitted new device: predictions for every architecture of the reference set."""

    predictions: np.ndarray  # (archs,) latency in the unit of the measured latencies
    blocks: tuple[str, ...]  # which blocks the leave-one-out choice kept ("Z", "D", "F")
    strength: float  # the chosen multiplier of every prior's penalty
    loo_rmse: float  # leave-one-out RMSE of log latency on the measured rows
    weights: np.ndarray = field(repr=False)  # intercept then block weights, design order
    design: np.ndarray = field(repr=False)  # (archs, 1 + columns) design of the chosen model

    def predict(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Latency of the given rows of the reference set (all when None)."""
        if rows is None:
            return self.predictions
        return np.exp(self.design[np.asarray(rows)] @ self.weights)


def standardise(columns: np.ndarray) -> np.ndarray:
    """Robust z-scores per column (median, IQR/1.349; std where the IQR is zero), clipped."""
    med = np.median(columns, axis=0)
    q75, q25 = np.quantile(columns, [0.75, 0.25], axis=0)
    scale = (q75 - q25) / 1.349
    std = columns.std(axis=0)
    scale = np.where(scale > 1e-12, scale, np.where(std > 1e-12, std, 1.0))
    z = np.clip((columns - med) / scale, -CLIP, CLIP)
    return z - z.mean(axis=0)


def _unit(columns: np.ndarray) -> np.ndarray:
    """Centred, unit-variance columns; constant columns dropped."""
    c = columns - columns.mean(axis=0)
    std = c.std(axis=0)
    keep = std > 1e-9 * max(1.0, float(std.max(initial=0.0)))
    return c[:, keep] / std[keep]


def reference_blocks(reference: np.ndarray,
                     features: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The design blocks ("Z", and "D", "F" when features are given) of a reference set.

    Depends only on the reference set: compute once and pass to `fit_fewshot(blocks=...)`
    when fitting many devices against the same references.
    """
    reference = np.asarray(reference, dtype=float)
    if reference.ndim != 2 or reference.shape[1] < 1 or reference.shape[0] < 2:
        raise FewShotError(f"reference must be (archs, devices), got shape {reference.shape}")
    if not np.all(np.isfinite(reference)) or np.any(reference <= 0):
        raise FewShotError("reference latencies must be finite and positive")
    out = {"Z": standardise(np.log(reference))}
    if features is not None:
        features = np.asarray(features, dtype=float)
        if features.ndim != 2 or features.shape[0] != reference.shape[0]:
            raise FewShotError(f"features must be ({reference.shape[0]}, k), "
                               f"got shape {features.shape}")
        if not np.all(np.isfinite(features)):
            raise FewShotError("features must be finite")
        one = np.column_stack([np.ones(len(features)), features])
        coef = np.linalg.lstsq(one, out["Z"], rcond=None)[0]
        out["D"] = _unit(one @ coef)
        out["F"] = features - features.mean(axis=0)
    return out


def loo_ridge(x: np.ndarray, t: np.ndarray,
              penalty: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
    """Ridge weights and exact leave-one-out mean squared error (a zero penalty leaves its
    column free). `t` is one target (a float error) or one per column (an error each)."""
    a = x.T @ x + np.diag(penalty)
    inv = np.linalg.pinv(a)
    w = inv @ (x.T @ t)
    hat = np.einsum("ij,jk,ik->i", x, inv, x)
    leverage = np.clip(1.0 - hat, 1e-6, None).reshape((-1,) + (1,) * (t.ndim - 1))
    err = np.mean(((t - x @ w) / leverage) ** 2, axis=0)
    return w, float(err) if t.ndim == 1 else err


def best_ridge(x: np.ndarray, t: np.ndarray, penalty: np.ndarray,
               grid: tuple[float, ...] = GRID) -> tuple[float, float, np.ndarray]:
    """(leave-one-out error, strength, weights) of the ridge whose penalty, `penalty` times a
    strength of `grid`, has the least leave-one-out error."""
    best: tuple[float, float, np.ndarray] | None = None
    for g in grid:
        w, loo = loo_ridge(x, t, penalty * g)
        if best is None or loo < best[0]:
            best = (float(loo), g, w)
    assert best is not None
    return best


def fit_fewshot(reference: np.ndarray, rows: np.ndarray, latencies: np.ndarray,
                features: np.ndarray | None = None, *,
                feature_penalty: float = FEATURE_PENALTY, grid: tuple[float, ...] = GRID,
                blocks: dict[str, np.ndarray] | None = None) -> FewShotFit:
    """Fit a new device from `latencies` measured on the architectures `rows`.

    reference: (archs, devices) latencies of every architecture on the reference devices.
    rows: indices (into the archs) of the measured architectures, at least 3, distinct.
    latencies: (len(rows),) measured latencies of the new device, positive.
    features: optional (archs, k) per-architecture features (one-hot layer ops, op counts...).
    Returns predictions for every architecture (measured ones included).
    """
    if blocks is None:
        blocks = reference_blocks(reference, features)
    n_archs = len(blocks["Z"])
    rows = np.asarray(rows)
    y = np.asarray(latencies, dtype=float)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise FewShotError("rows must be a 1-d array of integer indices")
    if len(rows) != len(y):
        raise FewShotError(f"{len(rows)} rows but {len(y)} latencies")
    if len(rows) < 3:
        raise FewShotError(f"need at least 3 measured rows, got {len(rows)}")
    if len(np.unique(rows)) != len(rows) or rows.min() < 0 or rows.max() >= n_archs:
        raise FewShotError(f"rows must be distinct indices in [0, {n_archs})")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise FewShotError("measured latencies must be finite and positive")
    if feature_penalty <= 0:
        raise FewShotError("feature_penalty must be positive")
    t = np.log(y)
    candidates = [("Z", "D", "F"), ("D", "F")] if "D" in blocks else [("Z",)]
    best: tuple[float, tuple[str, ...], float, np.ndarray, np.ndarray] | None = None
    for names in candidates:
        x = np.column_stack([np.ones(n_archs)] + [blocks[b] for b in names])
        base = np.concatenate([[0.0]] + [
            np.full(blocks[b].shape[1], feature_penalty if b == "F" else 1.0) for b in names])
        loo, g, w = best_ridge(x[rows], t, base, grid)
        if best is None or loo < best[0]:
            best = (loo, names, g, w, x)
    assert best is not None
    loo, names, g, w, x = best
    return FewShotFit(predictions=np.exp(x @ w), blocks=names, strength=g,
                      loo_rmse=float(np.sqrt(loo)), weights=w, design=x)


def plain_ridge(reference: np.ndarray, rows: np.ndarray, latencies: np.ndarray,
                alpha: float = 1.0) -> np.ndarray:
    """The baseline: ridge of the new device's log latency on the references' log latencies.

    Columns centred on the measured rows, intercept free, no standardisation (as scikit-learn's
    `Ridge(alpha)` on log latencies). Returns predictions for every architecture.
    """
    log_ref = np.log(np.asarray(reference, dtype=float))
    rows = np.asarray(rows)
    t = np.log(np.asarray(latencies, dtype=float))
    xt = log_ref[rows]
    mu, tm = xt.mean(axis=0), t.mean()
    a = xt - mu
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (t - tm))
    return np.exp(tm + (log_ref - mu) @ w)
