"""`nas evolve-layer`: the EvoNorm layer search (library: `nas.evonorm`). Its flags come from one
table; defaults and checks are `LayerSearchSettings`'s."""
from __future__ import annotations

import argparse
import math
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

COMMAND = "nas evolve-layer"


def protocol_list(text: str) -> tuple[str, ...]:
    """`stability,quality`, one of them, or `none`."""
    return () if text.strip() == "none" else tuple(p.strip() for p in text.split(","))


def seed_list(text: str) -> tuple[int, ...]:
    """`1,2`: seeds, whole numbers >= 0."""
    try:
        seeds = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of seeds") \
            from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds are whole numbers >= 0, got {text!r}")
    return seeds


FLAGS: dict[str, SettingsFlag] = {
    "--population": ("population", positive_int, "layers in the population"),
    "--tournament": ("tournament", float, "share of the population drawn per tournament"),
    "--candidates": ("candidates", positive_int, "the budget: layers drawn, rejected and "
                                                "repeated ones included"),
    "--batch": ("batch", positive_int, "candidates proposed per round (give at least "
                                       "--workers to use them all)"),
    "--initial": ("initial", str, "how the population starts: references (the four "
                                  "reference layers first, the default) or random (layers "
                                  "drawn at random only, the paper's start)"),
    "--finalists": ("finalists", non_negative_int, "layers of highest mean fitness retrained "
                                                   "from --finalist-seeds after the budget; "
                                                   "the best is picked on those (0: none)"),
    "--finalist-seeds": ("finalist_seeds", seed_list, "seeds the finalists are retrained "
                                                      "from, comma-separated (e.g. 1,2)"),
    "--epochs": ("epochs", float, "fitness training epochs on each architecture"),
    "--train-images": ("train_images", positive_int, "fitness training images per epoch"),
    "--batch-size": ("batch_size", positive_int, "fitness training batch"),
    "--lr": ("lr", float, "fitness (and quality) learning rate"),
    "--warmup": ("warmup", float, "share of the training steps warming up"),
    "--eval-images": ("eval_images", positive_int, "validation images scored for the fitness"),
    "--recal-images": ("recal_images", non_negative_int, "training images re-estimating the "
                                                         "layers' running batch statistics"),
    "--resolution": ("resolution", positive_int, "pixels per side the images are resized to"),
    "--protocols": ("protocols", protocol_list, "rejection protocols run before the fitness: "
                                                "stability,quality, one of them, or none"),
    "--stability-steps": ("stability_steps", non_negative_int, "gradient-ascent steps on the "
                                                               "input perturbation"),
    "--stability-eps": ("stability_eps", float, "L-inf bound of the perturbation (normalised "
                                                "input units)"),
    "--stability-batch": ("stability_batch", positive_int, "images in the stability batch"),
    "--stability-bound": ("stability_bound", float, "reject above this many times BN-ReLU's "
                                                    "gradient norm"),
    "--quality-steps": ("quality_steps", positive_int, "steps of the quality training"),
    "--quality-batch": ("quality_batch", positive_int, "batch of the quality training"),
    "--quality-images": ("quality_images", positive_int, "validation images scored for "
                                                         "quality"),
    "--quality-share": ("quality_share", float, "reject below chance + this share of BN-ReLU's "
                                                "gain over chance"),
    **job_flags(seeds="evolution, network weights, data order", unit="evaluation",
                held_out_for="for scores"),
}


def _settings(args: argparse.Namespace) -> tuple[Any, Path]:
    from nas.evonorm import LayerSearchSettings
    from nas.run_folder import new_run_dir

    given = {field: getattr(args, field) for field, _, _ in FLAGS.values()
             if getattr(args, field) is not None}
    for name, field in (("arch", "archs"), ("space_file", "space_files")):
        if getattr(args, name):
            given[field] = tuple(getattr(args, name))
    if args.resume:
        return resumed_settings(args.resume, COMMAND, LayerSearchSettings, given)
    settings = LayerSearchSettings(**given)
    if args.out is not None:
        return settings, fresh_out_dir(args.out)
    from nas.evonorm.plug import eval_arch, register_eval_spaces

    register_eval_spaces(settings.space_files)  # bad archs fail before a folder is made
    for key in settings.archs:
        eval_arch(key)
    return settings, new_run_dir(args.results, "evonorm", "evolution", settings.seed)


def cmd_evolve_layer(args: argparse.Namespace) -> int:
    from nas.evonorm import LayerSearchJob
    from nas.results import clean_json

    settings, run_dir = _settings(args)
    log = (lambda text: None) if (args.quiet or args.json) else (
        lambda text: sys.stderr.write(text + "\n"))
    try:
        result = LayerSearchJob(settings, run_dir, log=log).run()
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted: continue with `{COMMAND} --resume {run_dir}`\n")
        return 130
    columns, protocols = result["columns"], result["protocols"]
    lines = [f"run folder: {run_dir}", "references:"]
    for anchor in result["anchors"]:
        lines.append(f"  {anchor['name']:<11} " + _accs(anchor, columns))
    best, finalists = result["best"], result["finalists"]
    how = (f"highest mean accuracy retrained from seeds "
           f"{', '.join(map(str, settings.finalist_seeds))}, {finalists[0]['retrained_mean']:.2f}"
           f" % (fitness below)") if best and finalists and \
        finalists[0]["trial"] == best["trial"] else "highest mean accuracy"
    lines.append(f"best layer ({how}): " + (
        f"{best['key']}\n  {_accs(best, columns)} (trial {best['trial']})" if best else "none"))
    counts = protocols["rejected"]
    saved = protocols["saved_seconds"]
    lines.append(
        f"{protocols['candidates']} candidates ({protocols['repeats']} drawn again), "
        f"{protocols['evaluated']} evaluated: {protocols['passed']} passed; rejected by "
        f"stability {counts['stability']}, quality {counts['quality']}, failed training "
        f"{counts['fitness']}; " + (
            f"the protocols saved about {saved / 60:.1f} min of an estimated "
            f"{protocols['full_seconds'] / 60:.1f}" if math.isfinite(saved) else
            "no candidate completed the fitness, so no estimate of the time saved"))
    lines.append(f"front: {len(result['front'])} layers; `nas report {run_dir}` lists them")
    emit(args, clean_json({k: result[k] for k in ("run_dir", "trials", "best", "finalists",
                                                  "front", "anchors", "protocols")}),
         "\n".join(lines))
    return 0


def _accs(row: dict[str, Any], columns: list[str]) -> str:
    return "  ".join(f"{c} {row[c]:.2f} %" for c in columns)


def register(command: CommandAdder) -> None:
    from nas.evonorm import LayerSearchSettings

    p = command("evolve-layer", cmd_evolve_layer,
                "EvoNorm: evolve a normalization-activation layer (tournament selection with "
                "aging, Pareto parents over several networks, stability and quality rejection)")
    p.add_argument("--arch", action="append", metavar="KEY",
                   help="an evaluation architecture built with norm evonorm_s0 (repeat for "
                        "several; default: a small ResNet and a small MobileNetV2-like net)")
    p.add_argument("--space-file", action="append", metavar="PATH",
                   help="a space file defining an --arch's space (repeatable)")
    add_settings_flags(p, FLAGS, LayerSearchSettings)
    p.add_argument("--out", help="run folder (default results/evonorm-evolution-s<seed>-<time>)")
    p.add_argument("--results", default="results", help="where new run folders go")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder "
                                                   "(--candidates, --workers may change)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


__all__ = ["cmd_evolve_layer", "register"]
