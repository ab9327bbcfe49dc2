"""Search strategies behind one ask/tell interface (`Strategy`), looked up by name.

The registry maps names to `module:Class` and imports lazily, so using `random` never imports
the modules (and their dependencies, e.g. Optuna or torch) of the other strategies.
`Strategy.needs_tensors` tells which ones train networks themselves (`differentiable`).
"""
from __future__ import annotations

import importlib
from typing import Any, Sequence

from nas.objectives import Constraint, Objective
from nas.sampling import CostFn
from nas.strategies.base import Strategy, StrategyError, Trial
from search_spaces import SearchSpace

STRATEGIES: dict[str, str] = {
    "random": "nas.strategies.random:RandomSearch",
    "evolution": "nas.strategies.evolution:RegularizedEvolution",
    "nsga2": "nas.strategies.nsga2:NSGA2",
    "rl": "nas.strategies.rl:Reinforce",
    "tpe": "nas.strategies.tpe:TPE",
    # A supernet trained by gradient descent (needs torch and data; `nas.differentiable`).
    "differentiable": "nas.strategies.differentiable:DifferentiableSearchStrategy",
}


def list_strategies() -> list[str]:
    return list(STRATEGIES)


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered under `name`."""
    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    module, _, cls = STRATEGIES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_strategy(name: str, space: SearchSpace, objectives: Sequence[Objective],
                  constraints: Sequence[Constraint] = (), cost_fn: CostFn | None = None,
                  seed: int = 0, **options: Any) -> Strategy:
    """A strategy by name, e.g. `make_strategy("evolution", space, [Objective("acc")])`."""
    return get_strategy(name)(space, objectives, constraints, cost_fn, seed, **options)


__all__ = ["STRATEGIES", "Strategy", "StrategyError", "Trial", "get_strategy",
           "list_strategies", "make_strategy"]
