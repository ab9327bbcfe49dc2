"""Objectives (metric, direction) and hard constraints (metric <= bound), given to strategies.

Both have one JSON form, written to config.json, checkpoints and strategy states and read back
with `from_json`: an objective is `[metric, "maximize"|"minimize"]`, a constraint
`[metric, bound]`.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Literal["maximize", "minimize"] = "maximize"

    def sign(self) -> float:
        """+1 when larger is better; multiply a metric by it to always maximise."""
        return 1.0 if self.direction == "maximize" else -1.0

    def to_json(self) -> list[Any]:
        return [self.metric, self.direction]

    @classmethod
    def from_json(cls, value: Any) -> Objective:
        """An objective from its JSON form; ValueError for anything else."""
        if not (isinstance(value, (list, tuple)) and len(value) == 2
                and isinstance(value[0], str) and value[1] in DIRECTIONS):
            raise ValueError(f"an objective is [metric, maximize|minimize], got {value!r:.60}")
        return cls(value[0], value[1])


@dataclass(frozen=True)
class Constraint:
    """A hard upper bound on one metric, e.g. flops <= 300e6."""

    metric: str
    bound: float

    def satisfied(self, metrics: Mapping[str, float]) -> bool:
        value = metrics.get(self.metric)
        return value is not None and not math.isnan(value) and value <= self.bound

    def violation(self, metrics: Mapping[str, float]) -> float:
        """How far over the bound, relative to it (0 when satisfied)."""
        value = metrics.get(self.metric, math.inf)
        return max(0.0, (value - self.bound) / self.bound) if self.bound > 0 else max(0.0, value)

    def __str__(self) -> str:
        return f"{self.metric} <= {format_metric(self.metric, self.bound)}"

    def to_json(self) -> list[Any]:
        return [self.metric, self.bound]

    @classmethod
    def from_json(cls, value: Any) -> Constraint:
        """A constraint from its JSON form; ValueError for anything else."""
        if not (isinstance(value, (list, tuple)) and len(value) == 2
                and isinstance(value[0], str) and isinstance(value[1], (int, float))
                and not isinstance(value[1], bool)):
            raise ValueError(f"a constraint is [metric, bound], got {value!r:.60}")
        return cls(value[0], float(value[1]))


def objectives_from_json(values: Iterable[Any]) -> list[Objective]:
    return [Objective.from_json(v) for v in values]


def constraints_from_json(values: Iterable[Any]) -> list[Constraint]:
    return [Constraint.from_json(v) for v in values]


def all_satisfied(constraints: tuple[Constraint, ...] | list[Constraint],
                  metrics: Mapping[str, float]) -> bool:
    return all(c.satisfied(metrics) for c in constraints)


def format_metric(metric: str, value: float) -> str:
    """Readable value: 300.8M flops, 3.50M params, 12.3 ms, 91.25 %."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if metric.startswith("latency"):
        return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"
    if metric.startswith("acc"):
        return f"{value:.2f}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.4g}{suffix}"
    return f"{value:.4g}"
