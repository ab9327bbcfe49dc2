"""`nsga2`: multi-objective evolution (NSGA-II, Deb et al. 2002), steady state, plus front
completion by local search.

NSGA-II part: parents are chosen by binary tournaments on (non-domination rank, crowding
distance); a child is the uniform crossover of two parents (probability `crossover`) then a
mutation, never an arch already known. After each told child the population keeps the best
`population` archs by rank then crowding (one environmental selection per child: the
steady-state form learns from every evaluation instead of waiting for a whole generation, which
suits small budgets and asynchronous workers).

Front completion (probability `exploit`): with few queries the found front is patchy, and most
of the missing Pareto-optimal archs sit one gene away from an arch already evaluated. So the child
is an untried single-gene neighbour of the front member that holds the most exclusive
hypervolume (the sparsest part of the front; an exhausted member is skipped), and among its
neighbours the one whose options sit on the best non-domination levels so far (`GeneRanks`
scored by level) goes first.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.pareto import crowding_distance, hypervolume_contributions, non_dominated_sort
from nas.strategies.base import Strategy, Trial
from nas.strategies.marginals import GeneRanks
from nas.strategies.options import StrategyOptions, at_least, between, integer, option
from search_spaces import Arch

MARGIN = 0.1  # reference point beyond the front's nadir, as a fraction of the front's span


@dataclass(frozen=True)
class NSGA2Options(StrategyOptions):
    population: int = option(20, "archs kept (best non-domination levels, then crowding); the "
                                 "search starts from this many random archs", integer(4))
    crossover: float = option(0.5, "probability that a child is the uniform crossover of its "
                                   "two parents (then mutated)", between(0, 1))
    exploit: float = option(0.7, "probability that a child is an untried neighbour of the front "
                                 "member with the most exclusive hypervolume (front completion)",
                            between(0, 1))
    prior: float = option(2.0, "pseudo-observations that smooth the per-option ranks ordering "
                               "the neighbours to try", at_least(0))


class NSGA2(Strategy):
    name = "nsga2"
    multi_objective = True
    options_type = NSGA2Options

    def _setup(self) -> None:
        o = self.options
        self.population: list[int] = []  # indices into self.trials
        self._rank: dict[int, tuple[int, float]] = {}  # trial -> (front level, -crowding)
        self._ok: list[int] = []  # successful feasible trials, in told order
        self._points = np.zeros((0, len(self.objectives)))  # their objectives, minimised
        self._ranks = GeneRanks(self.space, float(o["prior"]))
        self.exhausted: set[Arch] = set()

    # --- proposals -----------------------------------------------------------------------------
    def _propose(self, rng: np.random.Generator) -> Arch | None:
        started = len(self.trials) + len(self._pending)
        if started < self.options["population"] or len(self.population) < 2:
            return self._fresh(self.space.sample, rng)
        if rng.random() < self.options["exploit"]:
            child = self._complete_front(rng)
            if child is not None:
                return child
        a, b = self._tournament(rng), self._tournament(rng)
        first, second = self.trials[a].arch, self.trials[b].arch

        def candidate(r: np.random.Generator) -> Arch:
            base = self.space.crossover(first, second, r) \
                if a != b and r.random() < self.options["crossover"] else first
            return self.space.mutate(base, r)

        return self._fresh(candidate, rng)

    def _tournament(self, rng: np.random.Generator) -> int:
        i, j = (self.population[int(k)] for k in rng.choice(len(self.population), 2, replace=False))
        return i if self._rank[i] <= self._rank[j] else j

    def _complete_front(self, rng: np.random.Generator) -> Arch | None:
        """The most promising untried neighbour of the front member with the most room."""
        points = self._points
        fronts = non_dominated_sort(points)
        front = fronts[0]
        span = np.ptp(points[front], axis=0)
        reference = points[front].max(axis=0) + MARGIN * np.where(span > 0, span, 1.0)
        gain = hypervolume_contributions(points[front], reference)
        levels = np.empty(len(points))
        for level, members in enumerate(fronts):
            levels[members] = -level
        self._ranks.rescore(levels)
        for k in np.lexsort((rng.random(len(front)), -gain)):
            arch = self.trials[self._ok[front[k]]].arch
            if arch in self.exhausted:
                continue
            untried = self.untried_neighbours(arch)
            if untried:
                return self._ranks.best_of(untried, rng)
            self.exhausted.add(arch)
        return None

    # --- learning and selection ----------------------------------------------------------------
    def _observe(self, trial: Trial) -> None:
        if not trial.ok:
            return
        index = len(self.trials) - 1
        self._remember(index)
        self.population.append(index)
        self._select()

    def _remember(self, index: int) -> None:
        trial = self.trials[index]
        self._ok.append(index)
        self._points = np.vstack([self._points, self.minimised(trial)])
        self._ranks.add(trial.arch, 0.0)  # rescored by level before each use

    def _select(self) -> None:
        """Keep the best `population` members by (level, crowding), then rank the survivors."""
        rank = self._rank_of(self.population)
        keep = sorted(self.population, key=lambda i: (rank[i], i))[: self.options["population"]]
        self.population = sorted(keep)
        self._rank = rank if len(keep) == len(rank) else self._rank_of(self.population)

    def _rank_of(self, members: list[int]) -> dict[int, tuple[int, float]]:
        points = np.array([self.minimised(self.trials[i]) for i in members])
        rank: dict[int, tuple[int, float]] = {}
        for level, front in enumerate(non_dominated_sort(points)):
            for k, c in zip(front, crowding_distance(points[front])):
                rank[members[k]] = (level, -float(c))
        return rank

    # --- checkpoints ---------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"population": list(self.population),
                "exhausted": sorted(self.key(a) for a in self.exhausted)}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._ok, self._points = [], np.zeros((0, len(self.objectives)))
        self._ranks = GeneRanks(self.space, float(self.options["prior"]))
        for index, trial in enumerate(self.trials):
            if trial.ok:
                self._remember(index)
        self.population = [int(i) for i in state["population"]]
        self._rank = self._rank_of(self.population) if self.population else {}
        self.exhausted = {self.decode(k) for k in state["exhausted"]}
