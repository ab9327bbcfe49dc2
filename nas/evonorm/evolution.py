"""The evolution of the EvoNorm search (Liu et al. 2020, section 3): tournament selection with
aging over a population of layers, the parent chosen among the tournament's Pareto-optimal
members (multi-objective: the accuracy on each evaluation architecture, all maximised).

Pure functions of the rows and the population; each candidate's random draws come from its own
generator, seeded by (run seed, trial), so a resumed run draws what an uninterrupted one does.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nas.pareto import pareto_mask
from search_spaces import Arch, InvalidArchError, SearchSpace

Row = Mapping[str, Any]
PARENT_TRIES = 20  # tournaments tried when a parent has no valid mutation


def candidate_rng(seed: int, trial: int) -> np.random.Generator:
    """The generator of candidate `trial`'s draws (tournament, mutation or sample)."""
    return np.random.default_rng([seed, trial])


def pareto_members(members: Sequence[Row], columns: Sequence[str]) -> list[Row]:
    """The members no other member dominates on `columns` (all maximised; equal points are
    all kept)."""
    if not members:
        return []
    points = np.array([[-float(m[c]) for c in columns] for m in members])
    return [m for m, keep in zip(members, pareto_mask(points)) if keep]


def choose_parent(population: Sequence[Row], columns: Sequence[str], size: int,
                  rng: np.random.Generator) -> Row:
    """A tournament of `size` members drawn without replacement, then one of its
    Pareto-optimal members drawn uniformly."""
    size = min(size, len(population))
    picked = rng.choice(len(population), size=size, replace=False)
    front = pareto_members([population[int(i)] for i in sorted(picked)], columns)
    return front[int(rng.integers(len(front)))]


def propose(space: SearchSpace, population: Sequence[Row], full: bool, columns: Sequence[str],
            tournament: int, rng: np.random.Generator) -> tuple[Arch, int]:
    """The next candidate and its parent's trial (-1 for a random layer): a random valid layer
    while the population is not `full`, else a mutation of a tournament's Pareto parent (a
    parent that cannot mutate is replaced by another tournament's; after PARENT_TRIES, a
    random layer)."""
    if full:
        for _ in range(PARENT_TRIES):
            parent = choose_parent(population, columns, tournament, rng)
            try:
                return space.mutate(space.parse(str(parent["key"])), rng), int(parent["trial"])
            except InvalidArchError:
                continue
    return space.sample(rng), -1


def passed(row: Row, columns: Sequence[str]) -> bool:
    """A candidate that passed the protocols and has an accuracy on every architecture."""
    if row.get("error"):
        return False
    return all(isinstance(row.get(c), (int, float)) and math.isfinite(float(row[c]))
               for c in columns)


def age(population: list[int], newcomer: int, size: int) -> list[int]:
    """The population (trials, oldest first) after `newcomer` joins: the oldest leave once it
    holds more than `size`."""
    grown = [*population, newcomer]
    return grown[max(0, len(grown) - size):]


def ranked(rows: Sequence[Row], columns: Sequence[str], exclude: Sequence[str] = ()) -> list[Row]:
    """The passed candidates whose key is not in `exclude`, highest mean accuracy over
    `columns` first (the earliest of equals first)."""
    usable = [r for r in rows if passed(r, columns) and r["key"] not in exclude]
    return sorted(usable, key=lambda r: (-sum(float(r[c]) for c in columns) / len(columns),
                                         int(r["trial"])))


def best(rows: Sequence[Row], columns: Sequence[str], exclude: Sequence[str] = ()) -> Row | None:
    """The first of `ranked` (None when no candidate passed)."""
    top = ranked(rows, columns, exclude)
    return top[0] if top else None


def measured(value: Any) -> float:
    """A measured value as a float; NaN where there is none (not measured, or JSON null)."""
    return float(value) if isinstance(value, (int, float)) else math.nan


__all__ = ["PARENT_TRIES", "age", "best", "candidate_rng", "choose_parent", "measured",
           "pareto_members", "passed", "propose", "ranked"]
