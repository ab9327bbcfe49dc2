"""Constraint-aware sampling: random architectures that meet a budget.

Rejection alone is hopeless for tight budgets (a 150M-flops `mobile` budget admits well under
1% of uniform samples), so an over-budget sample is repaired: one active gene at a time steps
down to the next cheaper option (options are ordered cheapest first) until every constraint
holds. The repair keeps the sample's other genes, so samples stay spread over the space.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from nas.objectives import Constraint, all_satisfied, format_metric
from search_spaces import Arch, NasError, SearchSpace
from search_spaces.space import Rng, as_rng

CostFn = Callable[[Arch], Mapping[str, float]]


class InfeasibleBudgetError(NasError):
    pass


def check_feasible(space: SearchSpace, constraints: Sequence[Constraint], cost_fn: CostFn) -> None:
    """Raise InfeasibleBudgetError when even the smallest architecture breaks a constraint."""
    smallest = space.min_arch()
    metrics = cost_fn(smallest)
    for c in constraints:
        if c.metric not in metrics:
            raise NasError(f"no estimator gives {c.metric} for space {space.name}")
        if not c.satisfied(metrics):
            raise InfeasibleBudgetError(
                f"budget {c} is below the smallest architecture of space {space.name!r} "
                f"({c.metric} = {format_metric(c.metric, metrics[c.metric])}); "
                f"raise the budget to at least that")


def shrink(space: SearchSpace, arch: Arch, rng: Rng = None) -> Arch | None:
    """One active gene one option cheaper; None when every gene is already at its cheapest."""
    rng = as_rng(rng)
    genes = arch.as_dict()
    candidates = [d for d in space.dimensions
                  if genes[d.name] is not None and d.options.index(genes[d.name]) > 0]
    if not candidates:
        return None
    dim = candidates[int(rng.integers(len(candidates)))]
    genes[dim.name] = dim.options[dim.options.index(genes[dim.name]) - 1]
    return space.make(genes)


def repair(space: SearchSpace, arch: Arch, constraints: Sequence[Constraint], cost_fn: CostFn,
           rng: Rng = None) -> Arch:
    """Shrink `arch` until it meets every constraint."""
    rng = as_rng(rng)
    current: Arch | None = arch
    while current is not None:
        if all_satisfied(constraints, cost_fn(current)):
            return current
        current = shrink(space, current, rng)
    check_feasible(space, constraints, cost_fn)
    raise InfeasibleBudgetError(f"no architecture of {space.name!r} found within the budget")


def sample_within(space: SearchSpace, constraints: Sequence[Constraint], cost_fn: CostFn,
                  rng: Rng = None) -> Arch:
    """A random architecture that meets every constraint."""
    rng = as_rng(rng)
    return repair(space, space.sample(rng), constraints, cost_fn, rng)


def mutate_within(space: SearchSpace, arch: Arch, constraints: Sequence[Constraint],
                  cost_fn: CostFn, rng: Rng = None, num_genes: int = 1) -> Arch:
    """A mutated child repaired to meet every constraint."""
    rng = as_rng(rng)
    return repair(space, space.mutate(arch, rng, num_genes), constraints, cost_fn, rng)
