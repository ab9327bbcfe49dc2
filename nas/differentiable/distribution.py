"""Architecture parameters: one logit vector per searched dimension, and the mixing weights
the supernet uses: the softmax (DARTS) or a Gumbel-softmax sample (FBNet / SNAS style)."""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from search_spaces import Dimension

Weights = dict[str, torch.Tensor]


class ArchDistribution(nn.Module):
    """Independent categorical distributions over the options of each searched dimension."""

    def __init__(self, dims: tuple[Dimension, ...], init_scale: float = 1e-3,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.names = tuple(d.name for d in dims)
        # ParameterDict keys may not contain '.', so parameters are stored by position.
        self.logits = nn.ParameterList(
            nn.Parameter(init_scale * torch.randn(len(d.options), generator=generator))
            for d in dims)

    def _items(self) -> list[tuple[str, torch.Tensor]]:
        return list(zip(self.names, self.logits))

    def probs(self) -> Weights:
        return {name: torch.softmax(logit, dim=0) for name, logit in self._items()}

    def gumbel(self, tau: float, generator: torch.Generator, hard: bool = False) -> Weights:
        """softmax((logits + Gumbel noise) / tau); `hard`: one-hot forward, soft gradient."""
        out = {}
        for name, logit in self._items():
            uniform = torch.rand(logit.shape, generator=generator).clamp_(1e-9, 1.0 - 1e-9)
            noisy = (logit - torch.log(-torch.log(uniform))) / tau
            soft = torch.softmax(noisy, dim=0)
            if hard:
                one_hot = torch.zeros_like(soft)
                one_hot[int(soft.argmax())] = 1.0
                soft = one_hot - soft.detach() + soft
            out[name] = soft
        return out

    def argmax(self) -> dict[str, int]:
        return {name: int(logit.argmax()) for name, logit in self._items()}

    def numpy_probs(self) -> dict[str, list[float]]:
        with torch.no_grad():
            return {name: [float(v) for v in p] for name, p in self.probs().items()}

    def snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.logits]

    @torch.no_grad()
    def restore(self, values: list[torch.Tensor]) -> None:
        for param, value in zip(self.logits, values):
            param.copy_(value)


def one_hot(choice: Mapping[str, int], dims: tuple[Dimension, ...]) -> Weights:
    """Mixing weights that select exactly one option per dimension."""
    out = {}
    for dim in dims:
        weights = torch.zeros(len(dim.options))
        weights[int(choice[dim.name])] = 1.0
        out[dim.name] = weights
    return out


def tau_at(step: int, steps: int, start: float, end: float) -> float:
    """Exponential annealing of the Gumbel temperature from `start` to `end`."""
    if steps <= 1:
        return end
    return start * math.exp(math.log(end / start) * step / (steps - 1))


def sample_choice(probs: Mapping[str, list[float]], rng: np.random.Generator) -> dict[str, int]:
    """One option index per dimension drawn from the learned probabilities."""
    out = {}
    for name, values in probs.items():
        p = np.asarray(values, dtype=float)
        out[name] = int(rng.choice(len(p), p=p / p.sum()))
    return out
