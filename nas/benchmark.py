"""Tabular benchmarks: run a strategy against a table of measured architectures.

A query is one table lookup. For every seed the strategy searches on the `objective` column; the
incumbent (best objective so far) is scored on the `report` column as regret against the table's
optimum of that column. With `cost` columns, the found Pareto front (objective vs each cost) is
compared with the table's true front by hypervolume, both measured from the same reference point:
the nadir of the true front. `cheap` columns are given to the strategy as its cost_fn: metrics
known without a query (zero-cost proxy scores, params), e.g. for a warm start or early rejection.
"""
from __future__ import annotations

import math
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from estimators.table import AccuracyTable
from nas.objectives import Objective
from nas.pareto import hypervolume, nadir, pareto_mask
from nas.sampling import CostFn
from nas.strategies import get_strategy
from search_spaces import Arch, NasError, SearchSpace


class BenchmarkError(NasError):
    pass


# One seed's run: regret after each query, hypervolume ratio per cost, processor seconds.
SeedRun = tuple[np.ndarray, dict[str, float], float]

# Per table, (objective, direction, cost) -> reference point and hypervolume of the true front.
_FRONTS: weakref.WeakKeyDictionary[AccuracyTable, dict[tuple[str, str, str],
                                                       tuple[np.ndarray, float]]] = \
    weakref.WeakKeyDictionary()


def read_table(path: str | Path, space: SearchSpace, columns: Sequence[str],
               arch_column: str = "arch") -> AccuracyTable:
    """Read `columns` of a CSV whose `arch_column` names each row's architecture."""
    first, *rest = dict.fromkeys(columns)
    return AccuracyTable(path, space, first, arch_column=arch_column, extra=rest)


@dataclass
class BenchmarkResult:
    """Figures over seeds; `curve[q]` is the mean regret after q + 1 queries."""

    strategy: str
    space: str
    objective: str
    report: str
    queries: int
    seeds: int
    regrets: list[float]
    curve: list[float]
    seconds: float  # wall clock of the whole run
    cpu_seconds: float  # processor time of the seeds' loops, summed (robust to a busy machine)
    costs: list[str] = field(default_factory=list)
    hypervolume_ratios: dict[str, list[float]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    per_seed_curves: list[list[float]] = field(default_factory=list)  # regret after each query

    @property
    def mean_regret(self) -> float:
        return float(np.mean(self.regrets))

    @property
    def median_regret(self) -> float:
        return float(np.median(self.regrets))

    @property
    def stderr(self) -> float:
        return _stderr(self.regrets)

    def hypervolume_ratio(self, cost: str) -> float:
        return float(np.mean(self.hypervolume_ratios[cost]))

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "strategy": self.strategy, "space": self.space, "objective": self.objective,
            "report": self.report, "queries": self.queries, "seeds": self.seeds,
            "options": self.options,
            "mean_regret": self.mean_regret, "median_regret": self.median_regret,
            "stderr": self.stderr, "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "curve": {"queries": list(range(1, len(self.curve) + 1)), "mean_regret": self.curve},
        }
        if self.costs:
            per_cost = {c: {"hypervolume_ratio": self.hypervolume_ratio(c),
                            "stderr": _stderr(self.hypervolume_ratios[c])} for c in self.costs}
            payload["costs"] = per_cost
            payload["hypervolume_ratio"] = float(np.mean([v["hypervolume_ratio"]
                                                          for v in per_cost.values()]))
        return payload


def run_benchmark(table: AccuracyTable, strategy: str, objective: str, report: str | None = None,
                  costs: Sequence[str] = (), queries: int = 150, seeds: int | Sequence[int] = 10,
                  direction: Literal["maximize", "minimize"] = "maximize",
                  options: Mapping[str, Any] | None = None, batch: int = 1,
                  workers: int = 1, cheap: Sequence[str] = ()) -> BenchmarkResult:
    """Run `strategy` for `queries` lookups per seed. Multi-objective strategies search the
    objective and the costs together; the others search the objective alone (their fronts are
    still measured). `workers` > 1 runs seeds in parallel processes (same figures)."""
    report = report or objective
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    for column in (objective, report, *costs, *cheap):
        if column not in table.columns:
            raise BenchmarkError(f"column {column!r} was not loaded; loaded: {list(table.columns)}")
    if queries < 1 or not seed_list or batch < 1 or workers < 1:
        raise BenchmarkError(f"queries, seeds, batch and workers must be at least 1, got "
                             f"{queries}, {len(seed_list)}, {batch} and {workers}")
    options = dict(options or {})
    cls = get_strategy(strategy)
    objectives = [Objective(objective, direction)]
    if costs and cls.multi_objective:
        objectives += [Objective(c, "minimize") for c in costs]
    job = _Job(table, strategy, tuple(objectives), report, tuple(costs), queries, options, batch,
               tuple(cheap))
    cls(table.space, objectives, seed=0, cost_fn=job.cost_fn, **options)  # fail fast, here
    for cost in costs:  # once here, not once per seed (or per forked worker)
        _true_front(table, objectives[0], cost)
    start = time.perf_counter()
    if workers > 1 and len(seed_list) > 1:
        runs = _run_forked(job, seed_list, workers)
    else:
        runs = [job.run(s) for s in seed_list]
    seconds = time.perf_counter() - start
    curves = np.array([r[0] for r in runs])
    return BenchmarkResult(
        strategy=strategy, space=table.space.name, objective=objective, report=report,
        queries=queries, seeds=len(seed_list), regrets=[float(c[-1]) for c in curves],
        curve=[float(v) for v in curves.mean(axis=0)], seconds=seconds,
        cpu_seconds=float(sum(r[2] for r in runs)), costs=list(costs),
        hypervolume_ratios={c: [r[1][c] for r in runs] for c in costs}, options=options,
        per_seed_curves=curves.tolist())


@dataclass(frozen=True)
class _Job:
    table: AccuracyTable
    strategy: str
    objectives: tuple[Objective, ...]
    report: str
    costs: tuple[str, ...]
    queries: int
    options: Mapping[str, Any]
    batch: int
    cheap: tuple[str, ...] = ()

    @property
    def cost_fn(self) -> CostFn | None:
        if not self.cheap:
            return None
        columns, rows = self.table.columns, self.table.row_of

        def lookup(arch: Arch) -> dict[str, float]:
            row = rows.get(arch)
            return {c: math.nan if row is None else float(columns[c][row]) for c in self.cheap}
        return lookup

    def run(self, seed: int) -> SeedRun:
        """Regret after each query, the hypervolume ratio of each cost, and the processor
        seconds of the search loop."""
        start = time.process_time()
        table, objective = self.table, self.objectives[0]
        sign = objective.sign()
        found = table.columns[objective.metric] * sign
        shown = table.columns[self.report] * sign
        optimum = np.nanmax(shown)
        worst = optimum - np.nanmin(shown)
        strategy = get_strategy(self.strategy)(table.space, self.objectives, seed=seed,
                                               cost_fn=self.cost_fn, **self.options)
        regret = np.empty(self.queries)
        rows: list[int] = []
        best, current = -math.inf, worst
        q = 0
        while q < self.queries:
            archs = strategy.ask(min(self.batch, self.queries - q))
            if not archs:
                break
            for arch in archs:
                strategy.tell(arch, table.metrics(arch))
                row = table.row_of.get(arch)
                if row is not None:
                    rows.append(row)
                    if found[row] > best:  # NaN compares False: a failed row never leads
                        best, current = found[row], optimum - shown[row]
                regret[q] = current
                q += 1
        regret[q:] = current  # the space ran out before the query budget
        cpu = time.process_time() - start
        ratios = {c: self._hv_ratio(rows, c) for c in self.costs}
        return regret, ratios, cpu

    def _hv_ratio(self, rows: list[int], cost: str) -> float:
        reference, true_volume = _true_front(self.table, self.objectives[0], cost)
        points = _points(self.table, self.objectives[0], cost)[rows]
        points = points[np.all(np.isfinite(points), axis=1)]
        return hypervolume(points, reference) / true_volume if len(points) else 0.0


_JOB: _Job | None = None


def _run_forked(job: _Job, seeds: list[int], workers: int) -> list[SeedRun]:
    """Seeds in forked processes, which inherit the job (the table is not pickled per seed)."""
    import multiprocessing

    global _JOB
    _JOB = job
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(seeds))) as pool:
            return pool.map(_run_in_worker, seeds)
    finally:
        _JOB = None


def _run_in_worker(seed: int) -> SeedRun:
    assert _JOB is not None
    return _JOB.run(seed)


def _points(table: AccuracyTable, objective: Objective, cost: str) -> np.ndarray:
    """(objective, cost) of every row as a minimisation problem."""
    return np.column_stack([-objective.sign() * table.columns[objective.metric],
                            table.columns[cost]])


def _true_front(table: AccuracyTable, objective: Objective, cost: str) -> tuple[np.ndarray, float]:
    """Reference point (the nadir of the table's true front) and the front's hypervolume."""
    key = (objective.metric, objective.direction, cost)
    fronts = _FRONTS.setdefault(table, {})
    if key not in fronts:
        points = _points(table, objective, cost)
        points = points[np.all(np.isfinite(points), axis=1)]
        reference = nadir(points)
        front = points[pareto_mask(points)]
        fronts[key] = (reference, hypervolume(front, reference))
    return fronts[key]


def _stderr(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
