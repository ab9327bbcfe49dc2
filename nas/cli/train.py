"""`nas train`: standalone training of one architecture to a checkpoint (a checkpoint per
epoch, --resume after a kill, --from a trained model, --distill from a teacher); the library
part is `estimators.standalone` and `estimators.checkpoints`."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from estimators.train import OPTIMIZERS
from nas.cli.common import (
    CommandAdder,
    emit,
    non_negative_int,
    number_in,
    positive_int,
    resolution,
    seed,
    threads,
)
from search_spaces import NasError, get_space

RECIPE_HELP = """default recipe (docs/train.md):
  optimizer      SGD, Nesterov momentum 0.9, weight decay 5e-4 (weights only, not
                 BatchNorm or biases); --optimizer adamw: AdamW, weight decay 0.05
  learning rate  0.1 for batch 128 (AdamW: 1e-3): linear warm-up over the first 5 % of
                 the steps, then cosine decay to 0
  loss           cross-entropy with label smoothing 0.1 (with --distill: 0.1 of it plus
                 0.9 x T^2 x KL of the teacher's and the student's logits at T = 4)
  augmentation   random crop with 4 px of zero padding at 28 px (scaled: 5 at 32, 1 at
                 8) and horizontal flips (not on digits), seeded; --no-augment: none
  epochs         10 over the whole train split (--train-images caps the images per epoch);
                 a checkpoint after each; then BatchNorm statistics re-estimated on 2,000
                 training images, and val and test accuracy
--out exists: a finished run is refused (--force retrains over it; --from fine-tunes it into
another file), an interrupted one too (--resume continues it; --force starts over)."""


_fraction = number_in(0, 1, "a number in [0, 1)")
_number = number_in(-math.inf, math.inf, "a finite number", low_open=True)
_non_negative = number_in(0, math.inf, "a finite number >= 0")
_positive = number_in(0, math.inf, "a positive finite number", low_open=True)


def _resolution(text: str) -> int | str | None:
    """`nas evaluate`'s --resolution, with 'data' kept as given (with --from, the default is
    the model's own resolution, not the data's)."""
    return "data" if text == "data" else resolution(text)


def _data_is_none(value: Any) -> Any:
    return None if value == "data" else value


def _recipe(args: argparse.Namespace, base: Any):
    """The recipe: `base` with the options given on the command line."""
    from dataclasses import replace

    from estimators.train import DEFAULT_LR, DEFAULT_WEIGHT_DECAY

    changes = {name: getattr(args, name) for name in
               ("epochs", "batch_size", "lr", "train_images", "label_smoothing", "bn_images",
                "optimizer", "weight_decay", "clip_norm") if getattr(args, name) is not None}
    optimizer = changes.get("optimizer", base.optimizer)
    if optimizer != base.optimizer:  # another optimizer: its own defaults unless given
        changes.setdefault("lr", DEFAULT_LR[optimizer])
        changes.setdefault("weight_decay", DEFAULT_WEIGHT_DECAY[optimizer])
    return replace(base, **changes)


def _augment(args: argparse.Namespace, data_name: str):
    from estimators.standalone import default_augment

    return None if args.no_augment else default_augment(data_name)


def _check_resume(args: argparse.Namespace, saved: dict[str, Any]) -> None:
    """--resume continues a run as it started: an option given that differs is refused."""
    from dataclasses import asdict

    from estimators.train import TrainRecipe

    if args.init is not None or args.force:
        raise NasError("--resume continues --out as it was started; it takes neither --from "
                       "nor --force")
    differ: list[str] = []
    if args.space is not None and get_space(args.space).name != saved["space"]["name"]:
        differ.append(f"--space (the checkpoint's: {saved['space']['name']})")
    if args.arch is not None or args.ref is not None:
        from estimators.checkpoints import arch_of
        from nas.cli.evaluate import _pick_arch

        space = arch_of(saved, args.out).search_space  # rebuilt from the checkpoint if need be
        if _pick_arch(space, args).key != saved["key"]:
            differ.append(f"the architecture (the checkpoint's: {saved['key']})")
    stored = saved["recipe"].get("train", {})
    try:  # fields added since the checkpoint was written take their defaults
        stored = asdict(TrainRecipe(**stored))
        wanted = asdict(_recipe(args, TrainRecipe(**stored)))
    except (TypeError, NasError):
        wanted = stored
    differ += [f"--{k.replace('_', '-')} (the checkpoint's: {stored.get(k)})"
               for k, v in wanted.items() if stored.get(k) != v]
    if args.no_augment and saved["recipe"].get("augment") is not None:
        differ.append("--no-augment (the checkpoint's run augments)")
    checks = {"--seed": (args.seed, saved["seed"]),
              "--resolution": (_data_is_none(args.resolution),
                               _data_is_none(saved.get("resolution_request")))}
    distill = saved.get("distill") or {}
    if args.distill is not None:
        checks["--distill"] = (str(Path(args.distill).expanduser().resolve()),
                               distill.get("teacher"))
    checks["--distill-weight"] = (args.distill_weight, distill.get("weight"))
    checks["--temperature"] = (args.temperature, distill.get("temperature"))
    differ += [f"{flag} (the checkpoint's: {old})" for flag, (new, old) in checks.items()
               if new is not None and new != old]
    if differ:
        raise NasError(f"--resume continues {args.out} with the settings it started with; "
                       f"these differ: {'; '.join(differ)}")


def _load_data(args: argparse.Namespace, saved_args: dict[str, Any] | None, seed_value: int):
    from estimators.data import load_data

    saved_args = saved_args or {}
    name = args.data or saved_args.get("name") or "fashion-mnist"
    directory = args.data_dir if args.data_dir is not None else saved_args.get("dir")
    fraction = args.val_fraction if args.val_fraction is not None else \
        saved_args.get("val_fraction", 1 / 6)
    data = load_data(name, directory, val_fraction=fraction, seed=seed_value)
    resolved = None if directory is None else str(Path(directory).expanduser().resolve())
    return data, {"name": data.name, "dir": resolved, "val_fraction": fraction}


class _Bar:
    """A tqdm bar on stderr over the run's steps (created at the first step, so that a
    resumed run starts where it stopped); epoch lines are written above it."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, step: int, total: int, loss: float) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, initial=step - 1, desc="train", unit="step",
                            file=sys.stderr, dynamic_ncols=True, leave=False)
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def log(self, line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run(args: argparse.Namespace, bar: _Bar | None):
    from estimators.checkpoints import read_checkpoint
    from estimators.standalone import (
        TRAIN_DEFAULTS,
        DistillSpec,
        resume_training,
        train_to_checkpoint,
    )

    progress, log = (bar, bar.log) if bar is not None else (None, None)
    if args.resume:
        saved = read_checkpoint(args.out) if Path(args.out).exists() else None
        if saved is None:
            raise NasError(f"--resume: no checkpoint at {args.out} to continue; start without "
                           f"--resume")
        _check_resume(args, saved)
        data, _ = _load_data(args, saved["data"].get("args"), saved["seed"])
        return resume_training(args.out, data, progress=progress, log=log), data
    if args.space is None and args.init is None:
        raise NasError("give --space and --arch or --ref, or --from a trained model file")
    if args.init is None and args.arch is None and args.ref is None:
        raise NasError("give the architecture to train: --arch KEY, --ref NAME or --from FILE")
    if args.distill is None and (args.distill_weight is not None or args.temperature is not None):
        raise NasError("--distill-weight and --temperature apply with --distill TEACHER only")
    from estimators.checkpoints import arch_of, read_model_file
    from estimators.standalone import check_output

    # Every file is checked before the data are loaded.
    arch = None
    if args.init is None:
        from nas.cli.evaluate import _pick_arch

        arch = _pick_arch(get_space(args.space), args)
    else:
        source = arch_of(read_model_file(args.init), args.init)
        if args.space is not None and get_space(args.space).name != source.space:
            raise NasError(f"--from {args.init} holds {source.key}, not an architecture of "
                           f"space {get_space(args.space).name}")
    if args.distill is not None:
        arch_of(read_model_file(args.distill), args.distill)
    check_output(args.out, args.force)
    seed_value = 0 if args.seed is None else args.seed
    data, data_args = _load_data(args, None, seed_value)
    distill = None
    if args.distill is not None:
        defaults = DistillSpec(args.distill)
        distill = DistillSpec(args.distill,
                              defaults.weight if args.distill_weight is None
                              else args.distill_weight,
                              defaults.temperature if args.temperature is None
                              else args.temperature)
    trained = train_to_checkpoint(
        args.out, data, arch, init=args.init, recipe=_recipe(args, TRAIN_DEFAULTS),
        augment=_augment(args, data.name), distill=distill, seed=seed_value,
        resolution=args.resolution, force=args.force, data_args=data_args, progress=progress,
        log=log)
    return trained, data


class ThreadsWarning(UserWarning):
    """A run resumed with another torch thread count than it started with."""


def _threads(args: argparse.Namespace) -> int | None:
    """--threads; on --resume, by default the count the run started with (the last bits of
    the results depend on it)."""
    if not args.resume or not Path(args.out).is_file():
        return args.threads
    from estimators.checkpoints import CheckpointFileError, read_checkpoint

    try:
        started = read_checkpoint(args.out).get("threads")
    except CheckpointFileError:
        return args.threads  # the resume itself says what is wrong
    if args.threads is None:
        return started if isinstance(started, int) and started >= 1 else None
    if started != args.threads:
        import warnings

        warnings.warn(f"resuming with {args.threads} torch threads; the run started with "
                      f"{started}: the weights will differ in the last bits from an "
                      f"uninterrupted run", ThreadsWarning, stacklevel=2)
    return args.threads


def cmd_train(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from estimators.threads import torch_threads

    bar = None if (args.quiet or args.json) else _Bar()
    count = _threads(args)
    try:
        with torch_threads(count) if count else nullcontext():
            trained, data = _run(args, bar)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()  # before the line below, not over it
        sys.stderr.write(f"interrupted: {_kept(args.out)}\n")
        return 130
    finally:
        if bar is not None:
            bar.close()
    summary = {**trained.summary(), "bn_recalibrated": trained.info.get("bn_recalibrated"),
               "data": data.summary()}
    from nas.cli.train_text import summary_text

    emit(args, summary, summary_text(summary, summary["data"]))
    return 0


def _kept(out: str) -> str:
    """What an interrupted run left in `out`."""
    from estimators.checkpoints import CheckpointFileError, read_checkpoint

    try:
        saved = read_checkpoint(out)
    except CheckpointFileError:
        return f"no epoch finished; nothing written to {out}"
    return (f"{out} keeps epoch {saved['epochs_done']}/{saved['epochs']}; continue with "
            f"`nas train --out {out} --resume`")


def register(command: CommandAdder) -> None:
    from estimators.data import DATASETS
    from estimators.standalone import DISTILL_TEMPERATURE, DISTILL_WEIGHT, TRAIN_DEFAULTS

    p = command("train", cmd_train,
                "train one architecture to a checkpoint (a checkpoint per epoch, --resume, "
                "--from a trained model, --distill from a teacher)")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = RECIPE_HELP
    p.add_argument("--space", help="space name or path to a YAML/JSON space file")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--arch", help="a key, or the form of the published data (NB201 cell "
                                      "string, ...)")
    group.add_argument("--ref", help="a reference network of the space (see `nas spaces`)")
    group.add_argument("--from", dest="init", metavar="MODEL",
                       help="start from this trained model (a `nas train` checkpoint or a `nas "
                            "export` file): its architecture and weights, a fresh optimizer")
    p.add_argument("--out", required=True, help="the checkpoint written after every epoch, "
                                                "e.g. model.pt")
    p.add_argument("--resume", action="store_true",
                   help="continue --out from its last finished epoch, as it was started")
    p.add_argument("--force", action="store_true",
                   help="overwrite --out even when it holds a finished or interrupted run")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"passes over the train split (default {TRAIN_DEFAULTS.epochs:g})")
    p.add_argument("--lr", type=_number, default=None,
                   help=f"peak learning rate (default {TRAIN_DEFAULTS.lr:g})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="sgd (default) or adamw (for attention models: lr 1e-3, weight decay "
                        "0.05 unless given)")
    p.add_argument("--weight-decay", type=_non_negative, default=None,
                   help="on weights only (default 5e-4; AdamW 0.05)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"images per step (default {TRAIN_DEFAULTS.batch_size})")
    p.add_argument("--train-images", type=positive_int, default=None,
                   help="cap on training images per epoch (default all)")
    p.add_argument("--label-smoothing", type=_fraction, default=None,
                   help=f"default {TRAIN_DEFAULTS.label_smoothing:g}")
    p.add_argument("--clip-norm", type=_positive, default=None,
                   help="cap on the gradients' global norm per step (default none; 2 steadies "
                        "inverted-residual networks at lr 0.1: docs/train.md)")
    p.add_argument("--bn-images", type=non_negative_int, default=None,
                   help=f"training images that re-estimate BatchNorm statistics at the end "
                        f"(default {TRAIN_DEFAULTS.bn_images:,}; 0: keep the running averages)")
    p.add_argument("--no-augment", action="store_true",
                   help="no random crops or flips")
    distill = p.add_argument_group("knowledge distillation")
    distill.add_argument("--distill", metavar="TEACHER", default=None,
                         help="a trained model file (`nas train` or `nas export`) whose "
                              "softened logits the network also learns from")
    distill.add_argument("--distill-weight", type=_number, default=None,
                         help=f"share of the loss from the teacher, in [0, 1] (default "
                              f"{DISTILL_WEIGHT:g}; the labels get the rest)")
    distill.add_argument("--temperature", type=_number, default=None,
                         help=f"softening temperature T of both logits (default "
                              f"{DISTILL_TEMPERATURE:g})")
    data = p.add_argument_group("data")
    data.add_argument("--data", default=None, choices=DATASETS,
                      help="data set (default fashion-mnist; scikit-learn's digits when it is "
                           "not installed)")
    data.add_argument("--data-dir", default=None,
                      help="folder of the data set (fashion-mnist: default "
                           "/usr/share/datasets/fashion-mnist)")
    data.add_argument("--val-fraction", type=float, default=None,
                      help="share of the training set held out for validation (default 1/6)")
    data.add_argument("--resolution", type=_resolution, default=None,
                      help="input size: 'data' (default, the data set's; with --from the "
                           "model's), 'arch' (the architecture's own) or pixels")
    p.add_argument("--seed", type=seed, default=None,
                   help="initialisation, data order, augmentation and validation split "
                        "(default 0)")
    p.add_argument("--threads", type=threads, default=None,
                   help="torch threads (default: torch's, one per core; with --resume, the "
                        "run's own; the last bits of the results depend on it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
