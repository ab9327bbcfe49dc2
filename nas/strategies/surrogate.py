"""A linear surrogate: ridge regression of each objective on the one-hot encoding of an arch.

The cheapest model that learns additive effects (this op on that edge costs so much latency,
gains so much accuracy). Strategies use it to screen candidate children before spending a real
evaluation on one; it never replaces an evaluation.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from search_spaces import Arch, SearchSpace


class RidgeSurrogate:
    """Per-objective ridge regression on `space.to_vector` features, targets standardised."""

    def __init__(self, space: SearchSpace, alpha: float = 1.0):
        self.space = space
        self.alpha = alpha
        self._weights: np.ndarray | None = None
        self._mean = self._scale = np.zeros(0)
        self._features: dict[Arch, np.ndarray] = {}

    def features(self, archs: Sequence[Arch]) -> np.ndarray:
        rows = []
        for arch in archs:
            if arch not in self._features:
                self._features[arch] = np.append(self.space.to_vector(arch), 1.0)
            rows.append(self._features[arch])
        return np.stack(rows)

    def fit(self, archs: Sequence[Arch], targets: np.ndarray) -> "RidgeSurrogate":
        """`targets`: (n, m) array, one column per objective."""
        x = self.features(archs)
        y = np.asarray(targets, dtype=float).reshape(len(archs), -1)
        self._mean = y.mean(axis=0)
        self._scale = np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)
        gram = x.T @ x + self.alpha * np.eye(x.shape[1])
        self._weights = np.linalg.solve(gram, x.T @ ((y - self._mean) / self._scale))
        return self

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        if self._weights is None:
            raise RuntimeError("fit the surrogate before predicting")
        return self.features(archs) @ self._weights * self._scale + self._mean
