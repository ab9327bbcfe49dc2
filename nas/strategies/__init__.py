"""Search strategies behind one ask/tell interface (`Strategy`), looked up by name.

The registry maps names to `module:Class` and imports lazily, so using `random` never imports
the modules (and their dependencies, e.g. Optuna or torch) of the other strategies. Each class
describes itself: `multi_objective`, `options_type` (its options: defaults, help, checks) and
`needs_tensors` (it trains networks itself: `differentiable`). Adding a strategy is one module
and one line here.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nas.objectives import Constraint, Objective
from nas.sampling import CostFn
from nas.strategies.base import Strategy, StrategyContext, StrategyError, Trial
from nas.strategies.options import option_help
from search_spaces import SearchSpace
from search_spaces.plugins import load_registered

STRATEGIES: dict[str, str] = {
    "random": "nas.strategies.random:RandomSearch",
    "evolution": "nas.strategies.evolution:RegularizedEvolution",
    "nsga2": "nas.strategies.nsga2:NSGA2",
    "rl": "nas.strategies.rl:Reinforce",
    "tpe": "nas.strategies.tpe:TPE",
    "bananas": "nas.strategies.bananas:Bananas",
    "local": "nas.strategies.local:LocalSearch",
    # A supernet trained by gradient descent (needs torch and data; `nas.differentiable`).
    "differentiable": "nas.differentiable.strategy:DifferentiableSearchStrategy",
}


def list_strategies() -> list[str]:
    """The registered names, in registry order."""
    return list(STRATEGIES)


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered under `name`."""
    return load_registered(STRATEGIES, name, "strategy", StrategyError)


def is_multi_objective(name: str) -> bool:
    """Whether the strategy `name` accepts several objectives (imports only that strategy)."""
    return get_strategy(name).multi_objective


def single_objective_strategies() -> tuple[str, ...]:
    """The names of the strategies that optimise one objective (imports every strategy)."""
    return tuple(n for n in STRATEGIES if not get_strategy(n).multi_objective)


def strategy_options(name: str) -> dict[str, tuple[Any, str]]:
    """The options of the strategy `name`: {option: (default, help)}."""
    cls = get_strategy(name)
    helps = option_help(cls.options_type)
    return {option: (default, helps[option]) for option, default in cls.defaults.items()}


def make_strategy(name: str, space: SearchSpace, objectives: Sequence[Objective],
                  constraints: Sequence[Constraint] = (), cost_fn: CostFn | None = None,
                  seed: int = 0, **options: Any) -> Strategy:
    """A strategy by name, e.g. `make_strategy("evolution", space, [Objective("acc")])`."""
    return get_strategy(name)(space, objectives, constraints, cost_fn, seed, **options)


__all__ = ["STRATEGIES", "Strategy", "StrategyContext", "StrategyError", "Trial", "get_strategy",
           "is_multi_objective", "list_strategies", "make_strategy",
           "single_objective_strategies", "strategy_options"]
