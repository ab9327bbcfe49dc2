"""Budgets: `300M-flops`, `5M-params`, `20ms-latency`, several joined by commas."""
from __future__ import annotations

import re

from nas.objectives import Constraint
from search_spaces.errors import NasError

ACCEPTED = ("NUMBER[K|M|G]-flops, NUMBER[K|M|G]-flops_sparse, NUMBER[K|M|G]-params or "
            "NUMBERms-latency, joined by commas (e.g. 300M-flops,5M-params)")
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_COUNT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)([kmg]?)-(flops|flops_sparse|params)$", re.IGNORECASE)
_LATENCY = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ms|s)-latency(?:_ms)?$", re.IGNORECASE)


class BudgetError(NasError):
    pass


def parse_budget(text: str | None) -> tuple[Constraint, ...]:
    """Constraints from a budget string; empty or None means no budget."""
    if text is None or not text.strip():
        return ()
    constraints: dict[str, Constraint] = {}
    for part in (p.strip() for p in text.split(",")):
        constraint = _parse_one(part)
        if constraint.metric in constraints:
            raise BudgetError(f"budget {text!r} bounds {constraint.metric} twice")
        constraints[constraint.metric] = constraint
    return tuple(constraints.values())


def _parse_one(part: str) -> Constraint:
    count = _COUNT.match(part)
    if count:
        number, suffix, metric = count.groups()
        value = float(number) * _SCALE[suffix.lower()]
        metric = metric.lower()
    else:
        latency = _LATENCY.match(part)
        if not latency:
            raise BudgetError(f"malformed budget {part!r}: expected {ACCEPTED}")
        number, unit = latency.groups()
        value = float(number) * (1000.0 if unit.lower() == "s" else 1.0)
        metric = "latency_ms"
    if value <= 0:
        raise BudgetError(f"budget {part!r} must be positive")
    return Constraint(metric, value)


def format_budget(constraints: tuple[Constraint, ...]) -> str:
    return ", ".join(str(c) for c in constraints) or "none"
