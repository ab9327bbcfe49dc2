"""How a supernet is trained: the recipe (`SupernetRecipe`), the sampling rules it may name, and
the defaults that differ by supernet style. The part of the recipe that names the training (its
`describe()`) keys the cache."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from search_spaces import NasError, SearchSpace, get_space

SAMPLINGS = ("auto", "sandwich", "fair", "uniform")


@dataclass(frozen=True)
class SupernetRecipe:
    """How a supernet is trained. `train_images` is the share of the training split seen per
    epoch (a fresh seeded draw each epoch; None: all of it). `resolution`: None for the
    data's, a number of pixels, or "arch" (each subnet at its own resolution: ViT, whose
    position embeddings fix the input size). The defaults fit a `mobile` supernet on
    Fashion-MNIST into a few minutes on two CPU cores (see docs/supernet.md)."""

    epochs: int = 5
    train_images: int | None = 8_000
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-5
    warmup: float = 0.05
    random_subnets: int = 2
    distill: float = 1.0  # weight of the distillation loss for the non-largest subnets
    temperature: float = 1.0
    label_smoothing: float = 0.1
    kernel_transform: bool = True
    resolution: int | str | None = None
    seed: int = 0
    # which subnets each step trains: "sandwich" (largest, smallest, random; in-place
    # distillation), "fair" (FairNAS: every option of every gene once per step, labels only),
    # "uniform" (2 + random_subnets random subnets, labels only) or "auto" (sandwich for
    # elastic supernets, fair for one-shot ones: see docs/ranking.md for the measurements)
    sampling: str = "auto"
    # multi-architectural sampling (ViT-ResNAS): the step's subnets in groups of this many,
    # each group one forward-backward with every subnet on its own contiguous slice of the
    # batch; 1: every subnet on the whole batch, one backward each (see docs/supernet.md)
    subnets_per_pass: int = 1
    # ranking distillation from a prior (RD-NAS, Dong et al. 2023, with FLOPs as the prior):
    # the weight of a hinge that asks each subnet of a step to have a loss no higher than
    # every subnet of that step with fewer FLOPs; 0: off (see docs/ranking.md)
    rank_loss: float = 0.0
    # BatchNorm's scale and shift trained (True) or held at 1 and 0 (False: the affine=False
    # BatchNorm of DARTS's and NAS-Bench-201's own weight-sharing supernets, where a scale
    # shared by every context an op appears in would set how it mixes with its neighbours)
    norm_affine: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise NasError(f"epochs must be a whole number >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise NasError(f"batch size must be at least 2 (BatchNorm), got {self.batch_size}")
        if self.train_images is not None and self.train_images < self.batch_size:
            raise NasError(f"train_images ({self.train_images}) must be at least one batch "
                           f"({self.batch_size}), or None for the whole split")
        if not 0 < self.lr < math.inf or not 0 <= self.warmup < 1 or not 0 <= self.momentum < 1:
            raise NasError("lr must be positive and finite, warmup and momentum fractions in "
                           "[0, 1)")
        if self.random_subnets < 0:
            raise NasError(f"random_subnets must be >= 0, got {self.random_subnets}")
        if not 0 <= self.distill <= 1 or not 0 < self.temperature < math.inf:
            raise NasError("distill must be in [0, 1] and temperature positive")
        if isinstance(self.subnets_per_pass, bool) or not isinstance(self.subnets_per_pass, int) \
                or self.subnets_per_pass < 1:
            raise NasError(f"subnets_per_pass must be a whole number >= 1, got "
                           f"{self.subnets_per_pass!r}")
        if self.batch_size < 2 * self.subnets_per_pass:
            raise NasError(f"batch size {self.batch_size} is too small for "
                           f"{self.subnets_per_pass} subnets per pass (each needs a slice of at "
                           f"least 2 images for BatchNorm: batch size >= "
                           f"{2 * self.subnets_per_pass})")
        if not 0 <= self.weight_decay < math.inf:
            raise NasError(f"weight_decay must be >= 0 and finite, got {self.weight_decay!r}")
        if not 0 <= self.rank_loss < math.inf:
            raise NasError(f"rank_loss must be >= 0 and finite, got {self.rank_loss!r}")
        if self.rank_loss > 0 and self.subnets_per_pass > 1:
            raise NasError("rank_loss compares subnets on the same images: it needs "
                           "subnets_per_pass 1")
        if not isinstance(self.norm_affine, bool):
            raise NasError(f"norm_affine must be true or false, got {self.norm_affine!r}")
        if self.sampling not in SAMPLINGS:
            raise NasError(f"sampling must be one of {', '.join(SAMPLINGS)}, got "
                           f"{self.sampling!r}")
        if not (self.resolution is None or self.resolution == "arch"
                or (isinstance(self.resolution, int) and self.resolution > 0)):
            raise NasError(f"resolution must be None (the data's), 'arch' or a number of "
                           f"pixels, got {self.resolution!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """Stable text form (the cache key's part). Fields added after supernets were first
        cached (KEY_OPTIONAL) are left out at their default, so those caches stay valid."""
        values = self.as_dict()
        for name, default in KEY_OPTIONAL.items():
            if values[name] == default:
                del values[name]
        return json.dumps(values, sort_keys=True)

    def steps_per_epoch(self, train_size: int) -> int:
        images = train_size if self.train_images is None else min(self.train_images, train_size)
        return max(1, images // self.batch_size)  # full batches only: BatchNorm needs >= 2


# Recipe fields that enter the cache key only when they differ from these values: their
# default reproduces the training from before they existed, and keeps its cached supernets.
KEY_OPTIONAL: dict[str, Any] = {"subnets_per_pass": 1, "rank_loss": 0.0, "norm_affine": True}

# Recipe defaults that differ by supernet style, measured on reduced NB201 against standalone
# training (docs/ranking.md): a one-shot supernet trains one path per candidate op and ranks
# at noise level after the elastic default's 5 epochs (Kendall tau 0.20), at 0.57 after 15;
# without weight decay it ranks better from each of three seeds (0.56 against 0.49 on average)
# and depends less on the seed, and better again after 30 epochs than 15 (0.61 against 0.56,
# each of the same three seeds; with weight decay, 65 epochs had ranked worse than 15).
STYLE_RECIPE: dict[str, dict[str, Any]] = {"one-shot": {"epochs": 30, "weight_decay": 0.0}}


def default_recipe(space: SearchSpace | str, **values: Any) -> SupernetRecipe:
    """The recipe for `space`: `values` over its supernet style's defaults over
    `SupernetRecipe()`'s."""
    style = (get_space(space) if isinstance(space, str) else space).supernet_style
    return SupernetRecipe(**{**STYLE_RECIPE.get(style, {}), **values})
