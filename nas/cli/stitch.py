"""`nas stitch`: Stitchable Neural Networks from 2-3 trained models of one space family
(library: `nas.stitch`; docs/stitch.md). `--resume RUN` continues a killed run at its last
whole epoch of joint training."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas.cli.common import (
    CommandAdder,
    add_settings_flags,
    emit,
    fresh_out_dir,
    non_negative_int,
    number_in,
    positive_int,
    resumed_settings,
    seed,
    threads,
)

COMMAND = "nas stitch"
_epochs = number_in(0, 1e6, "a number of epochs >= 0")
_positive = number_in(0, 1e6, "a positive number", low_open=True)
_fraction = number_in(0, 1, "a number between 0 and 1", low_open=True)


# flag -> (settings field, type, help)
FLAGS = {
    "--epochs": ("epochs", _epochs, "joint training epochs (0: score right after "
                                    "initialisation)"),
    "--optimizer": ("optimizer", str, "sgd or adamw (for ViT anchors)"),
    "--lr": ("lr", _positive, "peak learning rate (cosine); None: 0.02 for sgd, 2e-4 for "
                              "adamw"),
    "--batch-size": ("batch_size", positive_int, "training batch"),
    "--train-images": ("train_images", positive_int, "cap on training images per epoch"),
    "--sampling": ("sampling", str, "stitch of each step: uniform, or flops (the FLOPs "
                                    "range covered evenly, SN-Netv2)"),
    "--buckets": ("buckets", positive_int, "FLOPs intervals of --sampling flops"),
    "--init": ("init", str, "stitching layers: lstsq (least squares on paired activations) or "
                            "random (to measure what least squares gives)"),
    "--init-images": ("init_images", positive_int, "images of the least-squares fit"),
    "--bn-images": ("bn_images", non_negative_int, "images measuring each stitch's "
                                                   "BatchNorm statistics (0: shared ones)"),
    "--eval-images": ("eval_images", positive_int, "cap on images scored per split"),
    "--data": ("data", str, "data set (default: the first anchor's)"),
    "--data-dir": ("data_dir", str, "folder of the data set"),
    "--val-fraction": ("val_fraction", _fraction, "share of the training set held out "
                                                  "(default: the first anchor's)"),
    "--seed": ("seed", seed, "validation split, initialisation, sampling, data order"),
    "--threads": ("threads", threads, "torch threads"),
    "--device": ("device", str, "cpu or cuda: time every stitch there (latency_ms)"),
}


def _settings(args: argparse.Namespace) -> tuple[Any, Path, bool]:
    """The run's settings, its folder and whether this call made the folder."""
    from nas.run_folder import new_run_dir
    from nas.stitch import StitchError, StitchSettings

    given = {field: getattr(args, field) for field, _, _ in FLAGS.values()
             if getattr(args, field) is not None}
    given.update({k: v for k, v in (("two_way", not args.one_way), ("distill", args.distill))
                  if v != getattr(StitchSettings, k)})
    if args.resume:
        if args.anchors or args.out:
            raise StitchError("--resume takes the anchors and the folder from the run; drop "
                              "--anchors and --out")
        settings, run_dir = resumed_settings(args.resume, COMMAND, StitchSettings, given)
        return settings, run_dir, False
    if not args.anchors:
        raise StitchError("give --anchors (2-3 trained model files), or --resume RUN")
    settings = StitchSettings(anchors=tuple(args.anchors), **given)
    if args.out is not None:
        run_dir = fresh_out_dir(args.out)
        return settings, run_dir, not run_dir.exists()
    return settings, new_run_dir(args.results, Path(settings.anchors[0]).stem,
                                 f"stitch-{settings.sampling}", settings.seed), True


def cmd_stitch(args: argparse.Namespace) -> int:
    from nas.results import clean_json
    from nas.run_folder import dropped_if_empty
    from nas.stitch import run_stitch

    settings, run_dir, created = _settings(args)
    log = (lambda text: None) if (args.quiet or args.json) else (
        lambda text: sys.stderr.write(text + "\n"))
    try:
        with dropped_if_empty(run_dir, created=created):
            result = run_stitch(settings, run_dir, log, resume=bool(args.resume))
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted: continue with `{COMMAND} --resume {run_dir}`\n"
                         if (run_dir / "config.json").exists()
                         else "interrupted before the run began: nothing was kept\n")
        return 130
    best, summary = result["best"], result["summary"]
    text = "\n".join([
        f"run folder: {run_dir}",
        *(f"{a['name']}: {a['key']}  val {a['acc']:.2f} %  flops {a['flops']:.4g}"
          for a in result["anchors"]),
        f"{result['stitches']} stitches, {summary['front_size']} on the front; "
        f"{summary['above_line']} of {summary['stitched']} stitched on or above the anchors' "
        f"line; hypervolume {summary['hypervolume']:.4f} (anchors alone "
        f"{summary['anchors_hypervolume']:.4f})",
        f"best: {best['key']}  val {best['acc']:.2f} % (test {best['test_acc']:.2f} %)  "
        f"flops {best['flops']:.4g}",
        f"the family: {result['stitched']} (nas.stitch.load_stitched); `nas report "
        f"{run_dir}` lists the front"])
    payload = {k: result[k] for k in ("run_dir", "stitches", "anchors", "best", "stitched",
                                      "summary")}
    emit(args, clean_json(payload), text)
    return 0


def register(command: CommandAdder) -> None:
    from nas.stitch import StitchSettings

    p = command("stitch", cmd_stitch,
                "SN-Net: stitch 2-3 trained models of one space family into one network of "
                "many accuracy/cost trade-offs, trained together, each scored")
    p.add_argument("--anchors", nargs="+", metavar="MODEL",
                   help="trained model files (`nas train` / `nas export`) of one space family")
    p.add_argument("--resume", metavar="RUN", help="continue the killed run in this folder "
                                                   "(only --threads and --device may change)")
    add_settings_flags(p, FLAGS, StitchSettings)
    p.add_argument("--one-way", action="store_true",
                   help="stitch small -> large only (SN-Net), not both ways (SN-Netv2)")
    p.add_argument("--distill", action="store_true",
                   help="also learn from the largest anchor as given (a frozen copy)")
    p.add_argument("--out", help="run folder (default results/<first anchor>-stitch-"
                                 "<sampling>-s<seed>-<time>)")
    p.add_argument("--results", default="results", help="where new run folders go")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


__all__ = ["cmd_stitch", "register"]
