"""`gp`: a Gaussian process on the one-hot genes (the classic Bayesian-optimisation surrogate).

Kernel: exp(-d / length) with d the squared Euclidean distance of the encodings, i.e. twice the
number of genes two archs differ in (plus the features' squared distance), times a signal
variance, plus a noise variance. The length scale and the noise share are chosen per fit by the
marginal likelihood over a small grid (exact, no gradient steps: a fit is a few Cholesky
factorisations). `sample` draws each arch independently from its posterior mean and spread
(BANANAS' independent Thompson sampling; a joint draw costs a factorisation of the candidates'
covariance per draw and did not search better).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from estimators.base import option
from estimators.predictors.base import Predictor, PredictorOptions

LENGTHS = (1.0, 2.0, 4.0, 8.0, 16.0, 64.0)  # genes changed (times 2, see kernel); 64: features
NOISES = (0.01, 0.05, 0.2, 0.5)  # share of the (standardised, unit) variance that is noise
JITTER = 1e-8


@dataclass(frozen=True)
class GPOptions(PredictorOptions):
    length: float | None = option(None, "kernel length scale in genes changed; None: chosen "
                                        "by marginal likelihood", "positive")
    noise: float | None = option(None, "noise share of the variance; None: chosen by marginal "
                                       "likelihood", "positive")


class GaussianProcess(Predictor):
    name = "gp"
    summary = "Gaussian process on the one-hot genes, hyperparameters by marginal likelihood"
    Options = GPOptions

    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        self._x = x
        distances = _squared_distances(x, x)
        lengths = (self.opts.length,) if self.opts.length else LENGTHS
        noises = (self.opts.noise,) if self.opts.noise else NOISES
        best = None
        for length in lengths:
            signal = np.exp(-distances / (2.0 * length))
            for noise in noises:
                cov = (1 - noise) * signal + (noise + JITTER) * np.eye(len(y))
                chol = np.linalg.cholesky(cov)
                alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
                evidence = -0.5 * y @ alpha - np.log(np.diag(chol)).sum()
                if best is None or evidence > best[0]:
                    best = (evidence, length, noise, chol, alpha)
        _, self.length, self.noise, self._chol, self._alpha = best

    def _cross(self, x: np.ndarray) -> np.ndarray:
        return (1 - self.noise) * np.exp(-_squared_distances(x, self._x) / (2.0 * self.length))

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cross = self._cross(x)
        mean = cross @ self._alpha
        v = np.linalg.solve(self._chol, cross.T)
        variance = np.maximum((1 - self.noise) - (v * v).sum(axis=0), 0.0)
        return mean, np.sqrt(variance + JITTER)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)
