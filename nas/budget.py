"""Budgets: `300M-flops`, `5M-params`, `20ms-latency`, several joined by commas."""
from __future__ import annotations

import math
import re

from nas.objectives import Constraint
from search_spaces.errors import NasError

ACCEPTED = ("NUMBER[K|M|G]-flops, NUMBER[K|M|G]-flops_sparse, NUMBER[K|M|G]-params or "
            "NUMBERms-latency, joined by commas (e.g. 300M-flops,5M-params)")
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
# ASCII digits only (`\d` would also take Arabic-Indic or full-width digits)
_COUNT = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([kmg]?)-(flops|flops_sparse|params)$",
                    re.IGNORECASE | re.ASCII)
_LATENCY = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s)-latency(?:_ms)?$",
                      re.IGNORECASE | re.ASCII)
# Larger bounds are typos (a 400-digit number would even be read as infinity).
MAX_COUNT = 1e15  # flops or params: a thousand times GPT-3's parameters
MAX_LATENCY_MS = 1e8  # about 28 hours per inference


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
            raise BudgetError(f"malformed budget {_shown(part)!r}: expected {ACCEPTED}")
        number, unit = latency.groups()
        value = float(number) * (1000.0 if unit.lower() == "s" else 1.0)
        metric = "latency_ms"
    if not value > 0:
        raise BudgetError(f"budget {part!r} must be positive")
    limit = MAX_LATENCY_MS if metric == "latency_ms" else MAX_COUNT
    if not math.isfinite(value) or value > limit:
        raise BudgetError(f"budget {_shown(part)!r} is out of range: {metric} bounds go up to "
                          f"{limit:g}{' ms' if metric == 'latency_ms' else ''}")
    return Constraint(metric, value)


def _shown(part: str) -> str:
    return part if len(part) <= 40 else f"{part[:20]}...{part[-16:]}"


def format_budget(constraints: tuple[Constraint, ...]) -> str:
    return ", ".join(str(c) for c in constraints) or "none"
