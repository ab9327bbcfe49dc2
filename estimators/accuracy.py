"""Accuracy estimators: `name`, `__call__(arch) -> {"acc": ..., ..., "acc_estimator": ...}`,
deterministic given their settings and seed, cached by `arch.key`.

- `ProxyEstimator` (`proxy`): zero-cost proxies of the untrained network on one training batch;
  `acc` is the chosen proxy's score (a ranking score, not a percentage) and every proxy's score
  is returned under its own name.
- `TrainEstimator` (`train`): short standalone training from scratch; `acc` is top-1 % on the
  validation split (the test split only when asked for a final report).
- `TableEstimator` (`table`): lookup in a CSV of measured architectures.

Networks are built with the data set's classes and channels and run at the data set's
resolution (the architecture's own resolution drives FLOPs and latency, not this): a network
that cannot run that small (a ViT with fixed position embeddings) needs `resolution="arch"`
(inputs resized to the architecture's own size) or a number of pixels.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from estimators.base import (
    ESTIMATOR_KEY,
    AccuracyEstimator,
    EstimatorOptions,
    Metrics,
    Resolution,
    Shared,
    option,
)
from estimators.data import DataSplits, load_data
from estimators.progress import StepProgress
from estimators.proxies import PROXY_NAMES, score_proxies
from estimators.table import AccuracyTable
from estimators.train import TrainRecipe, resize_batch, train_model
from search_spaces import Arch, NasError, SearchSpace, first_line, get_space

RESOLUTION_HELP = "input size: None (the data's), 'arch' (the architecture's own) or pixels"


def target_resolution(arch: Arch, data: DataSplits, resolution: Resolution) -> int:
    """Pixels per side the network of `arch` is fed (see the module docstring)."""
    if resolution is None:
        return data.resolution
    if resolution == "arch":
        return get_space(arch.space).input_size(arch)
    if isinstance(resolution, int) and resolution > 0:
        return resolution
    raise NasError(f"resolution must be omitted (the data's), 'arch' or a positive number of "
                   f"pixels, got {resolution!r}")


def build_for_data(arch: Arch, data: DataSplits, seed: int, size: int) -> nn.Module:
    """The network of `arch` for `data`'s classes and channels, initialised from `seed`, after
    checking that it runs on `size` x `size` inputs."""
    space: SearchSpace = get_space(arch.space)
    torch.manual_seed(seed)
    model = space.build(arch, num_classes=data.num_classes, in_channels=data.in_channels)
    probe = torch.zeros(2, data.in_channels, size, size)
    try:
        with torch.no_grad():
            model.eval()(probe)
    except RuntimeError as exc:
        own = space.input_size(arch)
        raise NasError(f"{arch.key} cannot run on {size}x{size} inputs "
                       f"({first_line(exc, 120)}); use resolution 'arch' "
                       f"(--resolution arch: resize the data to the architecture's own {own}) "
                       f"or a larger number of pixels") from None
    return model.train()


@dataclass(frozen=True)
class ProxyOptions(EstimatorOptions):
    proxy: str = option("jacov", "the proxy reported as acc", "proxy")
    proxies: list[str] | None = option(None, "the proxies reported (default: all)", "proxies")
    batch_size: int = option(64, "images in the one scored batch (>= 2: jacov correlates "
                                 "inputs)", "int2")
    resolution: Resolution = option(None, RESOLUTION_HELP, "resolution")


class ProxyEstimator(AccuracyEstimator):
    """Zero-cost proxies on one seeded batch of the training split."""

    name = "proxy"
    Options = ProxyOptions
    needs_data = True
    unit = "score"
    summary = "zero-cost proxies of the untrained network on one training batch"

    def __init__(self, data: DataSplits | None = None, proxy: str = "jacov",
                 proxies: Sequence[str] = PROXY_NAMES, batch_size: int = 64, seed: int = 0,
                 resolution: Resolution = None):
        super().__init__()
        if proxy not in PROXY_NAMES:
            raise NasError(f"unknown proxy {proxy!r}; known: {', '.join(PROXY_NAMES)}")
        unknown = [p for p in proxies if p not in PROXY_NAMES]
        if unknown:
            raise NasError(f"unknown proxy {unknown[0]!r}; known: {', '.join(PROXY_NAMES)}")
        if batch_size < 2:
            raise NasError(f"proxy batch size must be at least 2 (jacov correlates inputs), "
                           f"got {batch_size}")
        self.data = data if data is not None else load_data()
        self.proxy = proxy
        self.proxies = tuple(dict.fromkeys([proxy, *proxies]))
        self.seed = seed
        self.resolution = resolution
        self.batch = self.data.sample_batch(min(batch_size, len(self.data.train)), seed)

    @classmethod
    def metrics(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        proxies = options["proxies"] if options["proxies"] is not None else PROXY_NAMES
        return tuple(dict.fromkeys(["acc", options["proxy"], *proxies]))

    @classmethod
    def from_config(cls, config: Mapping[str, Any], shared: Shared) -> ProxyEstimator:
        options = config["options"]
        proxies = options["proxies"] if options["proxies"] is not None else PROXY_NAMES
        return cls(shared["data"], options["proxy"], proxies=tuple(proxies),
                   batch_size=options["batch_size"], seed=config["seed"],
                   resolution=options["resolution"])

    @classmethod
    def create(cls, space: SearchSpace | str, *, data: DataSplits | None = None,
               proxy: str = "jacov", batch_size: int = 64, seed: int = 0,
               resolution: Resolution = None, **_: Any) -> ProxyEstimator:
        return cls(data, proxy, batch_size=batch_size, seed=seed, resolution=resolution)

    @property
    def label(self) -> str:
        return f"proxy:{self.proxy}"

    def estimate(self, arch: Arch) -> dict[str, float]:
        size = target_resolution(arch, self.data, self.resolution)
        model = build_for_data(arch, self.data, self.seed, size)
        inputs, labels = self.batch
        scores = score_proxies(model, resize_batch(inputs, size), labels, self.proxies)
        return {"acc": scores[self.proxy], **scores}


@dataclass(frozen=True)
class TrainOptions(EstimatorOptions):
    epochs: float = option(1.0, "passes over the train split (may be fractional)", "positive")
    batch_size: int = option(128, "training batch", "int1")
    lr: float = option(0.1, "peak learning rate", "positive")
    train_images: int | None = option(None, "cap on training images per epoch (default all)",
                                      "int1")
    eval_images: int | None = option(None, "cap on images scored (default the whole split)",
                                     "int1")
    resolution: Resolution = option(None, RESOLUTION_HELP, "resolution")

    def check(self) -> None:
        self.recipe()

    def recipe(self) -> TrainRecipe:
        return train_recipe(self.as_dict())


def train_recipe(options: Mapping[str, Any]) -> TrainRecipe:
    """The training recipe of a `train` estimator's options."""
    return TrainRecipe(epochs=options["epochs"], batch_size=options["batch_size"],
                       lr=options["lr"], train_images=options["train_images"],
                       eval_images=options["eval_images"])


class TrainEstimator(AccuracyEstimator):
    """Standalone training from scratch with one recipe and seed."""

    name = "train"
    Options = TrainOptions
    needs_data = True
    unit = "percent"
    summary = "short standalone training from scratch; top-1 % on the validation split"
    test_split = True

    def __init__(self, data: DataSplits | None = None, recipe: TrainRecipe = TrainRecipe(),
                 seed: int = 0, split: str = "val", resolution: Resolution = None,
                 progress: StepProgress | None = None):
        super().__init__()
        if split not in ("val", "test"):
            raise NasError(f"split must be 'val' or 'test' (final reports), got {split!r}")
        self.data = data if data is not None else load_data()
        self.recipe = recipe
        self.seed = seed
        self.split = split
        self.resolution = resolution
        self.progress = progress

    @classmethod
    def metrics(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        return ("acc", "train_loss", "train_steps")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], shared: Shared) -> TrainEstimator:
        options = config["options"]
        return cls(shared["data"], train_recipe(options), config["seed"], "val",
                   options["resolution"])

    @classmethod
    def create(cls, space: SearchSpace | str, *, data: DataSplits | None = None,
               recipe: TrainRecipe = TrainRecipe(), seed: int = 0, split: str = "val",
               resolution: Resolution = None, progress: StepProgress | None = None,
               **_: Any) -> TrainEstimator:
        return cls(data, recipe, seed, split, resolution, progress)

    @property
    def label(self) -> str:
        return "train" if self.split == "val" else "train:test"

    def estimate(self, arch: Arch) -> dict[str, float]:
        size = target_resolution(arch, self.data, self.resolution)
        model = build_for_data(arch, self.data, self.seed, size)
        result = train_model(model, self.data, self.recipe, self.seed, self.split, size,
                             self.progress)
        return {"acc": result.acc, "train_loss": result.train_loss,
                "train_steps": float(result.steps), "train_seconds": result.train_seconds}


TABLE_NEEDED = "estimator 'table' needs a CSV with an 'arch' column (--table PATH, e.g. nb201.csv)"


@dataclass(frozen=True)
class TableOptions(EstimatorOptions):
    table: str | None = option(None, "CSV with an 'arch' column (required)", "text")
    column: str | None = option(None, "column read as acc (default 'acc' or the only "
                                      "'acc...' column)", "text")

    def check(self) -> None:
        if not self.table:
            raise NasError(TABLE_NEEDED)


class TableEstimator(AccuracyEstimator):
    """Lookup of `acc` (and extra columns) in a CSV of measured architectures."""

    name = "table"
    Options = TableOptions
    needs_data = False
    unit = "percent"
    summary = "lookup in a CSV of measured architectures"
    space_bound = True

    def __init__(self, table: AccuracyTable | str | Path, space: SearchSpace | str | None = None,
                 column: str | None = None, extra: Sequence[str] = ()):
        super().__init__()
        if isinstance(table, AccuracyTable):
            self.table = table
        else:
            if space is None:
                raise NasError("a table estimator needs the space its arch column belongs to")
            resolved = get_space(space) if isinstance(space, str) else space
            self.table = AccuracyTable(table, resolved, column, extra=extra)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], shared: Shared) -> TableEstimator:
        options = config["options"]
        return cls(options["table"], config["space"], options["column"])

    @classmethod
    def create(cls, space: SearchSpace | str, *, table: str | Path | None = None,
               column: str | None = None, **_: Any) -> TableEstimator:
        if table is None:
            raise NasError(TABLE_NEEDED)
        return cls(table, space, column)

    @property
    def label(self) -> str:
        return f"table:{self.table.column}"

    def estimate(self, arch: Arch) -> dict[str, float]:
        return self.table.lookup(arch)


def make_estimator(name: str, space: SearchSpace | str, *, data: DataSplits | None = None,
                   table: str | Path | None = None, column: str | None = None,
                   proxy: str = "jacov", batch_size: int = 64,
                   recipe: TrainRecipe = TrainRecipe(), seed: int = 0, split: str = "val",
                   resolution: Resolution = None, progress: StepProgress | None = None,
                   cache_dir: str | Path | None = None) -> AccuracyEstimator:
    """An accuracy estimator by name (see `estimators.registry`; `supernet`: the cached
    supernet of the space trained on `data` with the default recipe, in `cache_dir`)."""
    from estimators.registry import get_estimator

    return get_estimator(name).create(
        space, data=data, table=table, column=column, proxy=proxy, batch_size=batch_size,
        recipe=recipe, seed=seed, split=split, resolution=resolution, progress=progress,
        cache_dir=cache_dir)


__all__ = ["AccuracyEstimator", "ESTIMATOR_KEY", "Metrics", "ProxyEstimator", "TableEstimator",
           "TrainEstimator", "build_for_data", "make_estimator", "target_resolution",
           "train_recipe"]
