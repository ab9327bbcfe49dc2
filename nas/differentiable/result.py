"""What one differentiable search (one cost weight) found, as plain, JSON-ready data."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search_spaces import Arch, SearchSpace

SKIP_OPTIONS = ("skip_connect", "skip")  # option names of an identity path


@dataclass(frozen=True)
class SearchResult:
    """The derived architecture of one cost weight, with the learned probabilities.

    `metrics`: the derived arch's cost metrics (from the cost function). `expected_cost`:
    E[cost_metric] under the final probabilities. `supernet_acc`: top-1 % of the derived arch
    inside the supernet (shared weights, batch-statistics BN) on validation images: a cheap
    ranking signal, not a standalone accuracy. `skip_edges`: searched dimensions whose most
    probable option is a skip connection, of `skip_dims` that offer one (DARTS's collapse
    shows as most of them). `stopped_at`: the step an early-stop guard ended the phase."""

    cost_weight: float
    arch: Arch
    probs: Mapping[str, list[float]]
    metrics: Mapping[str, float]
    expected_cost: float
    supernet_acc: float
    skip_edges: int
    skip_dims: int
    skip_weight: float
    stopped_at: int | None
    steps: int
    seconds: float
    history: Sequence[Mapping[str, float]] = field(default_factory=list)

    @property
    def collapsed(self) -> bool:
        """At least half of the dimensions that offer a skip connection chose it."""
        return self.skip_dims > 0 and 2 * self.skip_edges >= self.skip_dims

    def as_dict(self, space: SearchSpace | None = None) -> dict[str, Any]:
        key = f"{self.arch.space}:{(space or self.arch.search_space).encode(self.arch)}"
        return {"cost_weight": self.cost_weight, "arch": key,
                "probs": {k: list(v) for k, v in self.probs.items()},
                "metrics": dict(self.metrics), "expected_cost": self.expected_cost,
                "supernet_acc": self.supernet_acc, "skip_edges": self.skip_edges,
                "skip_dims": self.skip_dims, "skip_weight": self.skip_weight,
                "collapsed": self.collapsed, "stopped_at": self.stopped_at,
                "steps": self.steps, "seconds": self.seconds,
                "history": [dict(h) for h in self.history]}

    @staticmethod
    def from_dict(data: Mapping[str, Any], space: SearchSpace) -> SearchResult:
        body = str(data["arch"]).split(":", 1)[1]
        return SearchResult(
            cost_weight=float(data["cost_weight"]), arch=space.decode(body),
            probs={k: [float(x) for x in v] for k, v in data["probs"].items()},
            metrics={k: float(v) for k, v in data["metrics"].items()},
            expected_cost=float(data["expected_cost"]), supernet_acc=float(data["supernet_acc"]),
            skip_edges=int(data["skip_edges"]), skip_dims=int(data["skip_dims"]),
            skip_weight=float(data["skip_weight"]),
            stopped_at=None if data["stopped_at"] is None else int(data["stopped_at"]),
            steps=int(data["steps"]), seconds=float(data["seconds"]),
            history=[dict(h) for h in data.get("history", [])])


def skip_stats(options: Mapping[str, Sequence[Any]], probs: Mapping[str, Sequence[float]],
               margin: float = 0.0) -> tuple[int, int, float]:
    """(dimensions whose most probable option is a skip, ahead of the next by more than
    `margin`; dimensions offering a skip; mean probability of the skip option over those)."""
    edges = dims = 0
    weights = []
    for name, values in probs.items():
        skip = [i for i, o in enumerate(options[name]) if o in SKIP_OPTIONS]
        if not skip:
            continue
        dims += 1
        p_skip = float(values[skip[0]])
        weights.append(p_skip)
        others = [float(v) for i, v in enumerate(values) if i != skip[0]]
        if int(np.argmax(values)) == skip[0] and p_skip - max(others, default=0.0) > margin:
            edges += 1
    return edges, dims, float(np.mean(weights)) if weights else 0.0


def front(results: Sequence[SearchResult], metric: str) -> list[SearchResult]:
    """The results no other result beats on both `metric` (lower) and supernet accuracy."""
    from nas.pareto import pareto_mask

    if not results:
        return []
    points = np.array([[r.metrics[metric], -r.supernet_acc] for r in results], dtype=float)
    return [r for r, keep in zip(results, pareto_mask(points)) if keep]
