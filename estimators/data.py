"""Image classification data for accuracy estimators: the data-set registry (Fashion-MNIST IDX
files, scikit-learn's bundled `digits` as the fallback, CIFAR-10 python batches and an
image-folder layout, read by `estimators.data_readers`), the splits and the batch loaders.

Every data set becomes `DataSplits`: uint8 images (N, C, H, W) for `train`, `val` and `test`.
The validation split is carved from the training set (stratified, seeded); the test set is
the data set's own (or, where it has none, a fixed stratified carve that no seed moves) and is
meant for final reports only. Nothing is downloaded.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from estimators.data_readers import (
    FASHION_MNIST_DIR,
    DataError,
    RawData,
    has_idx,
    read_cifar10,
    read_digits,
    read_fashion_mnist,
    read_image_folder,
)

DATASETS = ("fashion-mnist", "digits", "cifar10", "folder")
ALIASES = {"fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "cifar-10": "cifar10",
           "image-folder": "folder"}
SPLITS = ("train", "val", "test")
# Seed of the test carve for sets without their own test split: fixed, so that no choice of
# the validation seed ever lets test images into training.
TEST_CARVE_SEED = 20240601
TEST_FRACTION = 0.2


class DataFallbackWarning(UserWarning):
    """The requested default data set is absent and scikit-learn's digits is used instead."""


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 (N, C, H, W) and labels as int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DataSplits:
    """A data set split into train / val (from the training set) / test, with its
    normalisation (per-channel mean and std of the train split)."""

    name: str
    source: str
    classes: tuple[str, ...]
    train: ImageSet
    val: ImageSet
    test: ImageSet
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.train.images.shape[2])

    def split(self, name: str) -> ImageSet:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; known: {', '.join(SPLITS)}")
        return getattr(self, name)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32, scaled to [0, 1] then standardised per channel."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (images.float().div_(255.0) - mean) / std

    def batches(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0,
                limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised (inputs, labels) batches of one split; `limit` caps the images used.
        With `shuffle`, the order is a permutation drawn from `seed`."""
        data = self.split(split)
        count = len(data) if limit is None else min(limit, len(data))
        if shuffle:
            order = torch.from_numpy(np.random.default_rng(seed).permutation(len(data))[:count])
        else:
            order = torch.arange(count)
        for start in range(0, count, batch_size):
            idx = order[start:start + batch_size]
            yield self.normalize(data.images[idx]), data.labels[idx]

    def sample_batch(self, size: int, seed: int = 0,
                     split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """One batch of `size` images drawn without replacement from `split` by `seed`."""
        return next(self.batches(split, size, shuffle=True, seed=seed, limit=size))

    def summary(self) -> dict[str, object]:
        return {"name": self.name, "source": self.source, "classes": self.num_classes,
                "shape": [self.in_channels, self.resolution, self.resolution],
                "train": len(self.train), "val": len(self.val), "test": len(self.test)}


# --- public entry point -----------------------------------------------------------------------
def load_data(name: str = "fashion-mnist", data_dir: str | Path | None = None, *,
              val_fraction: float = 1 / 6, seed: int = 0,
              resolution: int | None = None) -> DataSplits:
    """A data set by name: `fashion-mnist` (IDX files in `data_dir`, else the Debian location
    /usr/share/datasets/fashion-mnist, else scikit-learn's digits with a warning), `digits`,
    `cifar10` (python batches in `data_dir`) or `folder` (an image folder at `data_dir`).
    `resolution` resizes every image to that many pixels per side. Cached per arguments."""
    canonical = ALIASES.get(name.lower(), name.lower())
    if canonical not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    if resolution is not None and resolution < 1:
        raise DataError(f"resolution must be a positive number of pixels, got {resolution}")
    directory = None if data_dir is None else str(Path(data_dir).expanduser().resolve())
    if canonical == "fashion-mnist" and directory is None:
        directory = str(FASHION_MNIST_DIR) if has_idx(FASHION_MNIST_DIR) else None
    if canonical == "fashion-mnist" and directory is None:
        warnings.warn(
            f"Fashion-MNIST not found in {FASHION_MNIST_DIR}; using scikit-learn's digits "
            f"(1,797 8x8 images) instead. For the better data set: `apt-get install "
            f"dataset-fashion-mnist`, or pass --data-dir DIR holding its IDX files",
            DataFallbackWarning, stacklevel=2)
        canonical = "digits"
    return _load_cached(canonical, directory, float(val_fraction), int(seed), resolution)


@lru_cache(maxsize=4)
def _load_cached(name: str, directory: str | None, val_fraction: float, seed: int,
                 resolution: int | None) -> DataSplits:
    raw = _READERS[name](None if directory is None else Path(directory))
    return make_splits(raw, val_fraction=val_fraction, seed=seed, resolution=resolution)


# --- splitting --------------------------------------------------------------------------------
def stratified_split(labels: np.ndarray, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held_out) indices: `fraction` of each class held out, chosen by `seed`."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        count = int(round(len(members) * fraction))
        held.append(rng.permutation(members)[:count])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept, held_out


def make_splits(raw: RawData, val_fraction: float = 1 / 6, seed: int = 0,
                resolution: int | None = None) -> DataSplits:
    """Train/val/test from raw arrays (see the module docstring for the rules)."""
    images, labels = raw.train_images, raw.train_labels.astype(np.int64)
    if raw.test_images is None or raw.test_labels is None:
        kept, held = stratified_split(labels, TEST_FRACTION, TEST_CARVE_SEED)
        test_images, test_labels = images[held], labels[held]
        images, labels = images[kept], labels[kept]
    else:
        test_images, test_labels = raw.test_images, raw.test_labels.astype(np.int64)
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DataError(f"{raw.name}: {len(labels)} training images are too few for a "
                        f"validation fraction of {val_fraction:.3g}")
    sets = [(images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx]),
            (test_images, test_labels)]
    # np.array copies: IDX arrays are read-only views of the file's bytes.
    tensors = [ImageSet(_resize(torch.from_numpy(np.array(x)), resolution),
                        torch.from_numpy(np.array(y))) for x, y in sets]
    train = tensors[0].images
    channels = train.shape[1]
    per_channel = train.permute(1, 0, 2, 3).reshape(channels, -1).double().div(255.0)
    mean = tuple(float(v) for v in per_channel.mean(dim=1))
    std = tuple(max(float(v), 1e-3) for v in per_channel.std(dim=1))
    return DataSplits(raw.name, raw.source, raw.classes, *tensors, mean=mean, std=std)


def _resize(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    if resolution is None or images.shape[-1] == images.shape[-2] == resolution:
        return images
    chunks = []
    for start in range(0, images.shape[0], 4096):  # bounded float memory
        part = images[start:start + 4096].float()
        part = F.interpolate(part, size=(resolution, resolution), mode="bilinear",
                             align_corners=False, antialias=resolution < images.shape[-1])
        chunks.append(part.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(chunks) if chunks else images.new_zeros((0, images.shape[1], resolution,
                                                                resolution))


_READERS = {"fashion-mnist": read_fashion_mnist, "digits": read_digits, "cifar10": read_cifar10,
            "folder": read_image_folder}
