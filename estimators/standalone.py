"""Standalone training of one architecture to a checkpoint (`nas train`): the default recipe,
a checkpoint after every epoch (`estimators.checkpoints`), resume after a kill with the same
final weights as an uninterrupted run, fine-tuning from a trained model, and knowledge
distillation from a trained teacher.

The steps are `estimators.train`'s (`train_epoch`, `make_optimizer`, `lr_at`,
`recalibrate_bn`, `evaluate`); this module adds what spans epochs. Resume is exact because
everything an epoch draws is restored: the data order and the augmentation are seeded per
(seed, epoch), and torch's generator (dropout) and the optimizer's momentum are saved in the
checkpoint.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from estimators.accuracy import build_for_data, target_resolution
from estimators.base import Resolution
from estimators.checkpoints import (
    INFO_SKIP,
    CheckpointFileError,
    arch_of,
    describe_space,
    load_model,
    load_weights,
    read_checkpoint,
    read_model_file,
    write_checkpoint,
)
from estimators.data import DataSplits
from estimators.progress import Log, StepProgress
from estimators.supernet.cache import data_fingerprint
from estimators.train import (
    DISTILL_TEMPERATURE,
    DISTILL_WEIGHT,
    Augment,
    Distill,
    TrainRecipe,
    check_distill,
    evaluate,
    lr_at,
    make_optimizer,
    plan_steps,
    recalibrate_bn,
    train_epoch,
)
from search_spaces import Arch, NasError

# The default recipe of `nas train` (docs/train.md): SGD, Nesterov momentum 0.9, lr 0.1 for
# batch 128, 5 % linear warm-up then cosine to zero, weight decay 5e-4 on weights, label
# smoothing 0.1, BatchNorm statistics re-estimated on 2,000 training images at the end.
TRAIN_DEFAULTS = TrainRecipe(epochs=10, label_smoothing=0.1)
NO_FLIP = ("digits",)  # a mirrored digit is another glyph (or none)


def default_augment(data_name: str) -> Augment:
    """Random crop (4 px of padding at 28 px, scaled) and, except on digits, horizontal flips."""
    return Augment(padding=4, flip=data_name not in NO_FLIP)


@dataclass(frozen=True)
class DistillSpec:
    """Distil from the trained model in file `teacher` (a `nas train` checkpoint or a
    `nas export` file) with this soft-target `weight` and `temperature`."""

    teacher: str
    weight: float = DISTILL_WEIGHT
    temperature: float = DISTILL_TEMPERATURE

    def __post_init__(self) -> None:
        check_distill(self.weight, self.temperature)


@dataclass
class TrainedModel:
    """What `train_to_checkpoint` and `resume_training` return."""

    model: nn.Module
    arch: Arch
    path: Path
    info: dict[str, Any]  # the checkpoint without its tensors (see `load_model`)
    seconds: float  # spent training in this call
    resumed_from: int  # epochs done before this call (0 for a fresh run)

    def summary(self) -> dict[str, Any]:
        info = self.info
        return {"space": info["space"]["name"], "key": self.arch.key,
                "params": sum(p.numel() for p in self.model.parameters()),
                "num_classes": info["num_classes"], "in_channels": info["in_channels"],
                "resolution": info["resolution"], "epochs": info["epochs"],
                "epochs_done": info["epochs_done"], "complete": info["complete"],
                "history": info["history"], "val_acc": info.get("val_acc"),
                "test_acc": info.get("test_acc"), "seconds": round(self.seconds, 3),
                "total_seconds": round(info.get("seconds", 0.0), 3),
                "resumed_from": self.resumed_from, "recipe": info["recipe"],
                "distill": info.get("distill"), "init": info.get("init"),
                "seed": info["seed"], "checkpoint": str(self.path)}


@dataclass
class _Run:
    """One training run's state between epochs."""

    arch: Arch
    model: nn.Module
    optimizer: torch.optim.Optimizer
    recipe: TrainRecipe
    augment: Augment | None
    distill: Distill | None
    seed: int
    size: int
    payload: dict[str, Any]  # what every checkpoint of the run repeats
    history: list[dict[str, Any]]
    done: int = 0
    seconds: float = 0.0  # training seconds of earlier calls


def check_output(out: str | Path, force: bool = False) -> Path:
    """`out` as a path a fresh run may write: refused when it holds anything (a checkpoint of
    a finished or interrupted run, or another file) unless `force`."""
    path = Path(out)
    if path.is_dir():
        raise NasError(f"--out {path} is a folder; give a file name such as model.pt")
    if not path.exists() or force:
        return path
    try:
        payload = read_checkpoint(path)
    except CheckpointFileError:
        raise NasError(f"{path} exists and is not a `nas train` checkpoint; --force "
                       f"overwrites it") from None
    if payload["complete"]:
        raise NasError(f"{path} already holds a finished training of {payload['key']}; "
                       f"--force trains again from scratch over it, --from {path} fine-tunes it "
                       f"into another file")
    raise NasError(f"{path} holds an interrupted training of {payload['key']} "
                   f"({payload['epochs_done']}/{payload['epochs']} epochs); --resume continues "
                   f"it, --force starts over")


def _epochs(recipe: TrainRecipe) -> int:
    if not float(recipe.epochs).is_integer() or recipe.epochs < 1:
        raise NasError(f"epochs must be a whole number >= 1 (a checkpoint after each), got "
                       f"{recipe.epochs:g}")
    return int(recipe.epochs)


def _teacher(spec: DistillSpec, data: DataSplits) -> tuple[Distill, dict[str, Any]]:
    path = Path(spec.teacher).expanduser().resolve()
    teacher, info = load_model(path)
    if not info["complete"]:
        raise NasError(f"teacher {path} is an interrupted training ({info['epochs_done']}/"
                       f"{info['epochs']} epochs); finish it with --resume first")
    if info["num_classes"] != data.num_classes or info["in_channels"] != data.in_channels:
        raise NasError(f"teacher {path} has {info['num_classes']} classes and "
                       f"{info['in_channels']} input channels; {data.name} has "
                       f"{data.num_classes} and {data.in_channels}")
    for param in teacher.parameters():
        param.requires_grad_(False)
    distill = Distill(teacher, spec.weight, spec.temperature, info["resolution"])
    return distill, {"teacher": str(path), "teacher_key": info["key"], "weight": spec.weight,
                     "temperature": spec.temperature, "teacher_test_acc": info.get("test_acc")}


def _data_record(data: DataSplits, data_args: dict[str, Any] | None) -> dict[str, Any]:
    return {"name": data.name, "source": data.source, "fingerprint": data_fingerprint(data),
            "summary": data.summary(), "args": dict(data_args or {})}


def train_to_checkpoint(out: str | Path, data: DataSplits, arch: Arch | None = None, *,
                        init: str | Path | None = None, recipe: TrainRecipe = TRAIN_DEFAULTS,
                        augment: Augment | str | None = "default",
                        distill: DistillSpec | None = None, seed: int = 0,
                        resolution: Resolution = None, force: bool = False,
                        data_args: dict[str, Any] | None = None,
                        progress: StepProgress | None = None,
                        log: Log | None = None) -> TrainedModel:
    """Train `arch` (or the model in file `init`, from its weights) on `data` with `recipe`
    (whole epochs), writing the checkpoint `out` after every epoch and, complete, at the end:
    BatchNorm recalibrated, val and test accuracy recorded. `augment` "default" is
    `default_augment(data.name)`, None none. `resolution` as `nas evaluate`'s (with `init`:
    default the model's own). `out` must not exist unless `force` (see `check_output`).
    `data_args` (how to load `data` again: name, dir, val_fraction) is kept for --resume."""
    epochs = _epochs(recipe)
    out = check_output(out, force)
    requested = resolution
    init_record = source = None
    if init is not None:
        init_path = Path(init).expanduser().resolve()
        source = read_model_file(init_path)
        from_arch = arch_of(source, init_path)
        if arch is not None and arch != from_arch:
            raise NasError(f"--from {init_path} holds {from_arch.key}, not {arch.key}; give one "
                           f"of them")
        arch = from_arch
        if (source["num_classes"], source["in_channels"]) != (data.num_classes,
                                                                data.in_channels):
            raise NasError(f"{init_path} was trained for {source['num_classes']} classes and "
                           f"{source['in_channels']} channels; {data.name} has "
                           f"{data.num_classes} and {data.in_channels}")
        if resolution is None:
            resolution = source["resolution"]
        init_record = {"from": str(init_path), "key": from_arch.key,
                       "test_acc": source.get("test_acc")}
    if resolution == "data":
        resolution = None
    if arch is None:
        raise NasError("nothing to train: give an architecture or a model file to start from")
    if augment == "default":
        augment = default_augment(data.name)
    if augment is not None and not isinstance(augment, Augment):
        raise NasError(f"augment must be an Augment, 'default' or None, got {augment!r}")
    size = target_resolution(arch, data, resolution)
    model = build_for_data(arch, data, seed, size)
    if source is not None:
        load_weights(model, source["state_dict"], init)
    teacher, distill_record = _teacher(distill, data) if distill is not None else (None, None)
    payload = {"space": describe_space(arch.search_space), "key": arch.key,
               "num_classes": data.num_classes, "in_channels": data.in_channels,
               "resolution": size, "resolution_request": requested, "epochs": epochs,
               "recipe": {"train": asdict(recipe),
                          "augment": None if augment is None else asdict(augment)},
               "distill": distill_record, "init": init_record, "seed": seed,
               "data": _data_record(data, data_args), "torch": str(torch.__version__),
               "threads": torch.get_num_threads()}
    run = _Run(arch, model, make_optimizer(model, recipe), recipe, augment, teacher, seed,
               size, payload, [])
    torch.manual_seed(seed)
    return _train(run, data, out, progress, log or (lambda _: None), 0)


def resume_training(out: str | Path, data: DataSplits, *, progress: StepProgress | None = None,
                    log: Log | None = None) -> TrainedModel:
    """Continue the run whose checkpoint is `out` from its last finished epoch, with the
    settings it was started with (`data` must be the same split: checked by fingerprint).
    The final weights are those of an uninterrupted run (same thread count). A finished run
    is returned as it is."""
    say = log or (lambda _: None)
    path = Path(out)
    if not path.exists():
        raise NasError(f"--resume: no checkpoint at {path} to continue; start without --resume")
    saved = read_checkpoint(path)
    arch = arch_of(saved, path)
    if saved["complete"]:
        model, _ = load_model(path)
        say(f"{path} is already complete ({saved['epochs']} epochs): nothing to resume")
        return TrainedModel(model, arch, path, _info(saved), 0.0, saved["epochs"])
    if saved["data"].get("fingerprint") != data_fingerprint(data):
        raise NasError(f"the data differ from those {path} was trained on "
                       f"({saved['data'].get('name')}); resume with the same data set, "
                       f"--val-fraction and --seed")
    try:
        recipe = TrainRecipe(**saved["recipe"]["train"])
        augment = saved["recipe"]["augment"]
        augment = None if augment is None else Augment(**augment)
    except (KeyError, TypeError) as exc:
        raise CheckpointFileError(f"{path} is damaged: its recipe does not parse "
                                  f"({_detail(exc)})") from None
    teacher = None
    if saved.get("distill"):
        record = saved["distill"]
        teacher, now = _teacher(DistillSpec(record["teacher"], record["weight"],
                                            record["temperature"]), data)
        if now["teacher_key"] != record["teacher_key"]:
            raise NasError(f"the teacher {record['teacher']} now holds {now['teacher_key']}, "
                           f"not {record['teacher_key']} as when this run started")
    model = build_for_data(arch, data, saved["seed"], saved["resolution"])
    load_weights(model, saved["state_dict"], path)
    optimizer = make_optimizer(model, recipe)
    load_weights(optimizer, saved.get("optimizer"), path, "optimizer state")
    payload = {k: v for k, v in saved.items()
               if k not in (*INFO_SKIP, "format", "version", "history", "epochs_done",
                            "complete", "seconds")}
    run = _Run(arch, model, optimizer, recipe, augment, teacher, saved["seed"],
               saved["resolution"], payload, list(saved["history"]), saved["epochs_done"],
               float(saved.get("seconds", 0.0)))
    try:
        torch.set_rng_state(saved["rng"])
    except (KeyError, TypeError, RuntimeError, ValueError):
        raise CheckpointFileError(f"{path} is damaged: its random generator state is "
                                  f"missing or invalid") from None
    say(f"resuming {path} after epoch {run.done}/{saved['epochs']}")
    return _train(run, data, path, progress, say, run.done)


def _detail(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__


def _info(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in INFO_SKIP}


def _checkpoint(run: _Run, out: Path, complete: bool, seconds: float,
                **final: Any) -> dict[str, Any]:
    payload = {**run.payload, "state_dict": {k: v.detach().clone()
                                             for k, v in run.model.state_dict().items()},
               "optimizer": run.optimizer.state_dict(), "rng": torch.get_rng_state(),
               "epochs_done": run.done, "complete": complete, "history": run.history,
               "seconds": run.seconds + seconds, **final}
    write_checkpoint(out, payload)
    return payload


def _train(run: _Run, data: DataSplits, out: Path, progress: StepProgress | None, say: Log,
           resumed_from: int) -> TrainedModel:
    recipe, model = run.recipe, run.model
    epochs = run.payload["epochs"]
    _, steps_per_epoch, total = plan_steps(data, recipe)
    step = run.done * steps_per_epoch
    start = time.perf_counter()
    model.train()
    for epoch in range(run.done, epochs):
        begin = time.perf_counter()
        step, images, losses = train_epoch(
            model, run.optimizer, data, recipe, seed=run.seed, epoch=epoch, step=step,
            total_steps=total, resolution=run.size, progress=progress, augment=run.augment,
            distill=run.distill)
        val = evaluate(model, data, "val", recipe.eval_batch_size, recipe.eval_images,
                       run.size)
        model.train()
        run.history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                            "val_acc": val, "lr": lr_at(step - 1, total, recipe),
                            "steps": step, "images": images,
                            "seconds": time.perf_counter() - begin})
        run.done = epoch + 1
        _checkpoint(run, out, False, time.perf_counter() - start)
        say(f"epoch {epoch + 1}/{epochs}: loss {run.history[-1]['loss']:.4f}, val "
            f"{val:.2f} %, {run.history[-1]['seconds']:.1f}s, checkpoint {out}")
    recalibrate_bn(model, data, recipe.bn_images, seed=run.seed, resolution=run.size)
    val = evaluate(model, data, "val", recipe.eval_batch_size, recipe.eval_images, run.size)
    test = evaluate(model, data, "test", recipe.eval_batch_size, recipe.eval_images, run.size)
    seconds = time.perf_counter() - start
    norms = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    payload = _checkpoint(run, out, True, seconds, val_acc=val, test_acc=test,
                          bn_recalibrated=min(recipe.bn_images, len(data.train)) if norms else 0)
    say(f"done: val {val:.2f} %, test {test:.2f} %, checkpoint {out}")
    return TrainedModel(model.eval(), run.arch, out, _info(payload), seconds, resumed_from)


__all__ = ["DISTILL_TEMPERATURE", "DISTILL_WEIGHT", "TRAIN_DEFAULTS", "DistillSpec",
           "TrainedModel", "check_output", "default_augment", "resume_training",
           "train_to_checkpoint"]
