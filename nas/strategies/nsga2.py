"""`nsga2`: multi-objective evolution (NSGA-II, Deb et al. 2002), steady state.

Parents are chosen by binary tournaments on (non-domination rank, crowding distance); a child
is the uniform crossover of two parents (probability `crossover`) then a mutation, never an
arch already known. After each told child, the population keeps the best `population` archs by
rank then crowding (one environmental selection per child: the steady-state form, which learns
from every evaluation instead of waiting for a whole generation; it suits small budgets and
asynchronous workers).

With probability `exploit` the child is instead an untried single-gene neighbour of a front
member, chosen where the front is sparsest (largest crowding distance, boundary points first),
which fills the gaps of the front the way local search fills in a single-objective optimum.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from nas.pareto import (crowding_distance, dominance_gap, hypervolume, hypervolume_contributions,
                        non_dominated_sort, pareto_mask)
from nas.strategies.surrogate import RidgeSurrogate
from nas.strategies.marginals import GeneRanks
from nas.strategies.base import Strategy, StrategyError, Trial
from nas.strategies.neighbourhood import neighbours
from search_spaces import Arch

MARGIN = 0.1  # reference point beyond the front's nadir, as a fraction of the front's span


class NSGA2(Strategy):
    name = "nsga2"
    multi_objective = True
    defaults = {"population": 30, "crossover": 0.5, "exploit": 0.5, "screen": 1, "guided": False}

    def _setup(self) -> None:
        o = self.options
        if not (isinstance(o["population"], int) and o["population"] >= 4):
            raise StrategyError(f"nsga2: population must be an integer >= 4, got {o['population']!r}")
        for name in ("crossover", "exploit"):
            if not 0.0 <= float(o[name]) <= 1.0:
                raise StrategyError(f"nsga2: {name} must be in [0, 1], got {o[name]!r}")
        self.population: list[int] = []  # indices into self.trials
        self._rank: dict[int, tuple[int, float]] = {}  # trial -> (front, -crowding)
        self._neighbours: dict[Arch, list[Arch]] = {}

    # --- proposals -----------------------------------------------------------------------------
    def _propose(self, rng: np.random.Generator) -> Arch | None:
        started = len(self.trials) + len(self._pending)
        if started < self.options["population"] or len(self.population) < 2:
            return self._fresh(self.space.sample, rng)
        k = int(self.options["screen"])
        if k <= 1:
            return self._child(rng)
        candidates: list[Arch] = []
        for _ in range(k):
            child = self._child(rng)
            if child is None:
                break
            candidates.append(child)
            self._pending[child] = None  # so the next candidate differs
        for child in candidates:
            self._pending.pop(child)
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        return self._screen(candidates, rng)

    def _screen(self, candidates: list[Arch], rng: np.random.Generator) -> Arch:
        ok = [i for i, t in enumerate(self.trials) if t.ok]
        points = self._points(ok)
        model = RidgeSurrogate(self.space).fit([self.trials[i].arch for i in ok], points)
        predicted = model.predict(candidates)
        front = points[pareto_mask(points)]
        span = front.max(axis=0) - front.min(axis=0)
        span = np.where(span > 0, span, 1.0)
        reference = front.max(axis=0) + MARGIN * span
        base = hypervolume(front / span, reference / span)
        gains = np.array([hypervolume(np.vstack([front, p]) / span, reference / span) - base
                          for p in predicted])
        gaps = np.array([dominance_gap(p / span, front / span) for p in predicted])
        order = np.lexsort((rng.random(len(candidates)), gaps, -gains))
        return candidates[int(order[0])]

    def _child(self, rng: np.random.Generator) -> Arch | None:
        if rng.random() < self.options["exploit"]:
            child = self._fill_gap(rng)
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

    def _chebyshev(self, rng: np.random.Generator) -> Arch | None:
        ok = [i for i, t in enumerate(self.trials) if t.ok]
        points = self._points(ok)
        front = points[pareto_mask(points)]
        ideal, worst = front.min(axis=0), front.max(axis=0)
        span = np.where(worst > ideal, worst - ideal, 1.0)
        w = rng.dirichlet(np.ones(points.shape[1]))
        s = np.max(w * (points - ideal) / span, axis=1)
        for k in np.argsort(s, kind="stable"):
            arch = self.trials[ok[k]].arch
            untried = [n for n in self._neighbours_of(arch) if self._allowed(n)]
            if untried:
                return untried[int(rng.integers(len(untried)))]
        return None

    def _fill_gap(self, rng: np.random.Generator) -> Arch | None:
        if self.options["guided"] == "cheb":
            return self._chebyshev(rng)
        """An untried neighbour of the front member with the most room around it."""
        ok = [i for i, t in enumerate(self.trials) if t.ok]
        if not ok:
            return None
        points = self._points(ok)
        front = np.flatnonzero(pareto_mask(points))
        fp = points[front]
        span = fp.max(axis=0) - fp.min(axis=0)
        reference = fp.max(axis=0) + MARGIN * np.where(span > 0, span, 1.0)
        gain = hypervolume_contributions(fp, reference)
        # Largest exclusive hypervolume first (the sparsest part of the front).
        order = np.lexsort((rng.random(len(front)), -gain))
        for k in order:
            arch = self.trials[ok[front[k]]].arch
            untried = [n for n in self._neighbours_of(arch) if self._allowed(n)]
            if untried:
                if self.options["guided"] == "ridge":
                    return self._screen(untried, rng)
                if self.options["guided"]:
                    levels = np.zeros(len(ok))
                    for lv, fr in enumerate(non_dominated_sort(points)):
                        levels[fr] = -lv
                    ranks = GeneRanks(self.space, 2.0)
                    for i, lv in zip(ok, levels):
                        ranks.add(self.trials[i].arch, lv)
                    return ranks.best_of(untried, rng)
                return untried[int(rng.integers(len(untried)))]
        return None

    def _neighbours_of(self, arch: Arch) -> list[Arch]:
        if arch not in self._neighbours:
            self._neighbours[arch] = neighbours(self.space, arch)
        return self._neighbours[arch]

    def _allowed(self, arch: Arch) -> bool:
        if not self.is_new(arch):
            return False
        return not self.constraints or all(c.satisfied(self.cost(arch)) for c in self.constraints)

    # --- selection -----------------------------------------------------------------------------
    def _points(self, indices: list[int]) -> np.ndarray:
        return np.array([[-o.sign() * self.trials[i].metrics[o.metric] for o in self.objectives]
                         for i in indices], dtype=float).reshape(len(indices), len(self.objectives))

    def _observe(self, trial: Trial) -> None:
        if not trial.ok:
            return
        self.population.append(len(self.trials) - 1)
        self._select()

    def _select(self) -> None:
        """Keep the best `population` members by (rank, crowding); refresh their ranks."""
        members = self.population
        fronts = non_dominated_sort(self._points(members))
        rank: dict[int, tuple[int, float]] = {}
        for level, front in enumerate(fronts):
            crowding = crowding_distance(self._points([members[k] for k in front]))
            for k, c in zip(front, crowding):
                rank[members[k]] = (level, -float(c))
        keep = sorted(members, key=lambda i: (rank[i], i))[: self.options["population"]]
        self.population = sorted(keep)
        if len(keep) < len(members):  # ranks within the survivors (crowding changes)
            self._rank = {}
            self._select_ranks()
        else:
            self._rank = rank

    def _select_ranks(self) -> None:
        fronts = non_dominated_sort(self._points(self.population))
        for level, front in enumerate(fronts):
            crowding = crowding_distance(self._points([self.population[k] for k in front]))
            for k, c in zip(front, crowding):
                self._rank[self.population[k]] = (level, -float(c))

    # --- checkpoints ---------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"population": list(self.population)}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.population = [int(i) for i in state["population"]]
        self._rank = {}
        if self.population:
            self._select_ranks()
