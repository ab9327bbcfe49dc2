"""EAS benchmark (issue 14): `nas grow` with the learned meta-controller against the same
controller frozen at its initial policy (random transformations), from the same trained plain
CNN, on Fashion-MNIST; and inherited weights against training the same child from scratch.

    python bench/eas.py --part search      # 3 seeds x {reinforce, random}; resumes
    python bench/eas.py --part inherit     # best child of each run, trained from scratch
    python bench/eas.py --part report      # results/bench/eas/report.json (+ --plot)

Run folders go to results/bench/eas/runs/ (their .pt files are not committed; a run whose
models are gone is run again). Every figure is a mean over seeds with its standard error.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from morph_runs import Runs, mean_se  # noqa: E402  (bench/ is the script's folder)

OUT = ROOT / "results" / "bench" / "eas"
SPACE = str(ROOT / "bench" / "spaces" / "eas_plain.yaml")
START = "plain-d1.1.1-w0.5.0.5.0.5-r32"
DATA_DIR = ROOT.parent / "shared" / "data" / "fashion-mnist"
RUNS = Runs(OUT / "runs")
POLICIES = ("reinforce", "random")
# 8 episodes x 5 children = 40 trained children per run; 10,000 images per epoch
SETTINGS = {"episodes": 8, "children": 5, "start_epochs": 3, "finetune_epochs": 1.0,
            "train_images": 10_000, "workers": 0, "threads": 1}
SCRATCH_EPOCHS = (1, 2, 3, 4, 6)
# `--protocol`: the changes to SETTINGS and the suffix of their run folders. `e10` (stop 34):
# ten times the fine-tuning per child, so the reward can carry a child's capacity (one epoch
# ordered children by noise), and twice the episodes, so the learned policy, which repeats
# children, also reaches 40 distinct trained children; the report compares both policies
# at an equal count of trained children.
PROTOCOLS: dict[str, tuple[dict, str]] = {
    "e1": ({}, ""),
    "e10": ({"finetune_epochs": 10.0, "episodes": 16}, "-e10"),
}


def protocol_settings(protocol: str) -> dict:
    return {**SETTINGS, **PROTOCOLS[protocol][0]}


def grow_settings(policy: str, seed: int, lr: float | None = None, protocol: str = "e1"):
    from nas.morph import GrowSettings

    extra = {} if lr is None else {"lr": lr}
    return GrowSettings(start=str(OUT / "runs" / f"start-s{seed}.pt"), space=SPACE,
                        policy=policy, seed=seed, data_dir=str(DATA_DIR),
                        **protocol_settings(protocol), **extra)


def run_prefix(policy: str, lr: float | None = None, protocol: str = "e1") -> str:
    """`reinforce`; a learning-rate variant of the learned policy `reinforce-lr0.01`; the
    `e10` protocol's `reinforce-e10`."""
    return f"{policy}{'' if lr is None else f'-lr{lr:g}'}{PROTOCOLS[protocol][1]}"


def start_network(seed: int) -> Path:
    """The trained start network of a seed, shared by both policies."""
    from estimators.checkpoints import read_model_file
    from estimators.data import load_data
    from estimators.standalone import TRAIN_DEFAULTS, train_to_checkpoint
    from search_spaces import get_space

    path = OUT / "runs" / f"start-s{seed}.pt"
    if path.is_file() and read_model_file(path)["complete"]:
        return path
    data = load_data("fashion-mnist", DATA_DIR, seed=seed)
    arch = get_space(SPACE).parse(START)
    recipe = replace(TRAIN_DEFAULTS, epochs=SETTINGS["start_epochs"],
                     train_images=SETTINGS["train_images"])
    train_to_checkpoint(path, data, arch, recipe=recipe, seed=seed, force=True)
    return path


def run_search(seeds: list[int], policies: list[str], lr: float | None = None,
               protocol: str = "e1") -> None:
    from nas.morph import GrowJob

    for seed in seeds:
        start_network(seed)
        for policy in policies:
            policy_lr = lr if policy == "reinforce" else None
            prefix = run_prefix(policy, policy_lr, protocol)
            if RUNS.finished(prefix, seed):
                continue
            run = RUNS.folder(prefix, seed)
            print(f"== {prefix} seed {seed}", flush=True)
            GrowJob(grow_settings(policy, seed, policy_lr, protocol), run,
                    log=lambda text: print(text, flush=True)).run()




def run_inherit(seeds: list[int]) -> None:
    """The best child of each learned run, trained from scratch for 1, 2, 3, 4, 6 epochs with
    the fine-tuning recipe: how much training from scratch matches its inherited accuracy."""
    from estimators.data import load_data
    from estimators.standalone import TRAIN_DEFAULTS, train_to_checkpoint
    from search_spaces import get_space

    out = OUT / "inherit.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    space = get_space(SPACE)
    for seed in seeds:
        rows = RUNS.rows("reinforce", seed)
        if not rows:
            continue
        best = max(rows, key=lambda r: r["acc"])
        data = load_data("fashion-mnist", DATA_DIR, seed=seed)
        for epochs in SCRATCH_EPOCHS:
            name = f"s{seed}-e{epochs}"
            if name in results:
                continue
            recipe = replace(TRAIN_DEFAULTS, epochs=epochs, train_images=SETTINGS["train_images"])
            trained = train_to_checkpoint(OUT / "runs" / f"scratch-{name}.pt", data,
                                          space.parse(best["key"]), recipe=recipe, seed=seed,
                                          force=True)
            results[name] = {"key": best["key"], "inherited_acc": best["acc"],
                             "scratch_epochs": epochs, "scratch_acc": trained.info["val_acc"],
                             "seconds": trained.seconds}
            out.write_text(json.dumps(results, indent=1))
            print(name, results[name], flush=True)



def best_curve(rows: list[dict]) -> list[float]:
    best, curve = -math.inf, []
    for row in rows:
        best = max(best, row["acc"])
        curve.append(best)
    return curve


def best_of(runs: list[list[dict]], count: int | None = None) -> dict:
    """Mean and standard error over runs of each run's best child (of its first `count`
    trained children)."""
    best = [max(r[:count] if count else r, key=lambda x: x["acc"]) for r in runs]
    acc, se = mean_se([b["acc"] for b in best])
    test, test_se = mean_se([b["test_acc"] for b in best])
    return {"best_val_acc": acc, "best_val_se": se, "best_test_acc": test,
            "best_test_se": test_se, "best_keys": [b["key"] for b in best],
            "best_mflops": [b["flops"] / 1e6 for b in best]}


def difference(learned: dict, random: dict) -> dict:
    diff = learned["best_val_acc"] - random["best_val_acc"]
    diff_se = math.hypot(learned["best_val_se"], random["best_val_se"])
    return {"val_acc": diff, "se": diff_se, "above_2se": bool(diff > 2 * diff_se)}


def report(seeds: list[int], plot: bool, variants: list[str], protocol: str = "e1") -> dict:
    suffix = PROTOCOLS[protocol][1]
    summary: dict = {"settings": protocol_settings(protocol), "start": START, "seeds": seeds,
                     "policies": {}}
    names = [f"{p}{suffix}" for p in POLICIES] + variants
    runs_of = {name: [RUNS.rows(name, s) for s in seeds if RUNS.finished(name, s)]
               for name in names}
    for name, runs in runs_of.items():
        summary["policies"][name] = {
            "runs": len(runs), "trained_children": [len(r) for r in runs],
            **best_of(runs),
            "train_seconds_per_child": statistics.median(
                [x["train_seconds"] for r in runs for x in r]) if runs else None}
    random = f"random{suffix}"
    summary["difference"] = {name: difference(summary["policies"][name],
                                              summary["policies"][random])
                             for name in names if name != random}
    # the measure: both policies after the same number of trained children
    counts = [len(r) for runs in runs_of.values() for r in runs]
    if counts:
        equal = min(min(counts), 40)
        at_equal = {name: best_of(runs, equal) for name, runs in runs_of.items() if runs}
        summary["equal_children"] = {
            "children": equal, "policies": at_equal,
            "difference": {name: difference(at_equal[name], at_equal[random])
                           for name in at_equal if name != random}}
    starts = []
    for seed in seeds:
        path = RUNS.folder(f"reinforce{suffix}", seed) / "anchors.csv"
        if path.is_file():
            import csv

            starts += [float(r["acc"]) for r in csv.DictReader(path.open())]
    summary["start_val_acc"] = mean_se(starts)
    inherit_path = OUT / "inherit.json"
    if inherit_path.is_file() and protocol == "e1":  # measured on the e1 runs' best children
        inherit = json.loads(inherit_path.read_text())
        matched = {}
        for seed in seeds:
            entries = sorted((v for k, v in inherit.items() if k.startswith(f"s{seed}-")),
                             key=lambda v: v["scratch_epochs"])
            reach = [v["scratch_epochs"] for v in entries
                     if v["scratch_acc"] >= v["inherited_acc"]]
            if entries:
                matched[seed] = {"inherited_acc": entries[0]["inherited_acc"],
                                 "scratch": {v["scratch_epochs"]: v["scratch_acc"]
                                             for v in entries},
                                 "scratch_epochs_to_match": reach[0] if reach else None,
                                 "child_epochs": SETTINGS["finetune_epochs"]}
        summary["inherit"] = matched
    (OUT / f"report{suffix}.json").write_text(json.dumps(summary, indent=1))
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for policy, colour in zip(POLICIES, ("tab:blue", "tab:grey")):
            for i, seed in enumerate(seeds):
                rows = RUNS.rows(f"{policy}{suffix}", seed)
                if rows:
                    ax.plot(range(1, len(rows) + 1), best_curve(rows), color=colour,
                            alpha=0.8, label=policy if i == 0 else None)
        ax.set_xlabel("trained children")
        ax.set_ylabel("best val accuracy so far (%)")
        ax.set_title("EAS on Fashion-MNIST: learned vs random transformations")
        ax.legend()
        fig.tight_layout()
        fig.savefig(ROOT / "docs" / f"eas-fmnist{suffix}.png", dpi=120)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("search", "inherit", "report"), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--plot", action="store_true")
    parser.add_argument("--lr", type=float, default=None,
                        help="search: a learning-rate variant of the learned policy")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="e1",
                        help="e1: one epoch of 10,000 images per child (the defaults); e10: "
                             "ten, and 16 episodes")
    parser.add_argument("--variants", nargs="*", default=[],
                        help="report: variant run prefixes too, e.g. reinforce-lr0.01")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    (OUT / "runs").mkdir(parents=True, exist_ok=True)
    if args.part == "search":
        run_search(args.seeds, args.policies, args.lr, args.protocol)
    elif args.part == "inherit":
        run_inherit(args.seeds)
    else:
        print(json.dumps(report(args.seeds, args.plot, args.variants, args.protocol), indent=1))


if __name__ == "__main__":
    main()
