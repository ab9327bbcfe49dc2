"""Accuracy of latency predictions: share within +-5% / +-10%, MAPE and Kendall tau."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import kendalltau


def relative_errors(predicted: Sequence[float], measured: Sequence[float]) -> np.ndarray:
    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    return (p - m) / m


def accuracy(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """`within_5pct`, `within_10pct` (fractions), `mape` (percent), `kendall_tau`, `n`."""
    errors = np.abs(relative_errors(predicted, measured))
    tau = kendalltau(predicted, measured).statistic if len(errors) > 1 else float("nan")
    return {"within_5pct": float(np.mean(errors <= 0.05)),
            "within_10pct": float(np.mean(errors <= 0.10)),
            "mape": float(100.0 * np.mean(errors)),
            "kendall_tau": float(tau), "n": int(len(errors))}
