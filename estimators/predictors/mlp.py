"""`mlp`: an ensemble of small neural networks (BANANAS' predictor, White et al. 2021).

Each member is a fully connected ReLU network trained from its own random initialisation by
full-batch Adam on the mean squared error; the ensemble's mean is the prediction and the spread
of its members the uncertainty (BANANAS uses the same, with independent Thompson sampling on a
Gaussian of that mean and spread). All members train at once as one batched numpy computation:
at a few hundred archs a fit takes tens of milliseconds, so a search can refit after every few
evaluations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from estimators.base import option
from estimators.predictors.base import Predictor, PredictorOptions

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
MIN_STD = 1e-3  # of the standardised target: members that agree exactly are not certain


@dataclass(frozen=True)
class MLPOptions(PredictorOptions):
    members: int = option(5, "networks in the ensemble", "int2")
    hidden: int = option(32, "units per hidden layer", "int1")
    layers: int = option(2, "hidden layers", "int1")
    steps: int = option(300, "full-batch Adam steps per fit", "int1")
    lr: float = option(0.01, "Adam learning rate", "positive")
    weight_decay: float = option(1e-3, "L2 penalty on the weights", "positive")


class MLPEnsemble(Predictor):
    name = "mlp"
    summary = "ensemble of ReLU networks, mean and spread of the members (BANANAS)"
    Options = MLPOptions

    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        o = self.opts
        rng = np.random.default_rng([self.seed, len(y)])
        sizes = [x.shape[1]] + [o.hidden] * o.layers + [1]
        m = o.members
        self.weights = [rng.standard_normal((m, a, b)) * np.sqrt(2.0 / a)
                        for a, b in zip(sizes[:-1], sizes[1:])]
        self.biases = [np.zeros((m, 1, b)) for b in sizes[1:]]
        params = self.weights + self.biases
        first = [np.zeros_like(p) for p in params]
        second = [np.zeros_like(p) for p in params]
        b1, b2 = ADAM_BETAS
        target = y[None, :, None]
        for step in range(1, o.steps + 1):
            grads = self._gradients(x, target, o.weight_decay)
            for p, g, mo, v in zip(params, grads, first, second):
                mo *= b1
                mo += (1 - b1) * g
                v *= b2
                v += (1 - b2) * g * g
                p -= o.lr * (mo / (1 - b1 ** step)) / (np.sqrt(v / (1 - b2 ** step)) + ADAM_EPS)

    def _gradients(self, x: np.ndarray, target: np.ndarray, decay: float) -> list[np.ndarray]:
        """Gradients of the mean squared error plus the L2 penalty, weights then biases."""
        activations = [np.broadcast_to(x, (len(self.weights[0]),) + x.shape)]
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            activations.append(np.maximum(activations[-1] @ w + b, 0.0))
        out = activations[-1] @ self.weights[-1] + self.biases[-1]
        delta = 2.0 * (out - target) / target.shape[1]
        w_grads, b_grads = [], []
        for layer in range(len(self.weights) - 1, -1, -1):
            a = activations[layer]
            w_grads.append(a.transpose(0, 2, 1) @ delta + decay * self.weights[layer])
            b_grads.append(delta.sum(axis=1, keepdims=True))
            if layer:
                delta = (delta @ self.weights[layer].transpose(0, 2, 1)) * (a > 0)
        return w_grads[::-1] + b_grads[::-1]

    def _members(self, x: np.ndarray) -> np.ndarray:
        """Each member's predictions, shape (members, archs)."""
        h = x
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ w + b, 0.0)
        return (h @ self.weights[-1] + self.biases[-1])[..., 0]

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        members = self._members(x)
        return members.mean(axis=0), np.maximum(members.std(axis=0), MIN_STD)
