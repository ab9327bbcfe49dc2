"""Export a found architecture: `nas export RUN [--rank K] --out model.pt`, `load("model.pt")`.

The file is a plain dict (tensors, strings, numbers: it loads with `weights_only=True`) holding
the arch key, the space, the classes and channels it was built for, and the weights: extracted
from the trained supernet for `supernet` runs, trained standalone with `epochs > 0`, a `nas
grow` child's own fine-tuned weights (`trained`), else the seeded initialisation (`weights`
says which). `load` rebuilds the `nn.Module` from the key and
loads the weights; `--onnx` also writes an ONNX graph when the `onnx` package is installed.
"""
from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from estimators.files import atomic_write_bytes
from nas.run_folder import Run, load_run
from nas.run_lock import check_output_file, writing
from search_spaces import Arch, NasError, first_line, get_space

EXPORT_FORMAT = 1


class ExportError(NasError):
    """A run, rank or file that cannot be exported or loaded."""


def pick(run: Run, rank: int) -> dict[str, Any]:
    """The front row of rank `rank` (1 = best on the first objective)."""
    front = run.front()
    if not front:
        raise ExportError(f"run {run.path} has no usable trial within its budget to export")
    if not 1 <= rank <= len(front):
        raise ExportError(f"--rank must be in 1..{len(front)} (the front of {run.path.name} has "
                          f"{len(front)} rows), got {rank}")
    return front[rank - 1]


def export(run_ref: str | Path, out: str | Path, rank: int = 1, epochs: float = 0.0,
           onnx: bool = False, results_root: str | Path = "results",
           log: Callable[[str], None] | None = None,
           warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the model of front row `rank` of a run to `out`; returns what was written.
    The front is the one `pareto.csv` and `nas report` show, computed from the run's
    checkpoint (`warn` gets a line when a file of the run disagrees with it)."""
    if onnx and importlib.util.find_spec("onnx") is None:
        raise ExportError("--onnx needs the onnx package: pip install onnx onnxscript")
    if not math.isfinite(epochs) or epochs < 0:
        raise ExportError(f"--epochs must be 0 (no training) or more, got {epochs}")
    out = check_output_file(out, "--out")  # before any loading or training
    if onnx:
        check_output_file(out.with_suffix(".onnx"), "--onnx")
    run = load_run(run_ref, results_root, warn=warn)
    if run.config.get("command") == "nas stitch":  # its rows are stitches, not architectures
        raise ExportError(f"{run.path} is a `nas stitch` run: its stitches are one network, "
                          f"{run.path / 'stitched.pt'} (nas.stitch.load_stitched, set_stitch)")
    row = pick(run, rank)
    _check_listed(run, rank, row, warn)
    evaluation = run.config["evaluation"]
    child = _child_model(run, row)  # (loading it registers a space file's space)
    space = get_space(evaluation["space"])
    arch = space.decode(str(row["key"]).partition(":")[2])
    seed = int(evaluation["seed"])
    data_info = run.config.get("data") or {}
    classes = data_info.get("classes") or space.default_classes
    channels = data_info.get("channels") or space.default_channels
    resolution = data_info.get("resolution") or space.input_size(arch)
    info: dict[str, Any] = {}
    from nas.evaluation import torch_threads

    if epochs > 0:
        with torch_threads(int(evaluation["threads"])):
            model, info = _train(arch, evaluation, seed, epochs, log)
        weights = "standalone"
    elif child is not None:
        model, weights = child, "trained"
    elif evaluation["estimator"] == "supernet":
        from nas.evaluation import prepare, supernet_subnet

        with torch_threads(int(evaluation["threads"])):
            model = supernet_subnet(evaluation, prepare(evaluation), arch)
        weights = "supernet"
    else:
        torch.manual_seed(seed)
        model = space.build(arch, num_classes=classes, in_channels=channels)
        weights = "init"
    metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "rank"}
    payload = {"format": EXPORT_FORMAT, "key": arch.key, "space": evaluation["space"],
               "num_classes": int(classes), "in_channels": int(channels),
               "resolution": int(resolution), "weights": weights, "rank": int(rank),
               "run": str(run.path), "metrics": {k: float(v) for k, v in metrics.items()},
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               **{f"standalone_{k}": float(v) for k, v in info.items()}}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with writing(out):
        atomic_write_bytes(out, buffer.getvalue())
    written = {"out": str(out), "key": arch.key, "rank": rank, "weights": weights,
               "num_classes": int(classes), "in_channels": int(channels),
               "resolution": int(resolution), **{f"standalone_{k}": v for k, v in info.items()}}
    if onnx:
        with writing(out.with_suffix(".onnx")):
            written["onnx"] = str(_onnx(model, out.with_suffix(".onnx"), channels, resolution))
    return written


def _child_model(run: Run, row: dict[str, Any]) -> nn.Module | None:
    """The fine-tuned weights `nas grow` keeps for every child, if the run has them."""
    path = run.path / "children" / f"{row['trial']}.pt"
    if not path.is_file():
        return None
    from estimators.checkpoints import load_model

    model, child = load_model(path)
    if child["key"] != row["key"]:
        raise ExportError(f"{path} holds {child['key']}, not trial {row['trial']}'s "
                          f"{row['key']}")
    return model


def _check_listed(run: Run, rank: int, row: dict[str, Any],
                  warn: Callable[[str], None] | None) -> None:
    """Say so when the run's pareto.csv (e.g. written before its trials were repaired) lists
    another architecture at `rank` than the front exported from."""
    from nas.results import ResultsError, read_csv

    path = run.path / "pareto.csv"
    try:
        listed = {r.get("rank"): r.get("key") for r in read_csv(path)} if path.is_file() else {}
    except ResultsError:
        listed = {}
    if listed and listed.get(rank) != row["key"]:
        text = (f"{path} lists {listed.get(rank) or 'nothing'} at rank {rank}, but the run's "
                f"trials (checkpoint.json) put {row['key']} there: exporting {row['key']}; "
                f"`nas report {run.path}` rewrites pareto.csv")
        if warn is None:
            import warnings

            warnings.warn(text, stacklevel=3)
        else:
            warn(text)


def _train(arch: Arch, evaluation: dict[str, Any], seed: int, epochs: float,
           log: Callable[[str], None] | None) -> tuple[nn.Module, dict[str, float]]:
    """Standalone training with the run's data (the `train` estimator's recipe)."""
    from estimators.accuracy import build_for_data, target_resolution
    from estimators.train import TrainRecipe, train_model
    from nas.evaluation import load_config_data

    data = load_config_data(evaluation)
    size = target_resolution(arch, data, evaluation["options"].get("resolution"))
    model = build_for_data(arch, data, seed, size)
    if log:
        log(f"training {arch.key} for {epochs:g} epochs on {data.name}")
    result = train_model(model, data, TrainRecipe(epochs=epochs), seed, "val", size)
    return model, {"val_acc": result.acc, "train_seconds": result.train_seconds}


def _onnx(model: nn.Module, path: Path, channels: int, resolution: int) -> Path:
    example = torch.zeros(1, channels, resolution, resolution)
    try:
        torch.onnx.export(model.eval(), (example,), str(path), input_names=["input"],
                          output_names=["logits"], dynamo=False)
    except Exception as exc:  # exporter errors are long; the first line says what failed
        raise ExportError(f"ONNX export failed: {first_line(exc, 200)}") from None
    return path


def load(path: str | Path) -> nn.Module:
    """The `nn.Module` saved by `nas export`, in eval mode, with `arch_key` set."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ExportError(f"{path} does not exist") from None
    except Exception as exc:
        raise ExportError(f"cannot read {path} as an exported model: "
                          f"{first_line(exc, 160)}") from None
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path} is not a model written by `nas export`")
    fields = {"space": str, "key": str, "num_classes": int, "in_channels": int,
              "resolution": int, "state_dict": dict}
    wrong = [name for name, kind in fields.items() if not isinstance(payload.get(name), kind)]
    if wrong:
        raise ExportError(f"{path} is damaged: {', '.join(wrong)} missing or of the wrong type")
    space = get_space(payload["space"])
    arch = space.decode(payload["key"].partition(":")[2])
    model = space.build(arch, num_classes=payload["num_classes"],
                        in_channels=payload["in_channels"])
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"the weights in {path} do not fit {arch.key}: "
                          f"{' '.join(str(exc).split())[:200]}") from None
    model.input_shape = (payload["in_channels"], payload["resolution"], payload["resolution"])
    return model.eval()
