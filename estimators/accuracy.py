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

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from estimators.data import DataSplits, load_data
from estimators.proxies import PROXY_NAMES, score_proxies
from estimators.table import AccuracyTable
from estimators.train import Progress, TrainRecipe, resize_batch, train_model
from search_spaces import Arch, NasError, SearchSpace, first_line, get_space

ESTIMATOR_KEY = "acc_estimator"  # the metric that says which estimator produced `acc`
ESTIMATORS = ("proxy", "train", "table", "supernet")
Resolution = int | str | None  # None: the data's; "arch": the architecture's own; or pixels
Metrics = dict[str, float | str]


class AccuracyEstimator(ABC):
    """Base: caching by key and the `acc_estimator` label."""

    name: str

    def __init__(self) -> None:
        self._cache: dict[str, Metrics] = {}

    @property
    def label(self) -> str:
        """What goes under `acc_estimator`, e.g. `proxy:jacov`."""
        return self.name

    def __call__(self, arch: Arch) -> Metrics:
        key = arch.key
        if key not in self._cache:
            self._cache[key] = {**self.estimate(arch), ESTIMATOR_KEY: self.label}
        return dict(self._cache[key])

    @abstractmethod
    def estimate(self, arch: Arch) -> dict[str, float]:
        """The metrics of one arch, uncached."""


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


class ProxyEstimator(AccuracyEstimator):
    """Zero-cost proxies on one seeded batch of the training split."""

    name = "proxy"

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

    @property
    def label(self) -> str:
        return f"proxy:{self.proxy}"

    def estimate(self, arch: Arch) -> dict[str, float]:
        size = target_resolution(arch, self.data, self.resolution)
        model = build_for_data(arch, self.data, self.seed, size)
        inputs, labels = self.batch
        scores = score_proxies(model, resize_batch(inputs, size), labels, self.proxies)
        return {"acc": scores[self.proxy], **scores}


class TrainEstimator(AccuracyEstimator):
    """Standalone training from scratch with one recipe and seed."""

    name = "train"

    def __init__(self, data: DataSplits | None = None, recipe: TrainRecipe = TrainRecipe(),
                 seed: int = 0, split: str = "val", resolution: Resolution = None,
                 progress: Progress | None = None):
        super().__init__()
        if split not in ("val", "test"):
            raise NasError(f"split must be 'val' or 'test' (final reports), got {split!r}")
        self.data = data if data is not None else load_data()
        self.recipe = recipe
        self.seed = seed
        self.split = split
        self.resolution = resolution
        self.progress = progress

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


class TableEstimator(AccuracyEstimator):
    """Lookup of `acc` (and extra columns) in a CSV of measured architectures."""

    name = "table"

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

    @property
    def label(self) -> str:
        return f"table:{self.table.column}"

    def estimate(self, arch: Arch) -> dict[str, float]:
        return self.table.lookup(arch)


def make_estimator(name: str, space: SearchSpace | str, *, data: DataSplits | None = None,
                   table: str | Path | None = None, column: str | None = None,
                   proxy: str = "jacov", batch_size: int = 64,
                   recipe: TrainRecipe = TrainRecipe(), seed: int = 0, split: str = "val",
                   resolution: Resolution = None, progress: Progress | None = None,
                   cache_dir: str | Path | None = None) -> AccuracyEstimator:
    """An accuracy estimator by name (`proxy`, `train`, `table`, `supernet`: the cached
    supernet of the space trained on `data` with the default recipe, in `cache_dir`)."""
    if name == "proxy":
        return ProxyEstimator(data, proxy, batch_size=batch_size, seed=seed,
                              resolution=resolution)
    if name == "train":
        return TrainEstimator(data, recipe, seed, split, resolution, progress)
    if name == "table":
        if table is None:
            raise NasError("estimator 'table' needs a CSV with an 'arch' column (--table PATH, "
                           "e.g. nb201.csv)")
        return TableEstimator(table, space, column)
    if name == "supernet":
        try:
            from estimators.supernet_estimator import SupernetEstimator
        except ImportError:
            raise NasError("estimator 'supernet' needs a trained supernet: this build has no "
                           "supernet module; use proxy, train or table") from None
        return SupernetEstimator.for_space(space, data if data is not None else load_data(),
                                           train=False, cache_dir=cache_dir, split=split,
                                           seed=seed)
    raise NasError(f"unknown estimator {name!r}; known: {', '.join(ESTIMATORS)}")


__all__ = ["AccuracyEstimator", "ESTIMATORS", "ESTIMATOR_KEY", "ProxyEstimator",
           "TableEstimator", "TrainEstimator", "build_for_data", "make_estimator",
           "target_resolution"]
