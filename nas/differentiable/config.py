"""Settings of a differentiable search, validated with one-line messages."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from nas.differentiable.errors import SearchConfigError
from search_spaces.arch import Gene

METHODS = ("auto", "darts", "gumbel")
GUARDS = ("auto", "none", "aux_skip", "early_stop")


@dataclass(frozen=True)
class SearchConfig:
    """How the supernet and its architecture distribution are trained.

    `method`: `darts` (softmax mixing, first-order DARTS), `gumbel` (Gumbel-softmax sampling,
    FBNet style) or `auto` (darts for cell spaces such as nb201, gumbel otherwise).
    `warmup_steps` weight-only steps are shared by every cost weight of a sweep; then each cost
    weight runs `steps` alternating steps (one architecture step on a validation batch, one
    weight step on a training batch). `cost_metric` is the cost in the loss term
    `cost_weight * E[cost] / cost(largest network)`; hard constraints add
    `constraint_weight * max(0, E[metric] / bound - 1)`. `guard` against DARTS's collapse to
    skip connections: `aux_skip` (DARTS-: an auxiliary skip on every mixed edge, decayed from
    1 to 0), `early_stop` (once more than `max_skip` searched dimensions have preferred a skip
    connection for `stop_patience` of the steps, stop the phase and restore the logits from
    before that began), `none`, or `auto` (early_stop for darts, none for gumbel).
    `fixed` holds genes not to search (a dimension that reshapes the network, such as the
    input resolution, is always fixed: by default at the largest value within the budget)."""

    method: str = "auto"
    steps: int = 200
    warmup_steps: int = 100
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    arch_lr: float = 3e-3
    arch_weight_decay: float = 1e-3
    tau_start: float = 5.0
    tau_end: float = 0.5
    cost_metric: str = "flops"
    constraint_weight: float = 5.0
    guard: str = "auto"
    max_skip: int = 2
    stop_patience: float = 0.1
    fixed: Mapping[str, Gene] = field(default_factory=dict)
    train_images: int | None = None
    eval_images: int = 1000
    resolution: int | None = None
    grad_clip: float = 5.0
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SearchConfigError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if self.guard not in GUARDS:
            raise SearchConfigError(f"unknown guard {self.guard!r}; known: {', '.join(GUARDS)}")
        for name in ("steps", "batch_size", "eval_images", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise SearchConfigError(f"{name} must be a positive integer, "
                                        f"got {getattr(self, name)!r}")
        for name in ("warmup_steps", "max_skip"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise SearchConfigError(f"{name} must be a non-negative integer, "
                                        f"got {getattr(self, name)!r}")
        for name in ("lr", "arch_lr", "tau_start", "tau_end", "grad_clip"):
            if not float(getattr(self, name)) > 0:
                raise SearchConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 0.0 <= float(self.stop_patience) < 1.0:
            raise SearchConfigError(f"stop_patience must be a fraction in [0, 1), "
                                    f"got {self.stop_patience!r}")
        for name in ("momentum", "weight_decay", "arch_weight_decay", "constraint_weight"):
            if not float(getattr(self, name)) >= 0:
                raise SearchConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.train_images is not None and self.train_images < 1:
            raise SearchConfigError(f"train_images must be at least 1 (or None for all), "
                                    f"got {self.train_images}")
        if self.resolution is not None and self.resolution < 1:
            raise SearchConfigError(f"resolution must be a positive number of pixels, "
                                    f"got {self.resolution}")
        if not isinstance(self.fixed, Mapping):
            raise SearchConfigError("fixed must map dimension names to values")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fixed"] = dict(self.fixed)
        return out

    @staticmethod
    def from_dict(values: Mapping[str, Any]) -> SearchConfig:
        accepted = sorted(SearchConfig.__dataclass_fields__)
        unknown = sorted(set(values) - set(accepted))
        if unknown:
            raise SearchConfigError(f"unknown search settings {unknown}; accepted: {accepted}")
        return SearchConfig(**values)
