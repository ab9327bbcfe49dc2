"""Per-gene statistics: how well the evaluated architectures holding each option ranked.

Used to order candidate children: among untried neighbours of a parent, the one whose options
have the best smoothed mean rank goes first. It is the cheapest model that learns "which option
of which dimension tends to win" (a univariate estimate, like PBIL's or TPE's per dimension).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search_spaces import Arch, SearchSpace


class GeneRanks:
    """Smoothed mean rank in [0, 1] (1 = best) of each (dimension, option) among scored archs;
    `prior` pseudo-observations at 0.5 keep rarely seen options from dominating."""

    def __init__(self, space: SearchSpace, prior: float = 2.0):
        self.space = space
        self.prior = prior
        self._index = [{o: i for i, o in enumerate(d.options)} for d in space.dimensions]
        self._rows: list[np.ndarray] = []
        self._scores: list[float] = []
        self._table: list[np.ndarray] | None = None

    def encode(self, arch: Arch) -> np.ndarray:
        """Option index per dimension (-1 for an inactive gene)."""
        return np.array([-1 if v is None else self._index[i][v]
                         for i, (_, v) in enumerate(arch.genes)], dtype=np.int64)

    def add(self, arch: Arch, score: float) -> None:
        self._rows.append(self.encode(arch))
        self._scores.append(float(score))
        self._table = None

    def rescore(self, scores: Sequence[float]) -> None:
        """Replace the scores of all added archs (in the order added), e.g. by Pareto level."""
        if len(scores) != len(self._rows):
            raise ValueError(f"{len(scores)} scores for {len(self._rows)} archs")
        self._scores = [float(s) for s in scores]
        self._table = None

    def table(self) -> list[np.ndarray]:
        """Smoothed mean rank of every option of every dimension."""
        if self._table is None:
            self._table = self._compute()
        return self._table

    def _compute(self) -> list[np.ndarray]:
        sizes = [len(d.options) for d in self.space.dimensions]
        if not self._rows:
            return [np.full(k, 0.5) for k in sizes]
        rows = np.stack(self._rows)
        # Ties (archs on one Pareto level) are broken by recency: the search moves on, so of
        # two equal archs the newer one says more about where good archs are now.
        order = np.argsort(np.asarray(self._scores), kind="stable")
        ranks = np.empty(len(order))
        ranks[order] = np.arange(len(order)) / max(len(order) - 1, 1)
        out = []
        for d, k in enumerate(sizes):
            active = rows[:, d] >= 0
            sums = np.bincount(rows[active, d], weights=ranks[active], minlength=k)
            counts = np.bincount(rows[active, d], minlength=k)
            out.append((sums + 0.5 * self.prior) / (counts + self.prior))
        return out

    def value(self, arch: Arch) -> float:
        """Sum over active genes of their option's smoothed mean rank."""
        table = self.table()
        return float(sum(table[d][i] for d, i in enumerate(self.encode(arch)) if i >= 0))

    def best_of(self, candidates: Sequence[Arch], rng: np.random.Generator) -> Arch:
        """The candidate of highest `value` (ties broken at random)."""
        values = np.array([self.value(a) for a in candidates])
        top = np.flatnonzero(values >= values.max() - 1e-12)
        return candidates[int(top[rng.integers(len(top))])]

