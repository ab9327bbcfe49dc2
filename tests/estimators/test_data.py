"""Data loaders: IDX (gz or not), digits fallback, CIFAR-10 batches, image folders, splits."""
from __future__ import annotations

import gzip
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from estimators import data as data_mod
from estimators.data import DataFallbackWarning, load_data, make_splits, stratified_split
from estimators.data_readers import DataError, RawData, read_idx


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def fake_fashion_mnist(root: Path, n_train: int = 120, n_test: int = 40,
                       compress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    labels = np.arange(n_train) % 10
    write_idx(root / "train-images-idx3-ubyte", train, compress)
    write_idx(root / "train-labels-idx1-ubyte", labels, compress)
    write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), compress)
    write_idx(root / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10, compress)
    return train, labels


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_gz_or_plain(tmp_path, compress):
    train, labels = fake_fashion_mnist(tmp_path, compress=compress)
    data = load_data("fashion-mnist", tmp_path, val_fraction=0.25, seed=3)
    assert (len(data.train), len(data.val), len(data.test)) == (90, 30, 40)
    assert data.train.images.shape[1:] == (1, 28, 28) and data.train.images.dtype == torch.uint8
    assert data.num_classes == 10 and data.in_channels == 1 and data.resolution == 28
    # stratified: 3 of each class's 12 images held out
    assert torch.bincount(data.val.labels).tolist() == [3] * 10
    # every training image is in exactly one of train / val
    joined = torch.cat([data.train.images, data.val.images]).reshape(120, -1).numpy()
    assert sorted(map(bytes, joined)) == sorted(map(bytes, train.reshape(120, -1)))


def test_split_is_seeded_and_test_set_fixed(tmp_path):
    fake_fashion_mnist(tmp_path)
    a = load_data("fashion-mnist", tmp_path, seed=1)
    b = load_data("fmnist", tmp_path, seed=1)
    c = load_data("fashion-mnist", tmp_path, seed=2)
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)
    assert torch.equal(a.test.images, c.test.images)


def test_stratified_split_disjoint_and_complete():
    labels = np.repeat(np.arange(5), 20)
    kept, held = stratified_split(labels, 0.3, seed=0)
    assert len(set(kept) & set(held)) == 0 and len(kept) + len(held) == 100
    assert np.bincount(labels[held]).tolist() == [6] * 5


def test_bad_idx_files_are_reported(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="truncated"):
        read_idx(short)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as info:
        load_data("fashion-mnist", tmp_path / "empty")
    assert "\n" not in str(info.value)


def test_unknown_name_and_bad_settings():
    with pytest.raises(DataError, match="known: fashion-mnist, digits, cifar10, folder"):
        load_data("imagenet")
    with pytest.raises(DataError, match="between 0 and 1"):
        load_data("digits", val_fraction=1.5)


def test_fallback_to_digits_warns_how_to_get_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "FASHION_MNIST_DIR", tmp_path / "missing")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_data()
    assert data.name == "digits"
    messages = [str(w.message) for w in caught if issubclass(w.category, DataFallbackWarning)]
    assert len(messages) == 1 and "apt-get install dataset-fashion-mnist" in messages[0]
    assert "\n" not in messages[0]


def test_default_location_used_when_present(tmp_path, monkeypatch):
    fake_fashion_mnist(tmp_path, compress=False)
    monkeypatch.setattr(data_mod, "FASHION_MNIST_DIR", tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_data("fashion-mnist", val_fraction=0.5)
    assert data.name == "fashion-mnist" and len(data.test) == 40


def test_digits_carves_a_fixed_test_set():
    a, b = load_data("digits", seed=0), load_data("digits", seed=5)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.val.images, b.val.images)
    assert a.train.images.max() == 255 and a.resolution == 8


def test_batches_are_normalised_and_seeded():
    data = load_data("digits")
    inputs = torch.cat([x for x, _ in data.batches("train", 256)])
    assert inputs.shape == (len(data.train), 1, 8, 8)
    assert abs(float(inputs.mean())) < 1e-3 and abs(float(inputs.std()) - 1) < 0.01
    x1, y1 = data.sample_batch(16, seed=4)
    x2, y2 = data.sample_batch(16, seed=4)
    x3, _ = data.sample_batch(16, seed=5)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    with pytest.raises(DataError, match="known: train, val, test"):
        next(data.batches("holdout", 4))


def test_resolution_resizes_every_split():
    data = load_data("digits", resolution=16)
    assert {s.images.shape[-1] for s in (data.train, data.val, data.test)} == {16}


def test_make_splits_rejects_too_few_images():
    raw = RawData("tiny", "memory", ("a", "b"), np.zeros((2, 1, 4, 4), np.uint8),
                  np.array([0, 1]))
    with pytest.raises(DataError, match="too few"):
        make_splits(raw, val_fraction=0.1)


def _cifar_batch(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": [int(v) for v in np.arange(n) % 10], b"batch_label": b"x"}
    path.write_bytes(pickle.dumps(batch))


def test_cifar10_python_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in (1, 2):
        _cifar_batch(root / f"data_batch_{i}", 50, i)
    _cifar_batch(root / "test_batch", 20, 9)
    names = [n.encode() for n in ("plane", "car", "bird", "cat", "deer", "dog", "frog",
                                  "horse", "ship", "truck")]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    data = load_data("cifar10", tmp_path, val_fraction=0.2)
    assert data.train.images.shape[1:] == (3, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 20)
    assert data.classes[0] == "plane" and len(data.mean) == 3


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    _cifar_batch(tmp_path / "data_batch_1", 10, 0)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}))
    with pytest.raises(DataError, match="refusing to load"):
        load_data("cifar10", tmp_path)
    with pytest.raises(DataError, match="needs --data-dir"):
        load_data("cifar10")


def _png(path: Path, value: int, mode: str, size: int = 12) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, (size, size), color).save(path)


def test_image_folder_with_train_and_test(tmp_path):
    for split, count in (("train", 6), ("test", 2)):
        for label, cls in enumerate(("cat", "dog")):
            for i in range(count):
                _png(tmp_path / split / cls / f"{i}.png", 40 + 100 * label, "RGB")
    data = load_data("folder", tmp_path, val_fraction=0.5)
    assert data.classes == ("cat", "dog") and data.in_channels == 3
    assert (len(data.train), len(data.val), len(data.test)) == (6, 6, 4)
    dog = data.train.images[data.train.labels == 1][0]
    assert dog[:, 0, 0].tolist() == [140, 115, 7]


def test_image_folder_grayscale_flat_layout_resized(tmp_path):
    for label, cls in enumerate(("a", "b", "c")):
        for i in range(10):
            _png(tmp_path / cls / f"{i}.png", 10 * label, "L", size=10 + i % 2)
    data = load_data("folder", tmp_path)
    assert data.in_channels == 1 and data.resolution == 11
    assert len(data.train) + len(data.val) + len(data.test) == 30


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data("folder", tmp_path / "nope")
    (tmp_path / "only").mkdir()
    with pytest.raises(DataError, match="one subfolder per class"):
        load_data("folder", tmp_path)
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_data("folder", tmp_path)


def test_real_fashion_mnist(shared_data):
    data = load_data("fashion-mnist", shared_data / "fashion-mnist")
    assert (len(data.train), len(data.val), len(data.test)) == (50_000, 10_000, 10_000)
    assert data.train.images.shape[1:] == (1, 28, 28)
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10
    assert torch.bincount(data.val.labels).tolist() == [1000] * 10
    assert 0.27 < data.mean[0] < 0.30 and 0.33 < data.std[0] < 0.37  # the set's known stats


@pytest.mark.parametrize("junk", [
    b"\x80\x05\x95" + b"\xff" * 8 + b"\x8a\xff\xff\xff\xff",  # OverflowError before
    b"\x80\x04\x8a\x80" + b"\x01" * 12,
    b"", b"hello\n", b"\x80\x04K\x01.",
])
def test_damaged_cifar_batches_are_one_line_data_errors(tmp_path, junk):
    from estimators.data_readers import _read_batch

    path = tmp_path / "data_batch_1"
    path.write_bytes(junk)
    with pytest.raises(DataError) as info:
        _read_batch(path)
    assert "\n" not in str(info.value)


def test_corrupt_gzip_idx_is_a_data_error(tmp_path):
    import gzip

    good = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3]) + b"abc")
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(good[:10] + b"\xff" + good[11:])  # zlib.error (invalid block type)
    with pytest.raises(DataError, match="cannot read IDX"):
        read_idx(path)
