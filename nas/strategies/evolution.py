"""`evolution`: regularized (aging) evolution, made robust for small query budgets.

Plain aging evolution (Real et al., 2019): a population of the most recent evaluations; each
child mutates the winner of a random tournament; the oldest member dies. With few queries
(~150 on NAS-Bench-201) its median is good but its mean is lost to seeds that end near, not at,
an optimum. Looking at those seeds shows two causes, each fixed here in a general way:

1. Incomplete neighbourhoods. The tournament picks the best member only now and then, so a seed
   often stops with untried single-gene neighbours of its best arch, one of them better. Fix:
   with probability `exploit`, the child is an untried neighbour of the best trial whose
   neighbourhood is not yet exhausted (best-first; an exhausted arch is skipped for good).
2. Wasted and unordered children. Re-evaluating known archs wastes queries, and trying a
   parent's neighbours in random order wastes the rest. Fix: children are never known archs
   (a parent with no untried neighbour is left by a random walk of mutations), and the
   neighbour to try first is the one whose options ranked best so far (`GeneRanks`).

3. Converged runs. Some seeds climb a hill that is a true local optimum several genes away
   from the best one. Once the run's best arch is exhausted (every neighbour evaluated, none
   better: a confirmed local optimum), the run restarts: the population is dropped, `restart`
   random archs start a new one, and best-first exploitation works on the new run only (the
   incumbent is of course kept in the trials).

A larger initial population (50 random archs) lowers the chance of climbing the wrong hill.

Optional early rejection (as in the EvoNorm search): with `proxy` naming a cheap metric of
`cost_fn` (e.g. a zero-cost score), a child whose proxy falls below the `reject_quantile` of the
proxies of evaluated archs is dropped before evaluation and never proposed again.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.strategies.base import Strategy, StrategyError, Trial
from nas.strategies.marginals import GeneRanks
from nas.strategies.options import (
    at_least,
    between,
    integer,
    one_of,
    option,
    optional,
    text,
)
from nas.strategies.warmstart import WarmStartOptions
from search_spaces import Arch

MIN_PROXY_HISTORY = 5  # proxy scores needed before a quantile threshold means anything
MAX_REJECTIONS = 20  # per proposal: past this, the child is proposed anyway


@dataclass(frozen=True)
class EvolutionOptions(WarmStartOptions):
    population: int = option(50, "archs in the population (the most recent evaluations); the "
                                 "first run starts from this many random archs", integer(2))
    sample_size: int = option(10, "archs per tournament", integer(
        1, "an integer >= 1 (capped at the population)"))
    exploit: float = option(0.5, "probability that a child is an untried neighbour of the best "
                                 "arch (best-first completion) instead of a tournament child",
                            between(0, 1))
    restart: int = option(10, "random archs that start a new run once the best arch is a "
                              "confirmed local optimum", integer(1))
    prior: float = option(2.0, "pseudo-observations that smooth the per-option ranks ordering "
                               "the neighbours to try", at_least(0))
    proxy: str | None = option(None, "a cheap metric of cost_fn for early rejection (e.g. a "
                                     "zero-cost score); None: no rejection", optional(text()),
                                metric="cost")
    proxy_direction: str = option("maximize", "whether a larger or a smaller proxy is better",
                                  one_of("maximize", "minimize"))
    reject_quantile: float = option(0.5, "a child whose proxy is below this quantile of the "
                                         "evaluated archs' proxies is dropped",
                                    between(0, 1, low_open=True, high_open=True))


class RegularizedEvolution(Strategy):
    name = "evolution"
    multi_objective = False
    options_type = EvolutionOptions

    def _setup(self) -> None:
        o = self.options
        if o["proxy"] is not None and self.cost_fn is None:
            raise StrategyError(f"evolution: proxy {o['proxy']!r} needs a cost_fn that gives it")
        self.population: list[int] = []  # indices into self.trials, oldest first
        self.run_start = 0  # index of the first trial of the current run (after a restart)
        self.ranks = GeneRanks(self.space, float(o["prior"]))
        self.exhausted: set[Arch] = set()  # parents with no untried neighbour left
        self.rejected: dict[Arch, None] = {}  # dropped by the proxy, never proposed

    # --- proposals -----------------------------------------------------------------------------
    def is_new(self, arch: Arch) -> bool:
        return super().is_new(arch) and arch not in self.rejected

    def _propose(self, rng: np.random.Generator) -> Arch | None:
        for _ in range(MAX_REJECTIONS):
            child = self._child(rng)
            if child is None or not self._reject(child):
                return child
            self.rejected[child] = None
        return self._child(rng)

    def _child(self, rng: np.random.Generator) -> Arch | None:
        started = len(self.trials) + len(self._pending)
        fresh = self.options["population"] if self.run_start == 0 else self.options["restart"]
        if started < self.run_start + fresh or not self.population:
            return self.initial_arch(rng) if self.run_start == 0 else \
                self._fresh(self.space.sample, rng)
        if rng.random() < self.options["exploit"]:
            child = self._best_first_neighbour(rng)
            if child is not None or not self.population:  # found, restarted or exhausted
                return child if child is not None else self._fresh(self.space.sample, rng)
        k = min(self.options["sample_size"], len(self.population))
        picks = rng.choice(len(self.population), size=k, replace=False)
        parent = self.trials[max((self.population[int(i)] for i in picks),
                                 key=lambda t: (self.score(self.trials[t]), t))].arch
        return self._fresh(lambda r: self.space.mutate(parent, r), rng)

    def _best_first_neighbour(self, rng: np.random.Generator) -> Arch | None:
        """The most promising untried neighbour of the best non-exhausted trial of this run;
        restarts the run when its best trial is exhausted."""
        run = [t for t in self.trials[self.run_start:] if t.ok]
        if not run:
            return None
        best = max(run, key=self.score)
        for trial in sorted((t for t in run if t.arch not in self.exhausted),
                            key=self.score, reverse=True):
            untried = self.untried_neighbours(trial.arch)
            if untried:
                return self.ranks.best_of(untried, rng)
            self.exhausted.add(trial.arch)
            if trial is best:  # a confirmed local optimum: this run has converged
                self.run_start = len(self.trials) + len(self._pending)
                self.population = []
                return self._fresh(self.space.sample, rng)
        return None

    def _reject(self, child: Arch) -> bool:
        """Early rejection: the child's proxy is below the quantile of the evaluated ones."""
        proxy = self.options["proxy"]
        if proxy is None:
            return False
        sign = 1.0 if self.options["proxy_direction"] == "maximize" else -1.0
        seen = [sign * self.cost(t.arch).get(proxy, math.nan) for t in self.trials]
        seen = [v for v in seen if math.isfinite(v)]
        if len(seen) < MIN_PROXY_HISTORY:
            return False
        value = sign * self.cost(child).get(proxy, math.nan)
        if not math.isfinite(value):
            raise StrategyError(f"evolution: cost_fn gives no {proxy!r} for {child.key}")
        return value < float(np.quantile(seen, self.options["reject_quantile"]))

    # --- learning ------------------------------------------------------------------------------
    def _observe(self, trial: Trial) -> None:
        if not trial.ok:
            return
        self.population.append(len(self.trials) - 1)
        if len(self.population) > self.options["population"]:
            self.population.pop(0)
        self.ranks.add(trial.arch, self.score(trial))

    def _extra_state(self) -> dict[str, Any]:
        return {"population": list(self.population), "run_start": self.run_start,
                "exhausted": sorted(self.key(a) for a in self.exhausted),
                "rejected": [self.key(a) for a in self.rejected]}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.population = [int(i) for i in state["population"]]
        self.run_start = int(state["run_start"])
        self.exhausted = {self.decode(k) for k in state["exhausted"]}
        self.rejected = {self.decode(k): None for k in state["rejected"]}
        self.ranks = GeneRanks(self.space, float(self.options["prior"]))
        for trial in self.trials:
            if trial.ok:
                self.ranks.add(trial.arch, self.score(trial))
