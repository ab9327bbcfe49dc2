"""Readers that turn one data set's on-disk form into `RawData` arrays: Fashion-MNIST IDX
files (gzip-compressed or not), scikit-learn's bundled `digits`, CIFAR-10 python batches (through
an unpickler that admits numpy arrays only) and an image-folder layout.

Each reader takes a directory (None where the data set has a default or needs none) and
returns uint8 (N, C, H, W) images with int64 labels; splitting and normalising happen in
`estimators.data`. Nothing is downloaded.
"""
from __future__ import annotations

import gzip
import math
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search_spaces import NasError, first_line

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal",
                         "shirt", "sneaker", "bag", "ankle boot")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm")


class DataError(NasError):
    """A data set that cannot be found or read."""


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


# --- Fashion-MNIST (IDX) ----------------------------------------------------------------------
IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def _idx_path(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz", directory / stem.replace(
            "-idx", ".idx"), directory / f"{stem.replace('-idx', '.idx')}.gz"):
        if candidate.is_file():
            return candidate
    return None


def has_idx(directory: Path) -> bool:
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
