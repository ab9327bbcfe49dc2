"""Where trained supernets live, and how they are named and written.

A trained supernet is cached under `<cache>/supernets/` (the user cache folder: `--cache-dir`,
else `$NAS_CACHE_DIR`, else `~/.cache/nas`), one file per key: the space (its name, every
dimension's options and the blocks of its largest network), the data (a fingerprint of the
split it trains on) and the recipe. The same file is the per-epoch checkpoint: it is rewritten
atomically after each epoch, and loads with `torch.load(..., weights_only=True)`.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from estimators.data import DataSplits
from estimators.files import atomic_path
from estimators.latency.cache import cache_dir
from search_spaces import NasError, SearchSpace, first_line

FORMAT = 1  # bump when the checkpoint layout or the weight-sharing scheme changes
SUBDIR = "supernets"
CHECKPOINT_FILE = "supernet.pt"  # its name inside a Ray Train checkpoint folder


class CheckpointError(NasError):
    """A checkpoint that cannot be read or belongs to something else."""


class SupernetCacheWarning(UserWarning):
    """A cached supernet was damaged and is being trained again (one line; `nas supernet
    train` prints it as `warning: ...`)."""


def space_signature(space: SearchSpace, num_classes: int, in_channels: int) -> dict[str, Any]:
    """What fixes a space's supernet: dimensions, options and its largest network's blocks."""
    blocks = space.blocks(space.max_arch(), num_classes, in_channels)
    return {"name": space.name,
            "dimensions": [[d.name, [str(o) for o in d.options]] for d in space.dimensions],
            "blocks": [f"{b.name}:{b.signature}" for b in blocks]}


def data_fingerprint(data: DataSplits) -> dict[str, Any]:
    """Name, sizes and a hash of the labels and a strided sample of the training images: two
    loads of the same files with the same split give the same fingerprint, wherever they lie."""
    digest = hashlib.sha256()
    for part in (data.train.labels, data.val.labels):
        digest.update(part.numpy().tobytes())
    images = data.train.images
    step = max(1, len(images) // 512)
    digest.update(images[::step].contiguous().numpy().tobytes())
    return {"name": data.name, "train": len(data.train), "val": len(data.val),
            "shape": [data.in_channels, data.resolution, data.resolution],
            "classes": data.num_classes, "sha256": digest.hexdigest()[:16]}


def cache_key(space: Mapping[str, Any], data: Mapping[str, Any], recipe: str) -> str:
    text = json.dumps({"format": FORMAT, "space": space, "data": data, "recipe": recipe},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoint_path(space_name: str, data_name: str, key: str,
                    directory: str | os.PathLike[str] | None = None) -> Path:
    folder = cache_dir(directory) / SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in space_name)
    return folder / f"{safe}-{data_name}-{key}.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically (a temporary file in the same folder, then
    os.replace): a killed run leaves the previous epoch's checkpoint whole."""
    with atomic_path(path) as temp:
        torch.save(payload, temp)


def load_checkpoint(path: Path, key: str | None = None) -> dict[str, Any]:
    """A checkpoint's payload (weights only: no code runs); `key` checks it is the one asked."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no supernet checkpoint at {path}") from None
    except Exception as exc:  # an empty, truncated or foreign file: pickle, zip, torch errors
        raise CheckpointError(f"cannot read supernet checkpoint {path}: "
                              f"{type(exc).__name__}: {first_line(exc, 200)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a supernet checkpoint of format {FORMAT}")
    if key is not None and payload.get("key") != key:
        raise CheckpointError(f"{path} holds supernet {payload.get('key')}, not {key}")
    epochs, history = payload.get("epochs_done"), payload.get("history")
    if not isinstance(payload.get("supernet"), dict) or not isinstance(history, list) \
            or isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise CheckpointError(f"{path} is a damaged supernet checkpoint (its weights, "
                              f"epochs_done or history are missing or of the wrong type)")
    return payload


def load_weights(target: Any, state: Any, path: Path, what: str = "weights") -> None:
    """`target.load_state_dict(state)` (a module or an optimizer) with a one-line
    CheckpointError when the checkpoint's tensors do not fit (another space or shape):
    torch's own message spans one line per key."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointError(f"the {what} in {path} do not fit this supernet (another space "
                              f"or shape): {detail}") from None
