"""From learned probabilities to one discrete architecture that meets the hard constraints.

The unconstrained answer is the most probable option of each dimension (argmax). When that
breaks a constraint, options are changed one at a time, each time taking the change that
removes the most violation per unit of log-probability given up, until every constraint holds:
a greedy solution of "most probable architecture within the budget", measured with the real
cost function on whole architectures (so the result is feasible by construction).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from nas.differentiable.errors import RelaxationError
from nas.differentiable.relax import Relaxation
from nas.objectives import Constraint, format_metric
from nas.sampling import CostFn
from search_spaces import Arch

EPS = 1e-9


def argmax_choice(probs: Mapping[str, Sequence[float]]) -> dict[str, int]:
    return {name: max(range(len(p)), key=lambda i: (p[i], -i)) for name, p in probs.items()}


def violation(constraints: Sequence[Constraint], metrics: Mapping[str, float]) -> float:
    return sum(c.violation(metrics) for c in constraints)


def derive(relaxation: Relaxation, probs: Mapping[str, Sequence[float]],
           constraints: Sequence[Constraint] = (), cost_fn: CostFn | None = None) -> Arch:
    """The most probable architecture, changed greedily until it meets `constraints`."""
    choice = argmax_choice(probs)
    if not constraints:
        return relaxation.arch(choice)
    if cost_fn is None:
        raise RelaxationError(f"constraints {[str(c) for c in constraints]} need a cost function")
    return relaxation.arch(constrained_choice(relaxation, probs, choice, constraints, cost_fn))


def constrained_choice(relaxation: Relaxation, probs: Mapping[str, Sequence[float]],
                       choice: dict[str, int], constraints: Sequence[Constraint],
                       cost_fn: CostFn) -> dict[str, int]:
    log_p = {name: [math.log(max(v, EPS)) for v in p] for name, p in probs.items()}
    current = dict(choice)
    seen = {tuple(sorted(current.items()))}
    metrics = cost_fn(relaxation.arch(current))
    over = violation(constraints, metrics)
    while over > 0:
        best: tuple[float, dict[str, int], float] | None = None
        for dim in relaxation.searched:
            now = current[dim.name]
            for option in range(len(dim.options)):
                if option == now:
                    continue
                trial = {**current, dim.name: option}
                if tuple(sorted(trial.items())) in seen:
                    continue
                trial_over = violation(constraints, cost_fn(relaxation.arch(trial)))
                gain = over - trial_over
                if gain <= 0:
                    continue
                loss = max(log_p[dim.name][now] - log_p[dim.name][option], 0.0) + EPS
                score = gain / loss
                if best is None or score > best[0]:
                    best = (score, trial, trial_over)
        if best is None:
            worst = max(constraints, key=lambda c: c.violation(metrics))
            value = metrics.get(worst.metric, math.nan)
            raise RelaxationError(
                f"no architecture with the fixed genes {dict(relaxation.fixed)} meets {worst} "
                f"(closest: {worst.metric} = {format_metric(worst.metric, value)}); raise the "
                f"budget or fix smaller values")
        _, current, over = best
        seen.add(tuple(sorted(current.items())))
        metrics = cost_fn(relaxation.arch(current))
    return current
