"""`bananas`: predictor-guided search (BANANAS, White et al., AAAI 2021).

After `initial` random archs, every proposal is the best of a pool of candidates under an
acquisition on a performance predictor (`estimators.predictors`) fitted on the told trials:

- **candidates** (BANANAS' mutation-based acquisition optimisation): the untried single-gene
  neighbours of the `parents` best archs, plus `random` fresh samples for exploration;
- **acquisition**: `its` (independent Thompson sampling: one draw of each candidate from the
  predictor's mean and spread, BANANAS' choice), `ucb` (mean + `explore` x spread) or `mean`;
- **refits** after every `refit_every` tells (a fit is deterministic given the trials, so a
  restored checkpoint refits the same model).

With several objectives (the multi-objective variant) there is one predictor per objective;
the candidates are the untried neighbours of the found front's members plus random samples,
and the acquisition is the hypervolume a Thompson draw of the candidate would add to the found
front (a candidate whose draw is dominated scores minus its additive distance to the front).

Optional extra predictor inputs: `features` names metrics of `cost_fn` (cheap to compute, e.g.
zero-cost proxy scores or FLOPs) given to the predictor beside the one-hot genes. An objective
that the cost_fn gives (a latency from the device's table) is taken as it is, not predicted.
The initial archs may come from a zero-cost warm start (`nas.strategies.warmstart`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from estimators.predictors import Predictor, list_predictors, make_predictor
from nas.pareto import hypervolume_improvements, pareto_mask
from nas.strategies.base import Strategy, StrategyError, Trial
from nas.strategies.options import (
    Check,
    at_least,
    integer,
    one_of,
    option,
)
from nas.strategies.warmstart import WarmStartOptions
from search_spaces import Arch

MARGIN = 0.1  # reference point beyond the front's nadir, as a fraction of the front's span


def _predictor_names() -> Check:
    names = list_predictors()
    return Check(lambda v: isinstance(v, str) and v in names, "one of " + ", ".join(names))


def _metric_names() -> Check:
    return Check(lambda v: isinstance(v, (list, tuple)) and all(
        isinstance(m, str) and m for m in v), "a list of metric names")


@dataclass(frozen=True)
class BananasOptions(WarmStartOptions):
    predictor: str = option("gp", "performance predictor (estimators.predictors)",
                            _predictor_names())
    initial: int = option(20, "random archs before the predictor takes over", integer(2))
    acquisition: str = option("its", "its: independent Thompson sampling; ucb: mean + explore "
                                     "x spread; mean: the predicted mean",
                              one_of("its", "ucb", "mean"))
    explore: float = option(1.0, "weight of the spread in ucb", at_least(0))
    parents: int = option(3, "best archs (front members) whose untried neighbours are "
                             "candidates", integer(1))
    random: int = option(0, "fresh random samples added to the candidates", integer(0))
    refit_every: int = option(5, "tells between two fits of the predictor", integer(1))
    targets: str = option("values", "what the predictor learns: values, or ranks (normal "
                                    "scores of the ranks, a Gaussian copula)",
                          one_of("values", "ranks"))
    features: list[str] = option(help="metrics of cost_fn given to the predictor as extra "
                                      "inputs (e.g. zero-cost proxy scores)",
                                 check=_metric_names(), factory=list, metric="cost")


class Bananas(Strategy):
    name = "bananas"
    multi_objective = True
    options_type = BananasOptions

    def _setup(self) -> None:
        if self.options["features"] and self.cost_fn is None:
            raise StrategyError(f"bananas: features {self.options['features']} need a cost_fn "
                                f"that gives them")
        self.models: list[Predictor] = []
        self.fitted_on = 0  # trials the current models were fitted on

    # --- proposals -----------------------------------------------------------------------------
    def _propose(self, rng: np.random.Generator) -> Arch | None:
        ok = [t for t in self.trials if t.ok]
        started = len(self.trials) + len(self._pending)
        if started < self.options["initial"] or len(ok) < self.options["initial"] // 2 + 1:
            return self.initial_arch(rng)
        if not self.models or len(self.trials) - self.fitted_on >= self.options["refit_every"]:
            self._fit(len(self.trials))
        pool = self._candidates(ok, rng)
        if not pool:
            return self._fresh(self.space.sample, rng)
        scores = self._acquire(pool, ok, rng)
        return pool[int(np.argmax(scores))]

    def _candidates(self, ok: list[Trial], rng: np.random.Generator) -> list[Arch]:
        if len(self.objectives) == 1:
            parents = sorted(ok, key=self.score, reverse=True)[: self.options["parents"]]
        else:
            front = self.pareto_front()
            parents = front if len(front) <= self.options["parents"] else \
                [front[int(i)] for i in rng.choice(len(front), self.options["parents"],
                                                   replace=False)]
        pool: dict[Arch, None] = {}
        for trial in parents:
            pool.update(dict.fromkeys(self.untried_neighbours(trial.arch)))
        pool.update(dict.fromkeys(self._samples(rng, self.options["random"])))
        return list(pool)

    def _samples(self, rng: np.random.Generator, count: int) -> list[Arch]:
        out = []
        for _ in range(count):
            arch = self.feasible(self.space.sample(rng), rng)
            if self.is_new(arch):
                out.append(arch)
        return out

    def _acquire(self, pool: list[Arch], ok: list[Trial], rng: np.random.Generator) -> np.ndarray:
        features = self._features(pool)
        rule = self.options["acquisition"]
        values = []
        for objective, model in zip(self.objectives, self.models):
            if objective.metric in self.known_objectives():  # given by the cost_fn: exact
                value = np.array([self.cost(a)[objective.metric] for a in pool], dtype=float)
            elif rule == "its":
                value = model.sample(pool, rng, features)
            else:
                prediction = model.predict(pool, features)
                value = prediction.mean + (self.options["explore"] * prediction.std
                                           if rule == "ucb" else 0.0)
            values.append(-objective.sign() * value)  # minimised
        points = np.column_stack(values)
        points[~np.isfinite(points)] = np.inf  # a cost the cost_fn could not give: the worst
        if len(self.objectives) == 1:
            return -points[:, 0]
        found = np.array([self.minimised(t) for t in ok])
        front = found[pareto_mask(found)]
        span = np.ptp(found, axis=0)
        reference = front.max(axis=0) + MARGIN * np.where(span > 0, span, 1.0)
        gain = hypervolume_improvements(points, front, reference)
        scale = np.where(span > 0, span, 1.0)
        distance = np.min(np.max((points[:, None, :] - front[None, :, :]) / scale, axis=2), axis=1)
        return np.where(gain > 0, gain, -np.maximum(distance, 0.0))

    # --- the model -----------------------------------------------------------------------------
    def _fit(self, upto: int) -> None:
        """Fit one predictor per objective on the first `upto` trials' successful ones."""
        ok = [t for t in self.trials[:upto] if t.ok]
        archs = [t.arch for t in ok]
        features = self._features(archs)
        self.models = [
            make_predictor(self.options["predictor"], self.space, seed=self.seed,
                           targets=self.options["targets"]).fit(
                archs, [t.metrics[o.metric] for t in ok], features)
            for o in self.objectives]
        self.fitted_on = upto

    def _features(self, archs: list[Arch]) -> np.ndarray | None:
        names = self.options["features"]
        if not names:
            return None
        rows = [[self.cost(a).get(n, math.nan) for n in names] for a in archs]
        return np.array(rows, dtype=float).reshape(len(archs), len(names))

    # --- checkpoints ---------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"fitted_on": self.fitted_on if self.models else 0}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.models, self.fitted_on = [], 0
        if int(state["fitted_on"]):
            self._fit(int(state["fitted_on"]))


__all__ = ["Bananas", "BananasOptions"]
