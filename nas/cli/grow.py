"""`nas grow`: EAS, growing a trained network by function-preserving transformations chosen by
a reinforcement-learning meta-controller (library: `nas.grow`)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from nas.cli.common import CommandAdder, emit, non_negative_int, positive_int, seed, threads
from search_spaces import NasError

# flag -> (settings field, type); the defaults and help come from GrowSettings
FLAGS: dict[str, tuple[str, Any, str]] = {
    "--episodes": ("episodes", positive_int, "episodes of the meta-controller"),
    "--children": ("children", positive_int, "children per episode (EAS: 10)"),
    "--widen-steps": ("widen_steps", non_negative_int, "widen-actor decisions per child"),
    "--deepen-steps": ("deepen_steps", non_negative_int, "deepen-actor decisions per child"),
    "--finetune-epochs": ("finetune_epochs", float, "training of each child from its "
                                                    "inherited weights"),
    "--start-epochs": ("start_epochs", positive_int, "training of a start given as a key"),
    "--train-images": ("train_images", positive_int, "cap on training images per epoch"),
    "--policy": ("policy", str, "reinforce, or random: the initial policy never updated "
                                "(the baseline EAS is measured against)"),
    "--lr": ("lr", float, "Adam step of the meta-controller"),
    "--noise": ("noise", float, "symmetry-breaking noise after widening, relative to each "
                                "weight tensor's spread"),
    "--budget": ("budget", str, "e.g. 20M-flops or 5ms-latency: children over it are never "
                                "trained"),
    "--data": ("data", str, "data set"),
    "--data-dir": ("data_dir", str, "folder of the data set"),
    "--val-fraction": ("val_fraction", float, "share of the training set held out to score "
                                              "children"),
    "--seed": ("seed", seed, "controller, transformations, training"),
    "--threads": ("threads", threads, "torch threads per training"),
    "--workers": ("workers", non_negative_int, "Ray workers (0: train in this process)"),
    "--address": ("address", str, "a Ray cluster to join (HOST:PORT or auto)"),
    "--device": ("device", str, "the latency table's device, for a latency budget"),
}


def _settings(args: argparse.Namespace) -> tuple[Any, Path]:
    from nas.morph import GrowSettings
    from nas.results import read_json
    from nas.run_folder import new_run_dir
    from nas.run_lock import check_output_dir

    given = {field: getattr(args, field) for field, _, _ in FLAGS.values()
             if getattr(args, field) is not None}
    if args.resume:
        run_dir = check_output_dir(args.resume, "--resume")
        config = run_dir / "config.json"
        if not config.is_file():
            raise NasError(f"--resume {run_dir}: no `nas grow` run there (no config.json)")
        saved = read_json(config).get("settings")
        if not isinstance(saved, dict) or "start" not in saved:
            raise NasError(f"--resume {run_dir}: a run of another command, not `nas grow`")
        return replace(GrowSettings.from_json(saved), **given), run_dir
    if args.start is None:
        raise NasError("--start is required (a key of --space, or a trained model file), or "
                       "--resume RUN")
    settings = GrowSettings(start=args.start, space=args.space, **given)
    if args.out is not None:
        run_dir = check_output_dir(args.out, "--out")
        if (run_dir / "config.json").exists():
            raise NasError(f"{run_dir} already holds a run; continue it with --resume "
                           f"{run_dir}, or choose another --out")
        return settings, run_dir
    return settings, new_run_dir(args.results, settings.space or Path(args.start).stem,
                                 f"eas-{settings.policy}", settings.seed)


def cmd_grow(args: argparse.Namespace) -> int:
    from nas.morph import GrowJob

    settings, run_dir = _settings(args)
    log = (lambda text: None) if (args.quiet or args.json) else (
        lambda text: sys.stderr.write(text + "\n"))
    try:
        result = GrowJob(settings, run_dir, log=log).run()
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted: continue with `nas grow --resume {run_dir}`\n")
        return 130
    best, start = result["best"], result["start"]
    text = "\n".join([
        f"run folder: {run_dir}",
        f"start: {start['key']}  val {start['acc']:.2f} %  {start['flops'] / 1e6:.2f} MFLOPs",
        f"best:  {best['key']}  val {best['acc']:.2f} % (test {best['test_acc']:.2f} %)  "
        f"{best['flops'] / 1e6:.2f} MFLOPs, child {best['trial']} of {result['trials']}",
        f"its weights: {run_dir / 'children' / (str(best['trial']) + '.pt')} "
        f"(`nas train --from` continues it)"])
    emit(args, {k: result[k] for k in ("run_dir", "trials", "best", "start")}, text)
    return 0


def register(command: CommandAdder) -> None:
    from nas.morph import GrowSettings

    defaults = {f.name: f.default for f in fields(GrowSettings)}
    p = command("grow", cmd_grow,
                "EAS: grow a trained network by function-preserving widen/deepen "
                "transformations chosen by an RL meta-controller")
    p.add_argument("--space", help="space name or space file (default: the start model's)")
    p.add_argument("--start", help="a key of --space (trained here first) or a trained model "
                                   "file (`nas train` / `nas export`)")
    p.add_argument("--out", help="run folder (default results/<space>-eas-<policy>-s<seed>-"
                                 "<time>)")
    p.add_argument("--results", default="results", help="where new run folders go")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder "
                                                   "(--episodes, --workers may change)")
    for flag, (field, kind, text) in FLAGS.items():
        default = defaults[field]
        shown = f"{default:.4g}" if isinstance(default, float) else default
        p.add_argument(flag, dest=field, type=kind, default=None,
                       help=f"{text} (default {shown})")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


__all__ = ["cmd_grow", "register"]
