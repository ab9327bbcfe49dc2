"""Expected cost of a relaxed network under its architecture distribution (a differentiable
function of the choice probabilities), and the exact cost of one discrete choice.

A cost is additive over blocks, so with independent choices its expectation is exact:
E[cost] = sum over blocks of P(block active) * E[block cost], where a joint block's expected
cost sums its candidates' costs weighted by the product of their options' probabilities, and a
decomposed block (the NB201 cell) adds one term per argument. Block costs come from
`BlockCost`: the analytical FLOPs / sparse FLOPs / params of each `BlockSpec`, or a latency
lookup table. `LinearCost` covers a metric that only a whole-network `cost_fn` gives (e.g. a
latency predictor without block entries): it is linearised around the base network, one
dimension at a time.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from nas.differentiable.errors import SearchConfigError
from nas.differentiable.relax import Relaxation
from nas.sampling import CostFn
from search_spaces import BlockSpec
from search_spaces.ops import block_cost

BlockCost = Callable[[Sequence[BlockSpec]], Sequence[float]]
Probs = Mapping[str, torch.Tensor]  # dimension name -> (options,) probabilities
ANALYTICAL = ("flops", "flops_sparse", "params")


def analytical(metric: str) -> BlockCost:
    """Per-block cost from the ops' closed forms (`flops` = MACs, as the FLOPs estimator)."""
    if metric not in ANALYTICAL:
        raise SearchConfigError(f"no analytical block cost for {metric!r}; known: "
                                f"{', '.join(ANALYTICAL)}")
    field = {"flops": "macs", "flops_sparse": "sparse_macs", "params": "params"}[metric]

    def cost(specs: Sequence[BlockSpec]) -> list[float]:
        return [float(getattr(block_cost(s), field)) for s in specs]

    return cost


def table_cost(table: Any) -> BlockCost:
    """Per-block latency from a lookup table: an object with `lookup(specs) -> [ms]` (the
    latency estimators' block tables) or a mapping from block signature to ms."""
    if hasattr(table, "lookup"):
        return lambda specs: [float(v) for v in table.lookup(list(specs))]
    if isinstance(table, Mapping):
        def cost(specs: Sequence[BlockSpec]) -> list[float]:
            missing = [s.signature for s in specs if s.signature not in table]
            if missing:
                raise SearchConfigError(f"the latency table has no entry for {missing[0]} "
                                        f"({len(missing)} block(s) missing)")
            return [float(table[s.signature]) for s in specs]
        return cost
    raise SearchConfigError("a latency table must have lookup(specs) or map block signatures "
                            "to milliseconds")


class ExpectedCost:
    """Expected and exact cost of `relaxation` networks for one metric from a `BlockCost`;
    whole network = `offset + scale * sum of blocks` (a latency table's fitted correction)."""

    def __init__(self, relaxation: Relaxation, cost: BlockCost, metric: str,
                 offset: float = 0.0, scale: float = 1.0):
        self.relaxation, self.metric = relaxation, metric
        self.block_cost, self.offset, self.scale = cost, float(offset), float(scale)
        self._activity = _activity_table(relaxation)
        self._keep = {d.dim: torch.tensor(d.keep, dtype=torch.float64)
                      for d in relaxation.depths}
        self.constant = 0.0
        self._terms: list[tuple[tuple[str, int] | None, Callable[[Probs], torch.Tensor]]] = []
        for pos in relaxation.positions:
            self._add_position(pos)

    def _add_position(self, pos) -> None:
        depth = self._activity.get(pos.index)
        if pos.kind == "fixed":
            value = float(self.block_cost([pos.base.cost_spec])[0])
            if depth is None:
                self.constant += value
            else:
                self._terms.append((depth, _const(value)))
        elif pos.kind == "joint":
            costs = torch.tensor(self.block_cost([c.cost_spec for c in pos.candidates]),
                                 dtype=torch.float64)
            combos = torch.tensor([c.combo for c in pos.candidates], dtype=torch.long)
            self._terms.append((depth, _joint(pos.dims, combos, costs)))
        else:  # decomposed: base cost plus one difference per argument
            base = float(self.block_cost([pos.base.cost_spec])[0])
            deltas = []
            for per_option in pos.per_dim:
                values = self.block_cost([c.cost_spec for c in per_option])
                deltas.append(torch.tensor(values, dtype=torch.float64) - base)
            self._terms.append((depth, _decomposed(pos.dims, base, deltas)))

    def expected(self, probs: Probs) -> torch.Tensor:
        """E[cost] under independent choices with these probabilities (differentiable)."""
        total = torch.tensor(self.constant, dtype=torch.float64)
        for depth, term in self._terms:
            value = term(probs)
            if depth is not None:
                dim, offset = depth
                value = value * (probs[dim].double() * (self._keep[dim] > offset)).sum()
            total = total + value
        return self.offset + self.scale * total

    def of(self, choice: Mapping[str, int]) -> float:
        """The exact cost of one discrete choice."""
        specs = self.relaxation.specs(choice, cost=True)
        return self.offset + self.scale * float(sum(self.block_cost(specs)))

    def reference(self) -> float:
        """Cost of the base (largest) network: the scale the cost term is divided by."""
        base = {d.name: len(d.options) - 1 for d in self.relaxation.searched}
        return max(self.of(base), 1e-12)


class LinearCost:
    """A whole-network metric of `cost_fn`, linearised around the base network: the cost of
    changing one dimension at a time is summed (exact when the metric adds over blocks and
    each block depends on one dimension)."""

    def __init__(self, relaxation: Relaxation, cost_fn: CostFn, metric: str):
        self.relaxation, self.metric, self.cost_fn = relaxation, metric, cost_fn
        base = {d.name: len(d.options) - 1 for d in relaxation.searched}
        self.base_value = self._value(base)
        self.deltas: dict[str, torch.Tensor] = {}
        for dim in relaxation.searched:
            values = [self._value({**base, dim.name: i}) - self.base_value
                      for i in range(len(dim.options))]
            self.deltas[dim.name] = torch.tensor(values, dtype=torch.float64)

    def _value(self, choice: Mapping[str, int]) -> float:
        metrics = self.cost_fn(self.relaxation.arch(choice))
        if self.metric not in metrics:
            raise SearchConfigError(f"the cost function gives {sorted(metrics)}, not "
                                    f"{self.metric!r}")
        return float(metrics[self.metric])

    def expected(self, probs: Probs) -> torch.Tensor:
        total = torch.tensor(self.base_value, dtype=torch.float64)
        for name, delta in self.deltas.items():
            total = total + (probs[name].double() * delta).sum()
        return total

    def of(self, choice: Mapping[str, int]) -> float:
        return self._value(choice)

    def reference(self) -> float:
        return max(self.base_value, 1e-12)


CostModel = ExpectedCost | LinearCost


def _activity_table(relaxation: Relaxation) -> dict[int, tuple[str, int]]:
    """Position -> (depth dimension, offset in its run) for positions a depth may drop."""
    table = {}
    for depth in relaxation.depths:
        for offset, index in enumerate(range(depth.start, depth.end)):
            if offset >= min(depth.keep):
                table[index] = (depth.dim, offset)
    return table


def _const(value: float) -> Callable[[Probs], torch.Tensor]:
    tensor = torch.tensor(value, dtype=torch.float64)
    return lambda probs: tensor


def _joint(dims: tuple[str, ...], combos: torch.Tensor,
           costs: torch.Tensor) -> Callable[[Probs], torch.Tensor]:
    def term(probs: Probs) -> torch.Tensor:
        weight = torch.ones(len(costs), dtype=torch.float64)
        for k, dim in enumerate(dims):
            weight = weight * probs[dim].double()[combos[:, k]]
        return (weight * costs).sum()
    return term


def _decomposed(dims: tuple[str, ...], base: float,
                deltas: list[torch.Tensor]) -> Callable[[Probs], torch.Tensor]:
    def term(probs: Probs) -> torch.Tensor:
        total = torch.tensor(base, dtype=torch.float64)
        for dim, delta in zip(dims, deltas):
            total = total + (probs[dim].double() * delta).sum()
        return total
    return term


def cost_model(relaxation: Relaxation, metric: str, block_cost: BlockCost | None = None,
               cost_fn: CostFn | None = None, offset: float = 0.0,
               scale: float = 1.0) -> CostModel:
    """The exact block model when the metric is analytical or a block table is given; else the
    linearised model of `cost_fn`."""
    if block_cost is not None:
        return ExpectedCost(relaxation, block_cost, metric, offset, scale)
    if metric in ANALYTICAL:
        return ExpectedCost(relaxation, analytical(metric), metric)
    if cost_fn is not None:
        return LinearCost(relaxation, cost_fn, metric)
    raise SearchConfigError(f"no way to cost {metric!r}: give a latency table (block_cost) or a "
                            f"cost function that returns it, or use one of {', '.join(ANALYTICAL)}")


__all__ = ["ANALYTICAL", "BlockCost", "CostModel", "ExpectedCost", "LinearCost", "analytical",
           "cost_model", "table_cost"]
