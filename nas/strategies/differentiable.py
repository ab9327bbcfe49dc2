"""`differentiable`: DARTS / Gumbel-softmax search behind the ask/tell interface.

The search itself runs inside the strategy, once, at the first `ask`: a supernet over the
space's own candidate blocks is trained on a data set (`data`: its train split for the
weights, its val split for the architecture) for every cost weight of `cost_weights` (see
`nas.differentiable`). `ask` then returns the derived architecture of each cost weight (most
probable options, changed greedily to meet the constraints) in the order given; after those,
architectures sampled from the learned distributions (a longer search budget keeps exploring
where the supernet put its mass). `tell` records the evaluations.

The learned probabilities are part of `state_dict`, so a restored strategy continues without
searching again. Identical searches (same space, options, seed, constraints and cost function)
in one process share one result, since the search is deterministic.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Callable, Mapping

import numpy as np

from nas.strategies.base import Strategy, StrategyError
from search_spaces import Arch

# Options that are not SearchConfig fields.
OWN_OPTIONS: dict[str, Any] = {"data": "fashion-mnist", "data_dir": None,
                               "val_fraction": 1 / 6, "cost_weights": [0.0, 0.5, 2.0]}
CACHE_SIZE = 8
_CACHE: "OrderedDict[str, dict[str, Any]]" = OrderedDict()


def _config_defaults() -> dict[str, Any]:
    from nas.differentiable.config import SearchConfig

    values = SearchConfig().as_dict()
    values["cost_metric"] = None  # resolved from the objectives and constraints
    return values


class DifferentiableSearchStrategy(Strategy):
    """Options: `data`, `data_dir`, `val_fraction`, `cost_weights` and every `SearchConfig`
    setting (`method`, `steps`, `warmup_steps`, `batch_size`, `cost_metric`, `guard`,
    `fixed`...)."""

    name = "differentiable"
    multi_objective = True  # a minimised cost objective names the cost of the sweep
    needs_tensors = True
    defaults: Mapping[str, Any] = {**OWN_OPTIONS, **_config_defaults()}

    def _setup(self) -> None:
        from nas.differentiable.config import SearchConfig

        o = self.options
        weights = o["cost_weights"]
        if not isinstance(weights, (list, tuple)) or not weights or any(
                not isinstance(w, (int, float)) or w < 0 for w in weights):
            raise StrategyError(f"differentiable: cost_weights must be a non-empty list of "
                                f"numbers >= 0, got {weights!r}")
        config = {k: o[k] for k in _config_defaults()}
        config["cost_metric"] = self._cost_metric()
        config["fixed"] = dict(config["fixed"] or {})
        self.config = SearchConfig.from_dict(config)
        self._results: list[dict[str, Any]] | None = None
        self._base: str | None = None
        self._next = 0  # next derived architecture to propose
        self._samples = 0  # proposals sampled from the learned distributions so far

    def _cost_metric(self) -> str:
        """The option, else a minimised cost objective, else the first constraint, else flops."""
        if self.options["cost_metric"] is not None:
            return str(self.options["cost_metric"])
        costs = ("flops", "flops_sparse", "params", "latency_ms")
        for objective in self.objectives[1:]:
            if objective.direction == "minimize" and objective.metric in costs:
                return objective.metric
        if self.constraints:
            return self.constraints[0].metric
        return "flops"

    # --- the search ---------------------------------------------------------------------------
    def _search(self) -> None:
        key = self._cache_key()
        if key not in _CACHE:
            _CACHE[key] = self._run_search()
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
        _CACHE.move_to_end(key)
        found = _CACHE[key]
        self._results = [dict(r) for r in found["results"]]
        self._base = found["base"]

    def _run_search(self) -> dict[str, Any]:
        from estimators.data import load_data
        from nas.differentiable.search import DifferentiableSearch

        o = self.options
        data = load_data(o["data"], o["data_dir"], val_fraction=float(o["val_fraction"]),
                         seed=self.seed)
        search = DifferentiableSearch(self.space, data, self.config, self.constraints,
                                      self.cost_fn, seed=self.seed)
        results = search.sweep([float(w) for w in o["cost_weights"]])
        base = search.relaxation.arch({d.name: len(d.options) - 1
                                       for d in search.relaxation.searched})
        return {"results": [r.as_dict(self.space) for r in results], "base": self.key(base)}

    def _cache_key(self) -> str:
        """Everything the search depends on; the cost function by its values on the smallest
        and largest architectures (two cost functions agreeing there are taken as the same)."""
        probe = {}
        if self.cost_fn is not None:
            for arch in (self.space.min_arch(), self.space.max_arch()):
                probe[self.key(arch)] = {k: v for k, v in self.cost_fn(arch).items()
                                         if isinstance(v, (int, float))}
        return json.dumps([self.space.name, self.options, self.config.as_dict(), self.seed,
                           [[c.metric, c.bound] for c in self.constraints], probe],
                          sort_keys=True, default=str)

    # --- proposals -----------------------------------------------------------------------------
    def _propose(self, rng: np.random.Generator) -> Arch | None:
        if self._results is None:
            self._search()
        assert self._results is not None
        while self._next < len(self._results):
            arch = self.decode(self._results[self._next]["arch"])
            self._next += 1
            if self.is_new(arch):
                return arch
        probs = self._results[self._samples % len(self._results)]["probs"]
        self._samples += 1
        return self._fresh(self._sampler(probs), rng)

    def _sampler(self, probs: Mapping[str, list[float]]) -> Callable[[np.random.Generator], Arch]:
        from nas.differentiable.distribution import sample_choice

        assert self._base is not None
        genes = self.decode(self._base).as_dict()

        def sample(rng: np.random.Generator) -> Arch:
            choice = sample_choice(probs, rng)
            values = {name: self.space.dimension(name).options[i] for name, i in choice.items()}
            return self.space.make({**genes, **values})

        return sample

    # --- results and checkpoints -------------------------------------------------------------
    @property
    def results(self) -> list[dict[str, Any]]:
        """One entry per cost weight (in the order given): derived arch key, probabilities, cost
        metrics, supernet accuracy, skip statistics, history (empty before the first ask)."""
        return [dict(r) for r in self._results or []]

    def _extra_state(self) -> dict[str, Any]:
        return {"results": self._results, "base": self._base, "next": self._next,
                "samples": self._samples}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        results = state.get("results")
        self._results = None if results is None else [dict(r) for r in results]
        self._base = state.get("base")
        self._next = int(state.get("next", 0))
        self._samples = int(state.get("samples", 0))
