"""Zero-cost warm start (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021).

A strategy's initial archs are usually random. With `warm_start` naming a cheap metric of the
cost_fn (a zero-cost proxy score, params, FLOPs: known without an evaluation) they are instead
the best of a larger random pool of `warm_start_pool` archs under that metric, best first.
Scoring the pool costs `warm_start_pool` cost_fn calls (a proxy: one forward-backward pass on
one batch, 0.07-0.6 s on one core for the built-in spaces), against minutes for an evaluation
that trains or measures.

A strategy that supports it puts `WarmStartOptions` among its options' bases and draws its
initial archs with `Strategy.initial_arch`. The pool is drawn from its own generator seeded by
the strategy's seed, so a restored strategy ranks the same pool and continues identically.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nas.pareto import non_dominated_sort
from nas.strategies.errors import StrategyError
from nas.strategies.options import StrategyOptions, integer, one_of, option, optional, text
from search_spaces import Arch, SearchSpace

POOL_STREAM = 7_919  # the pool's generator: (seed, POOL_STREAM), apart from the asks' streams


@dataclass(frozen=True)
class WarmStartOptions(StrategyOptions):
    warm_start: str | None = option(None, "a cheap metric of cost_fn (a zero-cost proxy, "
                                          "params...) ranking a random pool; the initial archs "
                                          "are its best; None: random initial archs",
                                    optional(text()), metric="cost")
    warm_start_pool: int = option(1000, "random archs scored by warm_start", integer(1))
    warm_start_direction: str = option("maximize", "whether a larger or a smaller warm_start "
                                                   "metric is better",
                                       one_of("maximize", "minimize"))


def ranked_pool(space: SearchSpace, seed: int, options: WarmStartOptions,
                draw: Callable[[np.random.Generator], Arch],
                cost: Callable[[Arch], Mapping[str, float]],
                objectives: Sequence[tuple[str, float]] = ()) -> list[Arch]:
    """`options.warm_start_pool` distinct archs from `draw`, best first under the
    `warm_start` metric (ties in the order drawn). `objectives` ((metric, sign), larger signed
    value better) are those the cost_fn gives too, e.g. a predicted latency: the pool is then
    ranked by non-dominated layers of the metric and them, the metric ordering each layer, so
    that a multi-objective search starts along the whole front. An arch whose cost_fn lacks a
    metric is a StrategyError naming it."""
    rng = np.random.default_rng([seed, POOL_STREAM])
    pool: dict[Arch, None] = {}
    for _ in range(4 * options.warm_start_pool):  # a small space repeats archs: stop trying
        if len(pool) >= options.warm_start_pool:
            break
        pool[draw(rng)] = None
    archs = list(pool)
    sign = 1.0 if options.warm_start_direction == "maximize" else -1.0
    metrics = [(options.warm_start, sign), *objectives]
    values = np.empty((len(archs), len(metrics)))
    for i, arch in enumerate(archs):
        known = cost(arch)
        for j, (metric, direction) in enumerate(metrics):
            if metric not in known:
                raise StrategyError(f"warm_start: the cost_fn gives no {metric!r} for "
                                    f"{space.encode(arch)}")
            values[i, j] = -direction * float(known[metric])  # minimised
    values[~np.isfinite(values)] = np.inf  # a failed score ranks last
    layers = non_dominated_sort(values) if objectives else [np.arange(len(archs))]
    order: list[int] = []
    for layer in layers:
        order += sorted(layer.tolist(), key=lambda i: (values[i, 0], i))
    return [archs[i] for i in order]
