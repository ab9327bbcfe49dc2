"""The model checkpoint of `nas train`: one file per trained network, rewritten atomically after
every epoch, that loads with `torch.load(path, weights_only=True)` (plain dicts, lists,
numbers, strings and tensors: no code runs) and back into a ready `nn.Module` with
`load_model(path)`.

It names its space by name and, for a space from a YAML/JSON file, by its family's full
settings too, so that the network is rebuilt where the space file is absent; a space written
in Python has no such description and must be registered (`register_space`) before loading.
The fields are listed in docs/train.md.
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from estimators.files import atomic_write_bytes
from search_spaces import Arch, NasError, SearchSpace, first_line
from search_spaces.registry import space_from_spec, space_spec

FORMAT = "nas.train"
VERSION = 1
EXPORT_FORMAT = 1  # `nas export` files: accepted where a trained model is read (--from)
# field -> type every checkpoint has (more are optional: see docs/train.md)
FIELDS: dict[str, type | tuple[type, ...]] = {
    "space": dict, "key": str, "num_classes": int, "in_channels": int, "resolution": int,
    "state_dict": dict, "epochs_done": int, "epochs": int, "complete": bool, "history": list,
    "recipe": dict, "data": dict, "seed": int}


class CheckpointFileError(NasError):
    """A model file that cannot be read, is of another kind, or does not fit its network."""


def describe_space(space: SearchSpace) -> dict[str, Any]:
    """{"name", "spec"}: the space by name and, where a family makes it, its full settings
    (`spec` None for a space written in Python: it must be registered to load)."""
    return {"name": space.name, "spec": space_spec(space)}


def write_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> None:
    """`payload` (with the format tag added) written atomically: a run killed mid-write
    leaves the previous file whole."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _read(path: Path, what: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointFileError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise CheckpointFileError(f"{what} {path} is a folder, not a file") from None
    except Exception as exc:  # empty, truncated or foreign: pickle, zip and torch errors
        raise CheckpointFileError(f"cannot read {what} {path}: {_why(exc)}") from None


def _why(exc: Exception) -> str:
    """torch.load's failure in one short line (its weights-only message spans a page)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        detail = " ".join(text.split("WeightsUnpickler error:", 1)[1].split())
        detail = detail.split(". ")[0].split(" Check the documentation")[0]
        return (f"not a torch file of tensors and plain data ({detail[:120]}); files that "
                f"would run code are refused")
    if isinstance(exc, EOFError):
        return "the file is empty or truncated"
    return f"{type(exc).__name__}: {first_line(exc, 160)}"


def _check_fields(payload: Mapping[str, Any], fields: Mapping[str, Any], path: Path) -> None:
    wrong = [name for name, kind in fields.items()
             if not isinstance(payload.get(name), kind)
             or (kind is int and isinstance(payload.get(name), bool))]
    if wrong:
        raise CheckpointFileError(f"{path} is damaged: {', '.join(wrong)} missing or of the "
                                  f"wrong type")


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """The payload of a `nas train` checkpoint, its fields checked (one-line errors)."""
    path = Path(path)
    payload = _read(path, what)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        other = " nor a model written by `nas export`" if what == "model file" else ""
        raise CheckpointFileError(f"{path} is not a checkpoint written by `nas train`{other}")
    if payload.get("version") != VERSION:
        raise CheckpointFileError(f"{path} is a `nas train` checkpoint of version "
                                  f"{payload.get('version')!r}; this version reads {VERSION}")
    _check_fields(payload, FIELDS, path)
    if not isinstance(payload["space"].get("name"), str):
        raise CheckpointFileError(f"{path} is damaged: its space has no name")
    if not 0 <= payload["epochs_done"] <= payload["epochs"]:
        raise CheckpointFileError(f"{path} is damaged: epochs_done {payload['epochs_done']} "
                                  f"is outside 0..{payload['epochs']}")
    return payload


def read_model_file(path: str | Path) -> dict[str, Any]:
    """A trained model's description and weights from a `nas train` checkpoint or a
    `nas export` file: {"space": {"name", "spec"}, "key", "num_classes", "in_channels",
    "resolution", "state_dict", ...} (the export's fields under the same names)."""
    path = Path(path)
    payload = _read(path, "model file")
    if isinstance(payload, dict) and payload.get("format") == EXPORT_FORMAT \
            and "state_dict" in payload:  # (a cached supernet has format 1 too, no state_dict)
        _check_fields(payload, {"space": str, "key": str, "num_classes": int,
                                "in_channels": int, "resolution": int, "state_dict": dict},
                      path)
        return {**payload, "space": {"name": payload["space"], "spec": None},
                "complete": True}
    return read_checkpoint(path, "model file")


def arch_of(payload: Mapping[str, Any], path: str | Path) -> Arch:
    """The architecture a checkpoint holds, its space rebuilt and registered if needed."""
    space_name = payload["space"]["name"]
    try:
        space = space_from_spec(space_name, payload["space"].get("spec"))
        arch = space.decode(payload["key"].partition(":")[2])
    except NasError as exc:
        raise CheckpointFileError(f"{path}: {exc}") from None
    if arch.key != payload["key"]:
        raise CheckpointFileError(f"{path}: its key {payload['key']} is not the canonical key "
                                  f"of an architecture of space {space_name}")
    return arch


def load_weights(target: Any, state: Any, path: str | Path, what: str = "weights") -> None:
    """`target.load_state_dict(state)` (a module or an optimizer) with a one-line error when
    the file's tensors do not fit (torch's own message spans one line per key)."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointFileError(f"the {what} in {path} do not fit the network: "
                                  f"{detail}") from None


def build_model(payload: Mapping[str, Any], path: str | Path) -> tuple[nn.Module, Arch]:
    """The network of a checkpoint (or export) payload with its weights loaded."""
    arch = arch_of(payload, path)
    model = arch.search_space.build(arch, num_classes=payload["num_classes"],
                                    in_channels=payload["in_channels"])
    load_weights(model, payload["state_dict"], path)
    size = payload["resolution"]
    model.input_shape = (payload["in_channels"], size, size)
    return model, arch


INFO_SKIP = ("state_dict", "optimizer", "rng")


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model, info): the network a `nas train` checkpoint (or a `nas export` file) holds, in
    eval mode with its weights, `arch_key` and `input_shape` (channels, resolution trained at,
    same) set; `info` is the file's description without the tensors (key, space, num_classes,
    in_channels, resolution, epochs_done, epochs, complete, history, val_acc, test_acc,
    recipe, data, ...). A checkpoint of an interrupted run loads too (`info["complete"]`
    says it is not finished)."""
    payload = read_model_file(path)
    model, _ = build_model(payload, path)
    info = {k: v for k, v in payload.items() if k not in INFO_SKIP}
    return model.eval(), info


__all__ = ["FORMAT", "VERSION", "CheckpointFileError", "arch_of", "build_model",
           "describe_space", "load_model", "load_weights", "read_checkpoint", "read_model_file",
           "write_checkpoint"]
