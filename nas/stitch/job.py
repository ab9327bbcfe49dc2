"""`nas stitch` as a job: anchors in, a run folder out.

The run folder is a search's, so `nas report` reads it: config.json, checkpoint.json,
trials.csv (one row per stitch, the anchors' own rows included: val `acc`, `test_acc`,
`flops`, `params`, `latency_ms` with a device, `acc_init` before joint training, the stitch's
`front`/`back` anchors and `cut`/`resume` blocks, and `above_line`), anchors.csv (the anchors as
given, scored on the same splits), pareto.csv/md/png and summary.json, plus `stitched.pt` (the
trained family: `nas.stitch.load_stitched`) and `joint.pt` while it runs (`nas.stitch.progress`:
`--resume` continues a killed run at its last whole epoch of joint training).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from estimators.checkpoints import load_model, load_weights
from estimators.data import DataSplits, load_data
from estimators.standalone import default_augment
from estimators.supernet.cache import data_fingerprint
from estimators.threads import torch_threads
from estimators.train import DEFAULT_WEIGHT_DECAY, Distill, TrainRecipe
from nas.checkpoint import CHECKPOINT_FORMAT, Checkpoint, write_json
from nas.evaluation import evaluation_config
from nas.objectives import Objective
from nas.pareto import hypervolume_box, normalised_hypervolume, pareto_rows
from nas.report import summarise
from nas.results import read_json
from nas.run_lock import run_lock, writing
from nas.stitch.anchors import Anchor, load_anchors
from nas.stitch.cuts import plan_stitches
from nas.stitch.network import StitchedNetwork, build_stitched, save_stitched
from nas.stitch.progress import PROGRESS_FILE, JointState, Progress, load_progress, save_progress
from nas.stitch.settings import StitchError, StitchSettings
from nas.stitch.training import (
    StitchSampler,
    calibrate_bn,
    freeze,
    init_least_squares,
    score,
    time_stitches,
    train_joint,
)

COMMAND = "nas stitch"
OBJECTIVES = (Objective("acc", "maximize"), Objective("flops", "minimize"))
Log = Callable[[str], None] | None


def run_stitch(settings: StitchSettings, run_dir: str | Path, log: Log = None,
               resume: bool = False) -> dict[str, Any]:
    """Stitch, train and score the family of `settings.anchors` into `run_dir` (new or empty;
    with `resume`, the folder of a killed run with the same settings, continued where it
    stopped); returns {run_dir, stitches, anchors, best, summary, stitched}."""
    say = log or (lambda text: sys.stderr.write(text + "\n"))
    run_dir = Path(run_dir)
    with writing(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)

    def check_folder() -> None:
        if resume:
            _check_resumable(run_dir, settings)
        elif (run_dir / "config.json").exists():
            raise StitchError(f"{run_dir} already holds a run; continue it with --resume "
                              f"{run_dir}, or choose another --out")

    with run_lock(run_dir, check_folder), torch_threads(settings.threads):
        saved = Checkpoint(run_dir).load() if resume else None
        if saved is not None and saved.get("finished"):
            say(f"{run_dir} is already complete: nothing to resume")
            return _result(run_dir, saved["trials"], saved["anchors"],
                           read_json(run_dir / "summary.json"))
        return _run(settings, run_dir, say, load_progress(run_dir) if resume else None)


def _check_resumable(run_dir: Path, settings: StitchSettings) -> None:
    if not (run_dir / "config.json").is_file():
        raise StitchError(f"--resume {run_dir}: no `{COMMAND}` run there (no config.json)")
    differ = settings.changes_to_run(run_dir, COMMAND, StitchError)
    if differ:
        raise StitchError(f"--resume {run_dir}: only {', '.join(StitchSettings.RESUMABLE)} may "
                          f"change ({'; '.join(differ)})")


def _run(s: StitchSettings, run_dir: Path, say: Log, progress: Progress | None
         ) -> dict[str, Any]:
    began = time.perf_counter()
    if s.device == "cuda" and not torch.cuda.is_available():
        raise StitchError("--device cuda: this machine has no CUDA device; time on cpu")
    anchors = load_anchors(s.anchors)
    data, data_args = _data(s, anchors)
    plan = plan_stitches(anchors, s.two_way)
    network = build_stitched(anchors, plan, s.seed)
    config = _config(s, anchors, data, data_args, network)
    if not (run_dir / "config.json").exists():
        write_json(run_dir, run_dir / "config.json", config)
    for i, a in enumerate(anchors):
        say(f"A{i}: {a.arch.key} ({a.flops / 1e6:.4g}M flops, {a.path})")
    say(f"{len(plan)} stitches: {len(anchors)} anchors and {len(plan) - len(anchors)} "
        f"stitched ({'two-way' if s.two_way else 'small -> large'})")
    earlier = 0.0  # wall seconds of the killed run this one continues
    if progress is None:
        progress = _initialise(s, network, anchors, data, say)
        progress.seconds = time.perf_counter() - began
        save_progress(run_dir, network, progress)
    else:
        earlier = progress.seconds
        load_weights(network, progress.state_dict, run_dir / PROGRESS_FILE)
        say(f"resumed after {progress.joint.epochs_done} epochs of joint training")
    trained: dict[str, float] = {"steps": 0, "train_seconds": 0.0}
    if s.epochs > 0:
        sampler = StitchSampler([c["flops"] for c in network.costs], s.sampling, s.buckets,
                                s.seed)
        recipe = TrainRecipe(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr,
                             label_smoothing=0.1, train_images=s.train_images, bn_images=0,
                             optimizer=s.optimizer,
                             weight_decay=DEFAULT_WEIGHT_DECAY[s.optimizer])

        def keep(joint: JointState) -> None:
            progress.joint = joint
            progress.seconds = earlier + time.perf_counter() - began
            save_progress(run_dir, network, progress)

        trained = train_joint(network, data, recipe, sampler, s.seed,
                              default_augment(data.name), _teacher(s, anchors), say,
                              progress.joint, keep)
        calibrate_bn(network, data, s.bn_images, s.seed)
    final = score(network, data, ("val", "test"), s.eval_images)
    latency = time_stitches(network, data.in_channels, s.device) if s.device else None
    rows = _rows(network, final, progress.initial, latency)
    anchor_rows = [{"name": f"A{i}", "key": a.arch.key, **progress.originals[i],
                    **{k: network.costs[i][k] for k in ("flops", "flops_sparse", "params")}}
                   for i, a in enumerate(anchors)]
    save_stitched(network, anchors, run_dir / "stitched.pt",
                  {"rows": rows, "settings": s.to_json()})
    figures = _figures(rows, config, progress.residuals, trained)
    elapsed = earlier + time.perf_counter() - began
    Checkpoint(run_dir).save(figures, rows, anchor_rows, 1, elapsed, finished=True)
    with writing(run_dir):
        summary = summarise(run_dir, config, rows, anchor_rows,
                            {**figures, "seconds": round(elapsed, 3),
                             "kept": [*figures, "seconds"]})  # what `nas report` keeps
    (run_dir / PROGRESS_FILE).unlink(missing_ok=True)  # stitched.pt holds the weights now
    say(f"done in {elapsed:.0f}s: {figures['above_line']} of {figures['stitched']} stitches on "
        f"or above the anchors' line; hypervolume {summary['hypervolume']:.4f} (anchors alone "
        f"{figures['anchors_hypervolume']:.4f})")
    return _result(run_dir, rows, anchor_rows, summary)


def _initialise(s: StitchSettings, network: StitchedNetwork, anchors: list[Anchor],
                data: DataSplits, say: Log) -> Progress:
    """Score the anchors as given, fit the stitching layers, measure each stitch's BatchNorm
    statistics and score every stitch before joint training."""
    originals = score(network, data, ("val", "test"), s.eval_images,
                      indices=list(range(len(anchors))))
    residuals = {}
    if s.init == "lstsq":
        residuals = init_least_squares(network, anchors, data, s.init_images, s.seed)
        say(f"least squares on {s.init_images} images: median relative residual "
            f"{_median(list(residuals.values())):.3f}")
    calibrate_bn(network, data, s.bn_images, s.seed)
    initial = score(network, data, ("val",), s.eval_images)
    say(f"before joint training: median stitch val {_median([r['acc'] for r in initial]):.2f} %")
    return Progress({}, originals, initial, residuals, JointState(), 0.0)


def _result(run_dir: Path, rows: list[dict[str, Any]], anchor_rows: list[dict[str, Any]],
            summary: dict[str, Any]) -> dict[str, Any]:
    best = max(rows, key=lambda r: (r["acc"], -r["flops"]))
    return {"run_dir": str(run_dir), "stitches": len(rows), "anchors": anchor_rows,
            "best": best, "summary": summary, "stitched": str(run_dir / "stitched.pt")}


def _data(s: StitchSettings, anchors: list[Anchor]) -> tuple[DataSplits, dict[str, Any]]:
    """The data set (default: the one the first anchor was trained on) and how it was loaded,
    checked against the anchors' classes and channels; a one-line warning where an anchor was
    trained on other data or another split (its validation images may then be training images
    here)."""
    import warnings

    recorded = (anchors[0].info.get("data") or {}).get("args") or {}
    name = s.data or recorded.get("name") or "fashion-mnist"
    directory = s.data_dir if s.data_dir is not None else recorded.get("dir")
    fraction = s.val_fraction if s.val_fraction is not None else \
        recorded.get("val_fraction", 1 / 6)
    data = load_data(name, directory, val_fraction=fraction, seed=s.seed)
    first = anchors[0].info
    if (first["num_classes"], first["in_channels"]) != (data.num_classes, data.in_channels):
        raise StitchError(f"the anchors have {first['num_classes']} classes and "
                          f"{first['in_channels']} input channels; {data.name} has "
                          f"{data.num_classes} and {data.in_channels}")
    fingerprint = data_fingerprint(data)
    for i, anchor in enumerate(anchors):
        theirs = (anchor.info.get("data") or {}).get("fingerprint")
        if theirs is not None and theirs != fingerprint:
            warnings.warn(f"anchor A{i} ({anchor.path}) was trained on other data or another "
                          f"validation split than --data {data.name} --seed {s.seed}: its "
                          f"validation scores may include images it was trained on",
                          StitchWarning, stacklevel=2)
    return data, {"name": data.name, "dir": directory, "val_fraction": fraction,
                  "split_seed": s.seed}


class StitchWarning(UserWarning):
    """Anchors trained on other data than the stitches are scored on."""


def _teacher(s: StitchSettings, anchors: list[Anchor]) -> Distill | None:
    """The largest anchor as given (a frozen copy), when distilling."""
    if not s.distill:
        return None
    model, info = load_model(anchors[-1].path)
    return Distill(freeze(model), resolution=int(info["resolution"]))


def _config(s: StitchSettings, anchors: list[Anchor], data: DataSplits,
            data_args: dict[str, Any], network: StitchedNetwork) -> dict[str, Any]:
    space = anchors[0].arch.space
    evaluation = evaluation_config(space, "train", {}, data_args, None, s.seed, s.threads)
    return {"format": CHECKPOINT_FORMAT, "settings": s.to_json(), "space": space,
            "strategy": f"stitch-{s.sampling}", "strategy_options": {}, "seed": s.seed,
            "objectives": [o.to_json() for o in OBJECTIVES], "constraints": [],
            "evaluation": evaluation, "inherit": True,
            "largest": {k: max(c[k] for c in network.costs) for k in ("flops", "params")},
            "data": {"name": data.name, "classes": data.num_classes,
                     "channels": data.in_channels, "resolution": data.resolution},
            "anchors": [str(a.path) for a in anchors], "command": COMMAND,
            "created": datetime.now().isoformat(timespec="seconds")}


def _rows(network: StitchedNetwork, final: list[dict[str, float]],
          initial: list[dict[str, float]], latency: list[float] | None) -> list[dict[str, Any]]:
    rows = []
    for i, stitch in enumerate(network.plan):
        row = {"trial": i, "batch": 0, "key": network.names[i], **final[i],
               **network.costs[i], "acc_init": initial[i]["acc"], "front": stitch.front,
               "back": stitch.back, "cut": stitch.cut, "resume": stitch.resume,
               "within_budget": True}
        if latency is not None:
            row["latency_ms"] = latency[i]
        rows.append(row)
    anchors = sorted((r for r in rows if r["cut"] is None), key=lambda r: r["flops"])
    for row in rows:
        row["above_line"] = None if row["cut"] is None else \
            float(row["acc"] >= anchors_line(anchors, row["flops"]))
    return rows


def anchors_line(anchors: list[dict[str, Any]], flops: float) -> float:
    """The anchors' accuracy at `flops` on the straight lines between neighbouring anchors
    (flat beyond the cheapest and the dearest); `anchors` sorted by FLOPs, each with `flops`
    and `acc`."""
    if flops <= anchors[0]["flops"]:
        return anchors[0]["acc"]
    for low, high in zip(anchors, anchors[1:]):
        if flops <= high["flops"]:
            share = (flops - low["flops"]) / ((high["flops"] - low["flops"]) or 1.0)
            return low["acc"] + share * (high["acc"] - low["acc"])
    return anchors[-1]["acc"]


def _figures(rows: list[dict[str, Any]], config: dict[str, Any],
             residuals: dict[int, float], trained: dict[str, float]) -> dict[str, Any]:
    """What the run measured beyond the front: the share of stitches on or above the anchors'
    line, the front's hypervolume against the anchors' alone (one box), the gain of
    least-squares initialisation and joint training."""
    objectives = list(OBJECTIVES)
    box = hypervolume_box(rows, objectives, [], "train", config["largest"])
    anchor_rows = [r for r in rows if r["cut"] is None]
    stitched = [r for r in rows if r["cut"] is not None]
    return {
        "stitched": len(stitched), "above_line": int(sum(r["above_line"] for r in stitched)),
        "above_line_share": sum(r["above_line"] for r in stitched) / max(1, len(stitched)),
        "anchors_hypervolume": normalised_hypervolume(
            pareto_rows(anchor_rows, objectives, []), objectives, box),
        "family_hypervolume": normalised_hypervolume(
            pareto_rows(rows, objectives, []), objectives, box),
        "median_acc_init": _median([r["acc_init"] for r in stitched]),
        "median_acc": _median([r["acc"] for r in stitched]),
        "lstsq_median_residual": _median(list(residuals.values())) if residuals else None,
        "train_steps": int(trained["steps"]),
        "train_seconds": round(float(trained["train_seconds"]), 3)}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


__all__ = ["COMMAND", "StitchWarning", "run_stitch"]
