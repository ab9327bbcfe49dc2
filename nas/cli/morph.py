"""`nas grow` (EAS) and `nas compress` (N2N): searches that edit a trained network, choosing
the edits with an RL meta-controller (library: `nas.morph`). Their flags come from one table
per settings class; defaults and checks are the settings dataclasses'."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas.cli.common import (
    CommandAdder,
    SettingsFlag,
    add_settings_flags,
    emit,
    fresh_out_dir,
    job_flags,
    non_negative_int,
    positive_int,
    resumed_settings,
)
from search_spaces import NasError

COMMON: dict[str, SettingsFlag] = {
    "--episodes": ("episodes", positive_int, "episodes of the meta-controller"),
    "--children": ("children", positive_int, "children per episode"),
    "--train-images": ("train_images", positive_int, "cap on training images per epoch"),
    "--policy": ("policy", str, "reinforce, or random: the initial policy never updated "
                                "(the baseline the learned one is measured against)"),
    "--lr": ("lr", float, "Adam step of the meta-controller"),
    "--budget": ("budget", str, "e.g. 20M-flops, 1M-params or 5ms-latency: children over it "
                                "are never trained"),
    **job_flags(seeds="controller, edits, training", unit="training",
                held_out_for="to score children"),
    "--device": ("device", str, "the latency table's device, for latency budgets or targets"),
}
GROW: dict[str, SettingsFlag] = {
    "--parents": ("parents", str, "start: every child grows the start network (EAS); best: the "
                                  "best child so far"),
    "--widen-steps": ("widen_steps", non_negative_int, "widen-actor decisions per child"),
    "--deepen-steps": ("deepen_steps", non_negative_int, "deepen-actor decisions per child"),
    "--finetune-epochs": ("finetune_epochs", float, "training of each child from its "
                                                    "inherited weights"),
    "--start-epochs": ("start_epochs", positive_int, "training of a start given as a key"),
    "--noise": ("noise", float, "symmetry-breaking noise after widening, relative to each "
                                "weight tensor's spread"),
}
COMPRESS: dict[str, SettingsFlag] = {
    "--target": ("target", str, "the cost the reward compresses: params, flops or "
                                "latency_ms"),
    "--remove-episodes": ("remove_episodes", non_negative_int, "episodes of the "
                                                               "layer-removal policy (then "
                                                               "layer shrinkage)"),
    "--student-epochs": ("student_epochs", float, "distillation training of each student"),
    "--distill-weight": ("distill_weight", float, "share of the loss from the teacher"),
    "--temperature": ("temperature", float, "softening temperature of both logits"),
}


def _settings(args: argparse.Namespace, kind: type, flags: dict[str, SettingsFlag], command: str,
              strategy: str) -> tuple[Any, Path]:
    from nas.run_folder import new_run_dir

    source = kind.SOURCE
    given = {field: getattr(args, field) for field, _, _ in flags.values()
             if getattr(args, field) is not None}
    if args.resume:
        return resumed_settings(args.resume, command, kind, given)
    if getattr(args, source) is None:
        raise NasError(f"--{source} is required, or --resume RUN")
    settings = kind(**{source: getattr(args, source)}, space=args.space, **given)
    if args.out is not None:
        return settings, fresh_out_dir(args.out)
    return settings, new_run_dir(args.results, settings.space or Path(getattr(args, source)).stem,
                                 f"{strategy}-{settings.policy}", settings.seed)


def _run(args: argparse.Namespace, job_type: type, settings: Any, run_dir: Path,
         command: str) -> dict[str, Any] | None:
    from nas.run_folder import dropped_if_empty

    log = (lambda text: None) if (args.quiet or args.json) else (
        lambda text: sys.stderr.write(text + "\n"))
    try:
        with dropped_if_empty(run_dir, created=not args.resume and (
                args.out is None or not run_dir.exists())):
            return job_type(settings, run_dir, log=log).run()
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted: continue with `{command} --resume {run_dir}`\n")
        return None


def _best_line(best: dict[str, Any], metric: str, trials: int) -> str:
    return (f"best:  {best['key']}  val {best['acc']:.2f} % (test {best['test_acc']:.2f} %)  "
            f"{metric} {best[metric]:.4g}, child {best['trial']} of {trials}")


def cmd_grow(args: argparse.Namespace) -> int:
    from nas.morph import GrowJob, GrowSettings

    settings, run_dir = _settings(args, GrowSettings, {**COMMON, **GROW}, "nas grow", "eas")
    result = _run(args, GrowJob, settings, run_dir, "nas grow")
    if result is None:
        return 130
    best, start = result["best"], result["start"]
    text = "\n".join([
        f"run folder: {run_dir}",
        f"start: {start['key']}  val {start['acc']:.2f} %  flops {start['flops']:.4g}",
        _best_line(best, "flops", result["trials"]),
        f"its weights: {run_dir / 'children' / (str(best['trial']) + '.pt')} "
        f"(`nas train --from` continues it; `nas export {run_dir}` writes the front's)"])
    emit(args, {k: result[k] for k in ("run_dir", "trials", "best", "start")}, text)
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from nas.morph import CompressJob, CompressSettings

    settings, run_dir = _settings(args, CompressSettings, {**COMMON, **COMPRESS},
                                  "nas compress", "n2n")
    result = _run(args, CompressJob, settings, run_dir, "nas compress")
    if result is None:
        return 130
    teacher, metric = result["teacher"], settings.target
    summary = result["summary"]
    text = "\n".join([
        f"run folder: {run_dir}",
        f"teacher: {teacher['key']}  val {teacher['acc']:.2f} %  {metric} {teacher[metric]:.4g}",
        _best_line(result["best"], metric, result["trials"]),
        f"front: {summary['front_size']} students; `nas report {run_dir}` lists them, `nas export "
        f"{run_dir} --rank K` writes one with its trained weights"])
    emit(args, {k: result[k] for k in ("run_dir", "trials", "best", "teacher")}, text)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run folder (default results/<space>-<method>-<policy>-"
                                 "s<seed>-<time>)")
    p.add_argument("--results", default="results", help="where new run folders go")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder "
                                                   "(--episodes, --workers may change)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def register(command: CommandAdder) -> None:
    from nas.morph import CompressSettings, GrowSettings

    p = command("grow", cmd_grow,
                "EAS: grow a trained network by function-preserving widen/deepen "
                "transformations chosen by an RL meta-controller")
    p.add_argument("--space", help="space name or space file (default: the start model's)")
    p.add_argument("--start", help="a key of --space (trained here first) or a trained model "
                                   "file (`nas train` / `nas export`)")
    add_settings_flags(p, {**COMMON, **GROW}, GrowSettings)
    _common(p)

    p = command("compress", cmd_compress,
                "N2N: compress a trained teacher by RL-chosen block removal, then narrowing; "
                "students start from the teacher's weights and learn from it by distillation")
    p.add_argument("--teacher", help="the trained model file (`nas train` / `nas export`)")
    p.add_argument("--space", help="its space, when it is a space file not registered here")
    add_settings_flags(p, {**COMMON, **COMPRESS}, CompressSettings)
    _common(p)


__all__ = ["cmd_compress", "cmd_grow", "register"]
