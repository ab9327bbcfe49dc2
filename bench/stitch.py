"""SN-Net benchmark (issue 15): three ResNet anchors of one space trained on Fashion-MNIST with
`nas train`'s default recipe, stitched by `nas stitch` at its documented defaults; and the
same family scored right after initialisation, least squares against random stitching layers.

    python bench/stitch.py --part anchors   # trains the anchors (resumes after a kill)
    python bench/stitch.py --part runs      # default run, then --epochs 0 lstsq and random
    python bench/stitch.py --part report    # results/bench/stitch/report.json (+ .md)

`--family cifar-stem` does the same for a second family (`bench/spaces/stitch_resnet.yaml`:
three stages of two basic blocks behind a 3x3 stem without the max pool, so that FLOPs grow
with width as in SN-Net's equal-depth DeiT anchors), in results/bench/stitch/cifar-stem/;
`--anchors NAME...` trains only those anchors (two processes can share the work).
`--family steep` is that family at widths 4x apart (`bench/spaces/stitch_resnet_steep.yaml`), so
that each width step buys points, in results/bench/stitch/steep/.
`--family vit` stitches three plain ViTs of equal depth (`bench/spaces/stitch_vit.yaml`, SN-Net's
own kind of family), trained and stitched with AdamW (SGD trains ViTs poorly here), in
results/bench/stitch/vit/.

Anchor checkpoints (.pt) and `stitched.pt` are not committed; the run folders' tables are.
Every run folder that holds a finished run is kept (a run is short: an interrupted one is
started again from scratch, as `nas stitch` has no --resume).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA_DIR = ROOT.parent / "shared" / "data" / "fashion-mnist"
# The anchors' recipe: `nas train`'s defaults with these changes, per family; and the changes
# to `nas stitch`'s defaults that every run of the family makes.
VIT_RECIPE = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "epochs": 20,
              "train_images": 10_000}
FAMILIES = {  # name: (space file, output folder, anchors by name[, recipe, stitch changes])
    # one and two basic blocks per stage at quarter, half and full width (the last is the N2N
    # teacher's shape, ResNet-18 at a quarter of its channels)
    "imagenet-stem": ("n2n_resnet.yaml", "stitch",
                      {"small": "basic-d1.1.1.1-w0.25.0.25.0.25.0.25-r32",
                       "medium": "basic-d1.1.1.1-w0.5.0.5.0.5.0.5-r32",
                       "large": "basic-d2.2.2.2-w1.0.1.0.1.0.1.0-r32"}),
    # equal depth, three widths (SN-Net's DeiT-Ti/S/B pattern)
    "cifar-stem": ("stitch_resnet.yaml", "stitch/cifar-stem",
                   {"small": "basic-d2.2.2-w0.25.0.25.0.25-r32",
                    "medium": "basic-d2.2.2-w0.5.0.5.0.5-r32",
                    "large": "basic-d2.2.2-w0.75.0.75.0.75-r32"}),
    # the same at widths 4x apart, so that each width step buys several points (DeiT-Ti -> S)
    "steep": ("stitch_resnet_steep.yaml", "stitch/steep",
              {"small": "basic-d2.2.2-w0.125.0.125.0.125-r32",
               "medium": "basic-d2.2.2-w0.5.0.5.0.5-r32",
               "large": "basic-d2.2.2-w1.0.1.0.1.0-r32"}),
    # SN-Net's own kind of family: ViTs of equal depth at three widths, AdamW throughout
    "vit": ("stitch_vit.yaml", "stitch/vit",
            {"small": "r28-p4-w48-" + ".".join(["h3m2"] * 6),
             "medium": "r28-p4-w96-" + ".".join(["h3m2"] * 6),
             "large": "r28-p4-w192-" + ".".join(["h3m2"] * 6)},
            VIT_RECIPE, {"optimizer": "adamw"}),
}


@dataclass(frozen=True)
class Family:
    """One family's space file, output folder and anchors (name -> arch)."""

    space: str
    out: Path
    anchors: dict[str, str]
    recipe: dict = field(default_factory=dict)  # changes to `nas train`'s default recipe
    stitch: dict = field(default_factory=dict)  # changes to `nas stitch`'s defaults

    def anchor_path(self, name: str) -> Path:
        return self.out / "anchors" / f"{name}.pt"


def family(name: str) -> Family:
    space_file, folder, anchors, *changes = FAMILIES[name]
    return Family(str(ROOT / "bench" / "spaces" / space_file), ROOT / "results" / "bench" / folder,
                  anchors, *changes)


# name -> StitchSettings changes from the defaults
RUNS = {"default": {}, "lstsq-e0": {"epochs": 0}, "random-e0": {"epochs": 0, "init": "random"},
        "e10": {"epochs": 10}, "e10-distill": {"epochs": 10, "distill": True},
        "e30": {"epochs": 30}, "e10-lr0.005": {"epochs": 10, "lr": 0.005},
        "e10-lr5e-5": {"epochs": 10, "lr": 5e-5},  # SN-Net's AdamW fine-tuning rate (LeViT)
        "lr5e-5": {"lr": 5e-5},
        "e10-one-way": {"epochs": 10, "two_way": False}}  # SN-Net's small -> large only


def train_anchors(fam: Family, threads: int, names: list[str]) -> dict:
    """Each anchor with `nas train`'s defaults (10 epochs of the train split, crops and
    flips) and the family's changes, seed 0; an interrupted training continues."""
    from estimators.checkpoints import read_model_file
    from estimators.data import load_data
    from estimators.standalone import TRAIN_DEFAULTS, resume_training, train_to_checkpoint
    from estimators.threads import torch_threads
    from search_spaces import get_space

    data = load_data("fashion-mnist", DATA_DIR, seed=0)
    space = get_space(fam.space)
    for name in names:
        path = fam.anchor_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with torch_threads(threads):
            if path.is_file() and not read_model_file(path)["complete"]:
                resume_training(path, data, log=print)
            elif not path.is_file():
                began = time.perf_counter()
                train_to_checkpoint(path, data, space.parse(fam.anchors[name]),
                                    recipe=replace(TRAIN_DEFAULTS, **fam.recipe), seed=0,
                                    log=print)
                print(f"{name}: {time.perf_counter() - began:.0f} s", flush=True)
    info = {}  # every finished anchor, whichever process trained it
    for name in fam.anchors:
        path = fam.anchor_path(name)
        if path.is_file() and (payload := read_model_file(path))["complete"]:
            info[name] = {"key": payload["key"], "val_acc": payload["val_acc"],
                          "test_acc": payload["test_acc"],
                          "train_seconds": sum(h["seconds"] for h in payload["history"])}
    (fam.out / "anchors.json").write_text(json.dumps(info, indent=1))
    return info


def run_all(fam: Family, names: list[str], threads: int) -> None:
    from nas.stitch import StitchSettings, run_stitch

    anchors = tuple(str(fam.anchor_path(n)) for n in fam.anchors)
    for name in names:
        folder = fam.out / "runs" / name
        if (folder / "summary.json").is_file():
            continue
        resume = (folder / "config.json").is_file()  # an interrupted run: continue it
        if folder.exists() and not resume:
            shutil.rmtree(folder)
        settings = StitchSettings(anchors=anchors, threads=threads, data_dir=str(DATA_DIR),
                                  **{**fam.stitch, **RUNS[name]})
        began = time.perf_counter()
        run_stitch(settings, folder, log=lambda text: print(text, flush=True), resume=resume)
        seconds = time.perf_counter() - began
        (folder / "wall_seconds.json").write_text(json.dumps(
            {"seconds": round(seconds, 1), "resumed": resume}))  # resumed: this call's only
        print(f"== {name}: {seconds:.0f} s", flush=True)


FIGURES = ("stitched", "above_line", "above_line_share", "hypervolume", "anchors_hypervolume",
           "median_acc_init", "median_acc", "train_steps", "train_seconds", "seconds")


def line_gaps(folder: Path) -> dict:
    """Each stitch's accuracy minus the anchors' line at its FLOPs (trials.csv): the median,
    and the share within one binomial standard error (0.33 points on 10,000 images) of it."""
    import csv

    from nas.stitch import anchors_line

    rows = [{**r, "flops": float(r["flops"]), "acc": float(r["acc"])}
            for r in csv.DictReader((folder / "trials.csv").open())]
    anchors = sorted((r for r in rows if not r["cut"]), key=lambda r: r["flops"])
    gaps = np.array([r["acc"] - anchors_line(anchors, r["flops"]) for r in rows if r["cut"]])
    return {"median_gap_to_line": round(float(np.median(gaps)), 3),
            "within_1se_of_line": round(float(np.mean(gaps >= -0.33)), 3)}


def report(fam: Family) -> dict:
    out: dict = {"anchors": json.loads((fam.out / "anchors.json").read_text()), "runs": {}}
    for name in RUNS:
        folder = fam.out / "runs" / name
        if not (folder / "summary.json").is_file():
            continue
        summary = json.loads((folder / "summary.json").read_text())
        wall = json.loads((folder / "wall_seconds.json").read_text())["seconds"]
        out["runs"][name] = {**{k: summary[k] for k in FIGURES}, **line_gaps(folder),
                             "wall_seconds": wall}
    (fam.out / "report.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("anchors", "runs", "report"), required=True)
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--family", choices=list(FAMILIES), default="imagenet-stem")
    parser.add_argument("--anchors", nargs="+", help="train only these anchors")
    args = parser.parse_args()
    fam = family(args.family)
    unknown = sorted(set(args.anchors or ()) - set(fam.anchors))
    if unknown:
        parser.error(f"unknown anchor {unknown[0]!r}; {args.family} has {', '.join(fam.anchors)}")
    if not DATA_DIR.is_dir():
        parser.error(f"Fashion-MNIST is not at {DATA_DIR} (../shared beside the checkout)")
    if args.part == "anchors":
        print(json.dumps(train_anchors(fam, args.threads, args.anchors or list(fam.anchors)),
                         indent=1))
    elif args.part == "runs":
        run_all(fam, args.runs, args.threads)
    else:
        report(fam)


if __name__ == "__main__":
    main()
