"""Image classification data for accuracy estimators: Fashion-MNIST IDX files, scikit-learn's
bundled `digits` (the fallback), CIFAR-10 python batches and an image-folder layout.

Every data set becomes `DataSplits`: uint8 images (N, C, H, W) for `train`, `val` and `test`.
The validation split is carved from the training set (stratified, seeded); the test set is
the data set's own (or, where it has none, a fixed stratified carve that no seed moves) and is
meant for final reports only. Nothing is downloaded.
"""
from __future__ import annotations

import gzip
import math
import pickle
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from search_spaces import NasError, first_line

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal",
                         "shirt", "sneaker", "bag", "ankle boot")
DATASETS = ("fashion-mnist", "digits", "cifar10", "folder")
ALIASES = {"fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "cifar-10": "cifar10",
           "image-folder": "folder"}
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm")
# Seed of the test carve for sets without their own test split: fixed, so that no choice of
# the validation seed ever lets test images into training.
TEST_CARVE_SEED = 20240601
TEST_FRACTION = 0.2


class DataError(NasError):
    """A data set that cannot be found or read."""


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
        directory = str(FASHION_MNIST_DIR) if _has_idx(FASHION_MNIST_DIR) else None
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


# --- raw data and splitting -------------------------------------------------------------------
@dataclass(frozen=True)
class RawData:
    """What a reader returns: uint8 (N, C, H, W) arrays; `test_*` None where there is none."""

    name: str
    source: str
    classes: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None


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


# --- Fashion-MNIST (IDX) ----------------------------------------------------------------------
IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def _idx_path(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz", directory / stem.replace(
            "-idx", ".idx"), directory / f"{stem.replace('-idx', '.idx')}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _has_idx(directory: Path) -> bool:
    return directory.is_dir() and all(_idx_path(directory, s) for s in IDX_FILES.values())


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip-compressed or not) as a numpy array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as exc:  # missing, truncated or corrupt gzip
        raise DataError(f"cannot read IDX file {path}: {first_line(exc)}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + math.prod(shape):
        raise DataError(f"{path}: size does not match its IDX header {shape} (truncated?)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_fashion_mnist(directory: Path | None) -> RawData:
    directory = directory or FASHION_MNIST_DIR
    paths = {k: _idx_path(directory, stem) for k, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DataError(f"Fashion-MNIST IDX files not found in {directory} (missing "
                        f"{', '.join(missing)}, with or without .gz); install them with "
                        f"`apt-get install dataset-fashion-mnist` or pass --data-dir")
    arrays = {k: read_idx(p) for k, p in paths.items() if p is not None}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{directory}: {split} images {images.shape} and labels "
                            f"{labels.shape} do not match")
    return RawData("fashion-mnist", str(directory), FASHION_MNIST_CLASSES,
                   arrays["train_images"][:, None], arrays["train_labels"],
                   arrays["test_images"][:, None], arrays["test_labels"])


# --- scikit-learn digits ----------------------------------------------------------------------
def read_digits(directory: Path | None = None) -> RawData:
    """scikit-learn's bundled 8x8 digits (values 0..16, rescaled to 0..255); no test split of
    its own, so one is carved."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    return RawData("digits", "sklearn.datasets.load_digits", tuple(str(c) for c in range(10)),
                   images, bunch.target.astype(np.int64))


# --- CIFAR-10 python batches ------------------------------------------------------------------
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a batch file cannot run code."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray",
                                                             "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_batch(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="bytes").load()
        if not isinstance(batch, dict):
            raise DataError(f"{path} is not a CIFAR-10 python batch (expected a dict)")
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    except DataError:
        raise
    except Exception as exc:  # a damaged pickle raises almost anything (Overflow, Memory...)
        raise DataError(f"cannot read CIFAR-10 batch {path}: {type(exc).__name__}: "
                        f"{first_line(exc)}") from None


def read_cifar10(directory: Path | None) -> RawData:
    if directory is None:
        raise DataError("cifar10 needs --data-dir: the folder holding data_batch_1..5 and "
                        "test_batch (cifar-10-batches-py)")
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    train_paths = sorted(directory.glob("data_batch_*"))
    test_path = directory / "test_batch"
    if not train_paths or not test_path.is_file():
        raise DataError(f"CIFAR-10 python batches not found in {directory} (expected "
                        f"data_batch_1..5 and test_batch)")

    def arrays(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for path in paths:
            batch = _read_batch(path)
            if "data" not in batch or "labels" not in batch:
                raise DataError(f"{path}: a CIFAR-10 batch needs 'data' and 'labels'")
            data = np.asarray(batch["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise DataError(f"{path}: 'data' must be N x 3072 bytes, got {data.shape}")
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch["labels"], dtype=np.int64))
        return np.concatenate(images), np.concatenate(labels)

    train_images, train_labels = arrays(train_paths)
    test_images, test_labels = arrays([test_path])
    classes: tuple[str, ...] = tuple(str(c) for c in range(10))
    meta = directory / "batches.meta"
    if meta.is_file():
        names = _read_batch(meta).get("label_names")
        if names:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return RawData("cifar10", str(directory), classes, train_images, train_labels,
                   test_images, test_labels)


# --- image folder -----------------------------------------------------------------------------
def read_image_folder(directory: Path | None) -> RawData:
    """`DIR/train/<class>/*.png` (+ optional `DIR/test/<class>/...`), or `DIR/<class>/*.png`
    with the test split carved. Grayscale when every image is, else RGB; all images must
    share one size or are resized to the largest (`resolution` resizes all of them)."""
    if directory is None or not directory.is_dir():
        raise DataError(f"image folder {directory} does not exist; expected DIR/<class>/*.png "
                        f"or DIR/train/<class>/*.png")
    train_root = directory / "train" if (directory / "train").is_dir() else directory
    test_root = directory / "test" if (directory / "test").is_dir() else None
    classes = tuple(sorted(p.name for p in train_root.iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise DataError(f"{train_root} needs one subfolder per class (at least 2), found "
                        f"{len(classes)}")
    train_files = _class_files(train_root, classes)
    test_files = _class_files(test_root, classes) if test_root is not None else []
    pictures = _open_images([f for f, _ in train_files + test_files])
    gray = all(p.mode in ("1", "L", "I", "I;16", "F") for p in pictures)
    mode = "L" if gray else "RGB"
    sizes = {p.size for p in pictures}
    if len(sizes) > 1:
        target = max(sizes)
        pictures = [p if p.size == target else p.resize(target) for p in pictures]
    arrays = [np.asarray(p.convert(mode), dtype=np.uint8) for p in pictures]
    stacked = np.stack(arrays)
    stacked = stacked[:, None] if gray else stacked.transpose(0, 3, 1, 2)
    labels = np.asarray([c for _, c in train_files + test_files], dtype=np.int64)
    n = len(train_files)
    if test_files:
        return RawData("folder", str(directory), classes, stacked[:n], labels[:n],
                       stacked[n:], labels[n:])
    return RawData("folder", str(directory), classes, stacked, labels)


def _class_files(root: Path, classes: tuple[str, ...]) -> list[tuple[Path, int]]:
    files = []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            raise DataError(f"{root} has no folder for class {cls!r} (classes come from "
                            f"the training folder: {', '.join(classes)})")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files.extend((p, label) for p in found)
    return files


def _open_images(paths: list[Path]) -> list:
    from PIL import Image, UnidentifiedImageError

    pictures = []
    for path in paths:
        try:
            with Image.open(path) as picture:
                picture.load()
                pictures.append(picture)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"cannot read image {path}: {first_line(exc)}") from None
        except Exception as exc:  # decoders raise more (ValueError, SyntaxError, bombs)
            raise DataError(f"cannot read image {path}: {type(exc).__name__}: "
                            f"{first_line(exc)}") from None
    return pictures


_READERS = {"fashion-mnist": read_fashion_mnist, "digits": read_digits, "cifar10": read_cifar10,
            "folder": read_image_folder}
