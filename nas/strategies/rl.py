"""`rl`: REINFORCE (Williams, 1992) with a learned policy over the space's dimensions.

The policy is one softmax per dimension (numpy; no tensors needed). Each told result updates it
by the policy gradient of log pi(arch) times the advantage: reward minus a moving-average
baseline, divided by a moving estimate of the reward's spread so the step size does not depend
on the metric's units. Only the genes that shaped the network (active ones) are updated.

Reward: the objective (negated when minimised), or with `cost_metric` and `cost_target`
MnasNet's `acc * (cost / target) ** w`, where w is `alpha` when the cost meets the target and
`beta` otherwise (MnasNet's soft constraint: alpha = beta = -0.07; a hard one: alpha = 0,
beta = -1). The cost comes from the told metrics, or else from `cost_fn`.

Known archs are never proposed again: the policy samples again (up to RESAMPLES times), then a
random walk of mutations from its last sample finds an untried arch near the policy's mode. (A
"free" update from the known reward of a resampled arch was tried and did not help on
NAS-Bench-201, at three times the cost.)
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.strategies.base import Strategy, Trial
from nas.strategies.options import (
    OptionError,
    StrategyOptions,
    at_least,
    between,
    number,
    option,
    optional,
    positive,
    text,
)
from search_spaces import Arch

RESAMPLES = 10  # policy samples per proposal before falling back to a random neighbour walk


@dataclass(frozen=True)
class ReinforceOptions(StrategyOptions):
    lr: float = option(0.2, "policy-gradient step, in units of the reward's moving spread",
                       positive())
    baseline_decay: float = option(0.9, "decay of the moving-average baseline (and spread) of "
                                        "the reward", between(0, 1, high_open=True))
    entropy: float = option(0.0, "weight of the entropy bonus that keeps the policy spread out",
                            at_least(0))
    cost_metric: str | None = option(None, "the cost of MnasNet's reward acc * (cost/target)^w "
                                           "(with cost_target); None: the objective alone",
                                     optional(text()), metric="reported")
    cost_target: float | None = option(None, "the target of cost_metric in the MnasNet reward",
                                       optional(positive()))
    alpha: float = option(-0.07, "MnasNet exponent w when the cost meets the target", number())
    beta: float = option(-0.07, "MnasNet exponent w when the cost exceeds the target (-1 with "
                                "alpha=0: a hard constraint)", number())

    def validate(self) -> None:
        if (self.cost_metric is None) != (self.cost_target is None):
            raise OptionError("give both cost_metric and cost_target (MnasNet reward), or "
                              "neither")


class Reinforce(Strategy):
    name = "rl"
    multi_objective = False
    options_type = ReinforceOptions

    def _setup(self) -> None:
        self.logits = [np.zeros(len(d.options)) for d in self.space.dimensions]
        self.baseline: float | None = None
        self.spread = 0.0  # moving mean absolute deviation of the reward from the baseline
        self.updates = 0
        self._cdf: list[np.ndarray] | None = None  # cached cumulative policy, for sampling

    # --- policy --------------------------------------------------------------------------------
    def probabilities(self) -> list[np.ndarray]:
        """The policy: one probability vector per dimension, in the space's order."""
        return [_softmax(z) for z in self.logits]

    def _sample(self, rng: np.random.Generator) -> Arch:
        if self._cdf is None:
            self._cdf = [np.cumsum(p) for p in self.probabilities()]
        draws = rng.random(len(self._cdf))
        genes = {}
        for dim, cdf, u in zip(self.space.dimensions, self._cdf, draws):
            genes[dim.name] = dim.options[min(int(np.searchsorted(cdf, u, side="right")),
                                              len(cdf) - 1)]
        return self.space.make(genes)

    def _propose(self, rng: np.random.Generator) -> Arch | None:
        for _ in range(RESAMPLES):
            arch = self.feasible(self._sample(rng), rng)
            if self.is_new(arch):
                return arch
        return self._fresh(self._sample, rng)

    # --- learning ------------------------------------------------------------------------------
    def reward(self, trial: Trial) -> float | None:
        """The reward of a told trial; None when it failed or its cost is unknown."""
        if trial.failed:
            return None
        objective = self.objectives[0]
        value = objective.sign() * trial.metrics[objective.metric]
        metric = self.options["cost_metric"]
        if metric is None:
            return value
        cost = trial.metrics.get(metric, self.cost(trial.arch).get(metric, math.nan))
        if not math.isfinite(cost) or cost <= 0:
            return None
        target = float(self.options["cost_target"])
        w = self.options["alpha"] if cost <= target else self.options["beta"]
        return value * (cost / target) ** float(w)

    def _observe(self, trial: Trial) -> None:
        self._learn(trial)

    def _learn(self, trial: Trial) -> None:
        reward = self.reward(trial)
        if reward is None:
            return
        if not trial.feasible:  # over a hard bound: rated below everything seen
            reward = min(reward, self.baseline if self.baseline is not None else reward) - \
                self.spread
        if self.baseline is None:
            self.baseline = reward
        decay = float(self.options["baseline_decay"])
        advantage = reward - self.baseline
        self.spread = decay * self.spread + (1 - decay) * abs(advantage) if self.updates else \
            abs(advantage)
        self.baseline = decay * self.baseline + (1 - decay) * reward
        self.updates += 1
        if self.spread <= 0:
            return
        step = float(self.options["lr"]) * advantage / self.spread
        self._cdf = None
        entropy = float(self.options["entropy"])
        for d, (dim, (_, value)) in enumerate(zip(self.space.dimensions, trial.arch.genes)):
            if value is None:
                continue  # an inactive gene did not shape the network
            probs = _softmax(self.logits[d])
            grad = -probs
            grad[dim.options.index(value)] += 1.0
            self.logits[d] = self.logits[d] + step * grad
            if entropy:
                # gradient of the entropy -sum p log p with respect to the logits
                log_p = np.log(probs + 1e-12)
                self.logits[d] = self.logits[d] - entropy * probs * (log_p - probs @ log_p)

    # --- checkpoints ---------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"logits": [z.tolist() for z in self.logits], "baseline": self.baseline,
                "spread": self.spread, "updates": self.updates}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.logits = [np.array(z, dtype=float) for z in state["logits"]]
        self.baseline = state["baseline"]
        self.spread = float(state["spread"])
        self.updates = int(state["updates"])
        self._cdf = None


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()
