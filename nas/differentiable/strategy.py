"""`differentiable`: DARTS / Gumbel-softmax search behind the ask/tell interface.

The search itself runs inside the strategy, once, at the first `ask`: a supernet over the
space's own candidate blocks is trained on a data set (`data`: its train split for the
weights, its val split for the architecture) for every cost weight of `cost_weights` (see
`nas.differentiable`). `ask` then returns the derived architecture of each cost weight (most
probable options, changed greedily to meet the constraints) in the order given; after those,
architectures sampled from the learned distributions (a longer search budget keeps exploring
where the supernet put its mass). `tell` records the evaluations.

In a search job that evaluates on Ray, `prepare` runs the sweep beforehand as parallel Ray Tune
trials, one per cost weight (`nas.differentiable.tune`), which give what the sequential sweep
gives. The learned probabilities are part of `state_dict`, so a restored strategy continues
without searching again. Identical searches (same space, options, seed, constraints and cost
function) in one process share one result, since the search is deterministic.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from nas.differentiable.config import SearchConfig
from nas.differentiable.errors import SearchConfigError
from nas.strategies.base import Strategy, StrategyContext, StrategyError
from nas.strategies.options import (
    StrategyOptions,
    between,
    number,
    number_list,
    option,
    optional,
    text,
    whole,
)
from search_spaces import Arch

CACHE_SIZE = 8
_CACHE: OrderedDict[str, dict[str, Any]] = OrderedDict()
_CONFIG = SearchConfig()  # the defaults of the SearchConfig settings


@dataclass(frozen=True)
class DifferentiableOptions(StrategyOptions):
    """The data and sweep, then every `SearchConfig` setting (checked by SearchConfig)."""

    data: str = option("fashion-mnist", "data set the supernet is trained on (train split: "
                                        "weights, val split: architecture)", text())
    data_dir: str | None = option(None, "where the data set is (None: the default place)",
                                  optional(text()))
    val_fraction: float = option(1 / 6, "share of the training images held out for the "
                                        "architecture steps",
                                 between(0, 1, low_open=True, high_open=True))
    cost_weights: list[float] = option(
        help="the sweep: one search per weight of the expected-cost term; the derived archs "
             "are proposed in this order", check=number_list(0), factory=lambda: [0.0, 0.5, 2.0])
    method: str = option(_CONFIG.method, "darts, gumbel or auto (darts for cell spaces such as "
                                         "nb201, gumbel otherwise)")
    steps: int = option(_CONFIG.steps, "alternating architecture/weight steps per cost weight")
    warmup_steps: int = option(_CONFIG.warmup_steps, "weight-only steps shared by every cost "
                                                     "weight")
    batch_size: int = option(_CONFIG.batch_size, "images per step")
    lr: float = option(_CONFIG.lr, "learning rate of the weights (SGD)", number())
    momentum: float = option(_CONFIG.momentum, "SGD momentum of the weights", number())
    weight_decay: float = option(_CONFIG.weight_decay, "weight decay of the weights", number())
    arch_lr: float = option(_CONFIG.arch_lr, "learning rate of the architecture logits (Adam)",
                            number())
    arch_weight_decay: float = option(_CONFIG.arch_weight_decay, "weight decay of the "
                                                                 "architecture logits", number())
    tau_start: float = option(_CONFIG.tau_start, "Gumbel-softmax temperature at the start",
                              number())
    tau_end: float = option(_CONFIG.tau_end, "Gumbel-softmax temperature at the end", number())
    cost_metric: str | None = option(None, "cost in the loss (flops, flops_sparse, params, "
                                           "latency_ms); None: a minimised cost objective, "
                                           "else the first budget's metric, else flops",
                                     optional(text()))
    constraint_weight: float = option(_CONFIG.constraint_weight, "weight of the hinge penalty "
                                                                 "of a hard budget", number())
    guard: str = option(_CONFIG.guard, "against DARTS's collapse to skips: aux_skip, "
                                       "early_stop, none or auto (early_stop for darts)")
    max_skip: int = option(_CONFIG.max_skip, "early_stop: skips allowed before the phase stops")
    stop_patience: float = option(_CONFIG.stop_patience, "early_stop: share of the steps the "
                                                         "skips must dominate", number())
    fixed: Mapping[str, Any] = option(help='genes held fixed, e.g. {"r": 160} (a dimension '
                                           'that reshapes the network is always fixed)',
                                      factory=dict)
    train_images: int | None = option(_CONFIG.train_images, "training images used (None: all)",
                                      optional(whole()))
    eval_images: int = option(_CONFIG.eval_images, "validation images for the supernet "
                                                   "accuracy of each derived arch")
    resolution: int | None = option(_CONFIG.resolution, "resize the images to this size (None: "
                                                        "as they are)", optional(whole()))
    grad_clip: float = option(_CONFIG.grad_clip, "gradient-norm clip of the weights", number())
    log_every: int = option(_CONFIG.log_every, "steps between history records")

    def validate(self) -> None:
        try:
            self.search_config("flops")
        except SearchConfigError as exc:  # already names the setting: no strategy prefix
            raise StrategyError(str(exc)) from None

    def search_config(self, cost_metric: str) -> SearchConfig:
        """The SearchConfig of these options with `cost_metric` resolved."""
        values = {f.name: getattr(self, f.name) for f in fields(SearchConfig)}
        if not isinstance(self.fixed or {}, Mapping):
            raise SearchConfigError("fixed must map dimension names to values")
        values.update(cost_metric=cost_metric, fixed=dict(self.fixed or {}))
        return SearchConfig.from_dict(values)


class DifferentiableSearchStrategy(Strategy):
    """Options (`DifferentiableOptions`): `data`, `data_dir`, `val_fraction`, `cost_weights`
    and every `SearchConfig` setting (`method`, `steps`, `warmup_steps`, `batch_size`,
    `cost_metric`, `guard`, `fixed`...)."""

    name = "differentiable"
    multi_objective = True  # a minimised cost objective names the cost of the sweep
    needs_tensors = True
    options_type = DifferentiableOptions
    opts: DifferentiableOptions

    def _setup(self) -> None:
        self.config = self.opts.search_config(self._cost_metric())
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
    def prepare(self, context: StrategyContext) -> None:
        """When the job evaluates on Ray (`context.workers != 0`), run the cost-weight sweep as
        parallel Ray Tune trials, one search per weight, before the runner's actors take the
        CPUs. Each weight's search starts from the same seeded warm-up and does not depend on
        the other weights, so the strategy then proposes exactly what its own sequential sweep
        would have. Nothing when restored from a checkpoint or already searched here."""
        if context.workers == 0 or self.results:
            return
        key = self._cache_key()
        if key in _CACHE:
            return
        from nas.differentiable.tune import tune_sweep

        o = self.options
        params = {"space": context.space, "data": o["data"], "data_dir": o["data_dir"],
                  "val_fraction": float(o["val_fraction"]), "config": self.config.as_dict(),
                  "constraints": [c.to_json() for c in context.constraints],
                  "eval_config": dict(context.eval_config), "seed": context.seed,
                  "threads": context.threads}
        weights = [float(w) for w in o["cost_weights"]]
        context.log(f"differentiable search: {len(weights)} cost weights as Ray Tune trials")
        results, base = tune_sweep(params, weights, context.workers,
                                   str((context.run_dir / "tune").resolve()), context.address)
        _remember(key, {"results": results, "base": base})

    def _search(self) -> None:
        key = self._cache_key()
        if key not in _CACHE:
            _remember(key, self._run_search())
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
                           [c.to_json() for c in self.constraints], probe],
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


def _remember(key: str, found: dict[str, Any]) -> None:
    """Keep a sweep's results for identical searches in this process (the last CACHE_SIZE)."""
    _CACHE[key] = found
    _CACHE.move_to_end(key)
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
