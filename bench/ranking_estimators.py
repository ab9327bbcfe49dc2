"""Every accuracy estimator against the standalone ground truth (issue 13).

On the architectures of bench/ranking_groundtruth.py (one space, one ground-truth recipe),
each estimator scores every architecture once:

- `supernet`: the `supernet` estimator exactly as `nas search` builds it by default (the
  space's `default_recipe` and `scoring_settings`: on NB201 fair sampling, 30 epochs without
  weight decay, BatchNorm recalibrated on 1,000 training images, 5,000 validation images; and
  the space's proxy blend: on NB201 a third of jacov's rank), with `supernet:unblended` the same supernet's own
  accuracy;
  `supernet:<variant>` are the training changes tried to make it rank better (VARIANTS);
- `proxy:<name>`: each zero-cost proxy (one training batch of 64 images, seed 0);
- `proxies:rank-ensemble`: the mean of the proxies' ranks (params excluded);
- `params`, `flops`: the network's size;
- `short`: standalone training with a tenth of the ground-truth recipe's epochs, scored on the
  validation split.

Per estimator, against the mean of the ground truth's seeds: Kendall tau (with a bootstrap
90% interval over architectures), Spearman, precision at the top 10%, on all architectures
and (NB201) on cells whose output is connected, and the cost per architecture; for supernets
also the training seconds and seconds per step (the per-epoch times kept in the cached
checkpoint). `--time-steps` times one epoch of several supernet recipes back to back on this
machine (timing.json: seconds per step and the ratio to the first; wall-clock here drifts up
to 2x between runs, so only ratios measured together compare). Scores are kept per estimator
under results/bench/ranking-estimators/SPACE/ so a run resumes; `--plot` writes
docs/ranking-SPACE.png.

    python bench/ranking_estimators.py --space nb201 --recipe e8 --estimators all
    python bench/ranking_estimators.py --space nb201 --recipe e24 --time-steps --markdown
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from ranking_groundtruth import (  # noqa: E402
    EXTRA_SEEDS,
    GROUND_TRUTHS,
    ROOT,
    SEEDS,
    architectures,
    load_split_data,
)
from ranking_report import OUT, cost_markdown, markdown, plot, report  # noqa: E402
from scipy.stats import rankdata  # noqa: E402

from estimators.accuracy import ProxyEstimator, TrainEstimator  # noqa: E402
from estimators.files import atomic_write_text  # noqa: E402
from estimators.flops import FlopsEstimator  # noqa: E402
from estimators.proxies import PROXY_NAMES  # noqa: E402
from estimators.supernet import (  # noqa: E402
    SupernetEstimator,
    SupernetRecipe,
    default_recipe,
    train_supernet,
)
from estimators.supernet.blend import BLEND_REFERENCE, BLEND_WEIGHT  # noqa: E402
from estimators.supernet.estimator import blend_proxy, scoring_settings  # noqa: E402
from search_spaces import Arch  # noqa: E402

# Changes measured against the default: name -> recipe fields, plus the estimator's own
# `calibration_images` / `eval_images` where given.
# The one-shot default up to stop 31 (weight decay 3e-5, `SupernetRecipe`'s): the base of the
# variants that change one thing of it.
FAIR_E15_EVAL5K: dict[str, Any] = {"sampling": "fair", "epochs": 15, "calibration_images": 1000,
                                   "eval_images": 5000}
VARIANTS: dict[str, dict[str, Any]] = {
    "sandwich": {"sampling": "sandwich"},  # the default before issue 13
    "uniform": {"sampling": "uniform"},
    "fair": {"sampling": "fair"},
    "fair-eval10k": {"sampling": "fair", "calibration_images": 2000, "eval_images": 10_000},
    "fair-e15": {"sampling": "fair", "epochs": 15},
    "fair-e15-eval10k": {"sampling": "fair", "epochs": 15, "calibration_images": 2000,
                         "eval_images": 10_000},
    "fair-e15-eval5k": FAIR_E15_EVAL5K,
    # as long as the default plus its continuation
    "fair-e65-eval5k": {**FAIR_E15_EVAL5K, "epochs": 65},
    "sandwich-e15": {"sampling": "sandwich", "epochs": 15},
    "uniform-e15": {"sampling": "uniform", "epochs": 15},
    # multi-architectural sampling (ViT-ResNAS, `subnets_per_pass`): K subnets share one
    # forward-backward, each on 1/K of the batch. Fair sampling draws 5 subnets per step on
    # NB201 (K=5: all in one pass), sandwich 2 + random_subnets = 4 (K=4).
    "fair-e15-eval5k-k5": {**FAIR_E15_EVAL5K, "subnets_per_pass": 5},
    "fair-e45-eval5k-k5": {**FAIR_E15_EVAL5K, "epochs": 45, "subnets_per_pass": 5},
    "sandwich-e15-k4": {"sampling": "sandwich", "epochs": 15, "subnets_per_pass": 4},
    # ranking distillation with FLOPs as the prior (RD-NAS; recipe `rank_loss`)
    "fair-e15-eval5k-rank1": {**FAIR_E15_EVAL5K, "rank_loss": 1.0},
    # a lower or higher peak learning rate (stop 32: the continuation at lr 0.02 ranked better
    # than a fresh supernet as long at 0.05)
    "fair-e15-eval5k-lr02": {**FAIR_E15_EVAL5K, "lr": 0.02},
    "fair-e15-eval5k-lr10": {**FAIR_E15_EVAL5K, "lr": 0.1},
    # all 10,000 validation images on the default supernet (the same cache key as
    # fair-e15-eval5k: a paired comparison of the scoring alone)
    "fair-e15-eval10k-cal1k": {**FAIR_E15_EVAL5K, "eval_images": 10_000},
    # the same recipe from other seeds: the spread between trainings of one recipe
    "fair-e15-eval5k-seed1": {**FAIR_E15_EVAL5K, "seed": 1},
    "fair-e15-eval5k-seed2": {**FAIR_E15_EVAL5K, "seed": 2},
    # no weight decay (the one-shot default since stop 32), from the same three seeds: each
    # paired with the run above that shares its seed
    "fair-e15-eval5k-wd0": {**FAIR_E15_EVAL5K, "weight_decay": 0.0},
    "fair-e15-eval5k-wd0-seed1": {**FAIR_E15_EVAL5K, "weight_decay": 0.0, "seed": 1},
    "fair-e15-eval5k-wd0-seed2": {**FAIR_E15_EVAL5K, "weight_decay": 0.0, "seed": 2},
    # twice as long without weight decay (stop 33: the 65-epoch supernet ranked worse with
    # weight decay; is length harmful without it?), from the same three seeds and two more
    **{f"fair-e30-eval5k-wd0{f'-seed{seed}' if seed else ''}": {
        **FAIR_E15_EVAL5K, "epochs": 30, "weight_decay": 0.0, "seed": seed} for seed in range(5)},
    # four times as long without weight decay (stop 33: 30 epochs ranked better than 15 from
    # each of three seeds)
    "fair-e60-eval5k-wd0": {**FAIR_E15_EVAL5K, "epochs": 60, "weight_decay": 0.0},
    # BatchNorm without affine parameters (stop 34: DARTS's and NB201's own supernets use
    # affine=False), on the 30-epoch default, from the default's first three seeds (paired)
    **{f"fair-e30-eval5k-wd0-noaffine{f'-seed{seed}' if seed else ''}": {
        **FAIR_E15_EVAL5K, "epochs": 30, "weight_decay": 0.0, "norm_affine": False,
        "seed": seed} for seed in range(3)},
    # `SupernetRecipe()` (sandwich on elastic spaces: the `mobile` default) without weight
    # decay (stop 33)
    "auto-wd0": {"weight_decay": 0.0},
}
# `--time-steps`: the supernet entries whose training cost is measured back to back, the first
# the baseline the others are compared with (the sequential default and its K variants).
TIMED = ("supernet:fair-e15-eval5k", "supernet:fair-e15-eval5k-k5",
         "supernet:fair-e45-eval5k-k5", "supernet:sandwich-e15", "supernet:sandwich-e15-k4")
ESTIMATOR_FIELDS = ("calibration_images", "eval_images")


def supernet_setup(space: str, variant: str | None) -> tuple[SupernetRecipe, dict[str, Any]]:
    """(recipe, scoring images): without a variant exactly what `nas search` uses (the
    space's `default_recipe` and `scoring_settings`); a variant changes `SupernetRecipe()`
    and the estimator's class defaults (500 calibration, 2,000 evaluation images)."""
    truth = GROUND_TRUTHS[space]
    resolution = None if truth.data_resolution else "arch"
    if variant is None:
        return (default_recipe(truth.space(), resolution=resolution),
                scoring_settings(truth.space()))
    changes = VARIANTS[variant]
    recipe = dataclasses.replace(SupernetRecipe(resolution=resolution), **{
        k: v for k, v in changes.items() if k not in ESTIMATOR_FIELDS})
    return recipe, {"calibration_images": changes.get("calibration_images", 500),
                    "eval_images": changes.get("eval_images", 2000)}


def training_cost(trained, data) -> dict[str, Any]:
    """Training seconds (the sum of the checkpoint's per-epoch times: also known for a
    supernet reused from the cache, timed by the run that trained it), steps and seconds per
    step."""
    steps = trained.recipe.steps_per_epoch(len(data.train)) * len(trained.history)
    seconds = float(sum(record["seconds"] for record in trained.history))
    return {"train_seconds": seconds, "train_steps": steps,
            "seconds_per_step": seconds / max(1, steps)}


def score_supernet(space: str, variant: str | None, archs: list[Arch], data,
                   cache: Path) -> dict[str, dict[str, Any]]:
    """The entry `supernet[:variant]`; the default (no variant) with the space's proxy blend,
    as `nas search` builds it, and then also `supernet:unblended` (the same supernet's own
    accuracy)."""
    recipe, images = supernet_setup(space, variant)
    resolved = GROUND_TRUTHS[space].space()
    trained = train_supernet(resolved, data, recipe, cache_dir=cache, log=print, quiet=True)
    estimator = SupernetEstimator(trained, data, **images)
    proxy = blend_proxy(resolved) if variant is None else None
    blend_seconds = 0.0
    if proxy is not None:
        start = time.perf_counter()
        estimator.set_blend(estimator.fit_blend(resolved, proxy, checkpoint=trained.path))
        blend_seconds = time.perf_counter() - start
    estimator(archs[0])  # warm-up: resizes and caches the images once
    scores, own, seconds, own_seconds = {}, {}, [], []
    for arch in archs:
        metrics = estimator(arch)
        scores[arch.key], own[arch.key] = metrics["acc"], metrics["acc_supernet"]
        seconds.append(metrics["supernet_seconds"])
        own_seconds.append(metrics["supernet_seconds"] - metrics.get("blend_seconds", 0.0))
    common = {**training_cost(trained, data), "trained_here": not trained.reused,
              "threads": torch.get_num_threads(), "recipe": recipe.as_dict(), **images}
    name = "supernet" if variant is None else f"supernet:{variant}"
    blended = {"scores": scores, "seconds_per_arch": float(np.median(seconds)),
               "seconds_per_arch_max": float(max(seconds)), **common}
    if proxy is None:
        return {name: blended}
    return {name: {**blended, "blend_proxy": proxy, "blend_weight": BLEND_WEIGHT,
                   "blend_reference": BLEND_REFERENCE, "blend_fit_seconds": blend_seconds},
            "supernet:unblended": {"scores": own, "seconds_per_arch": float(np.median(own_seconds)),
                                   "seconds_per_arch_max": float(max(own_seconds)), **common}}


def variant_of(name: str) -> str | None:
    """`supernet:VARIANT` -> VARIANT; `supernet` -> None (the default recipe)."""
    if name != "supernet" and not name.startswith("supernet:"):
        raise ValueError(f"not a supernet entry: {name!r}")
    return name.partition(":")[2] or None


def time_steps(space: str, names: list[str], data, rounds: int) -> dict[str, Any]:
    """Seconds per training step of each supernet entry's recipe, measured back to back on
    this machine: one epoch of the recipe each (`epochs` = 1, the rest unchanged; a fresh
    supernet through `train_supernet`, the code path of the full training), in turn, `rounds`
    times (every other round in reverse order), so a drift of the machine's speed falls on
    every entry alike. The first entry is the baseline of the ratios."""
    import tempfile

    per_step: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="timing-") as cache:
        for round_index in range(rounds):
            for name in names if round_index % 2 == 0 else names[::-1]:
                recipe, _ = supernet_setup(space, variant_of(name))
                short = dataclasses.replace(recipe, epochs=1)
                trained = train_supernet(GROUND_TRUTHS[space].space(), data, short,
                                         cache_dir=cache, reuse=False, quiet=True)
                steps = short.steps_per_epoch(len(data.train))
                per_step[name].append(trained.history[-1]["seconds"] / steps)
                print(f"round {round_index + 1}/{rounds} {name}: "
                      f"{per_step[name][-1]:.3f} s/step", flush=True)
    median = {name: float(np.median(values)) for name, values in per_step.items()}
    base = names[0]
    return {"baseline": base, "rounds": rounds, "epochs": 1,
            "threads": torch.get_num_threads(), "per_step": per_step,
            "seconds_per_step": median,
            "ratio": {name: median[name] / median[base] for name in names},
            # each round's ratio: how much of the drift the back-to-back order cancels
            "ratio_per_round": {name: [v / b for v, b in zip(per_step[name], per_step[base])]
                                for name in names}}


def score_proxies(space: str, archs: list[Arch], data) -> dict[str, dict[str, Any]]:
    resolution = None if GROUND_TRUTHS[space].data_resolution else "arch"
    estimator = ProxyEstimator(data, proxies=PROXY_NAMES, resolution=resolution)
    per: dict[str, dict[str, float]] = {name: {} for name in PROXY_NAMES}
    seconds = []
    for arch in archs:
        start = time.perf_counter()
        metrics = estimator(arch)
        seconds.append(time.perf_counter() - start)
        for name in PROXY_NAMES:
            per[name][arch.key] = metrics[name]
    cost = float(np.median(seconds))  # all proxies together; each is a share of it
    results = {f"proxy:{name}": {"scores": per[name], "seconds_per_arch": cost}
               for name in PROXY_NAMES}
    ranked = [rankdata([per[name][a.key] for a in archs]) for name in PROXY_NAMES
              if name != "params"]
    ensemble = np.mean(ranked, axis=0)
    results["proxies:rank-ensemble"] = {
        "scores": {a.key: float(v) for a, v in zip(archs, ensemble)}, "seconds_per_arch": cost}
    return results


def score_size(archs: list[Arch]) -> dict[str, dict[str, Any]]:
    counter = FlopsEstimator()
    start = time.perf_counter()
    values = [counter(arch) for arch in archs]
    cost = (time.perf_counter() - start) / len(archs)
    return {name: {"scores": {a.key: v[name] for a, v in zip(archs, values)},
                   "seconds_per_arch": cost} for name in ("params", "flops")}


def score_short(space: str, recipe_name: str, archs: list[Arch], data) -> dict[str, Any]:
    truth = GROUND_TRUTHS[space]
    protocol = truth.protocols[recipe_name]
    recipe = dataclasses.replace(protocol.recipe, epochs=protocol.recipe.epochs / 10)
    estimator = TrainEstimator(data, recipe, seed=0, split="val",
                               resolution=None if truth.data_resolution else "arch")
    scores, seconds = {}, []
    for arch in archs:
        metrics = estimator(arch)
        scores[arch.key] = metrics["acc"]
        seconds.append(metrics["train_seconds"])
    return {"scores": scores, "seconds_per_arch": float(np.median(seconds)),
            "recipe": recipe.describe()}


def save_scores(space: str, name: str, record: dict[str, Any]) -> None:
    atomic_write_text(OUT / space / f"scores-{name.replace(':', '_')}.json",
                      json.dumps({"name": name, **record}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", required=True, choices=sorted(GROUND_TRUTHS))
    parser.add_argument("--recipe", required=True, help="the ground-truth recipe")
    parser.add_argument("--estimators", default="report",
                        help="comma list of supernet, supernet:VARIANT, proxies, size, short; "
                             "'all'; or 'report' (only the report)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "nas" / "ranking-bench"),
                        help="where trained supernets are cached (not committed: large)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--truth-seeds", type=int, default=len(SEEDS), choices=(2, 4, 6, 8, 10),
                        help="score against the mean of seeds 0-1 or, on the architectures "
                             "that have them, of seeds 0-3, 0-5 or 0-7")
    parser.add_argument("--time-steps", nargs="?", const=",".join(TIMED), default=None,
                        metavar="NAMES",
                        help="time one epoch of each named supernet entry's recipe back to back "
                             f"(comma list, the first the baseline; default {','.join(TIMED)}) "
                             "into timing.json")
    parser.add_argument("--rounds", type=int, default=2, help="--time-steps rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    (OUT / args.space).mkdir(parents=True, exist_ok=True)
    wanted = ["supernet", "proxies", "size", "short"] if args.estimators == "all" else \
        [e for e in args.estimators.split(",") if e != "report"]
    archs = architectures(args.space)
    data = None
    protocol = GROUND_TRUTHS[args.space].protocols[args.recipe]
    for name in wanted:
        if data is None:
            data = load_split_data(args.space, protocol, Path(args.data) / "fashion-mnist")
        jobs: dict[str, Callable[[], Any]] = {
            "proxies": lambda: score_proxies(args.space, archs, data),
            "size": lambda: score_size(archs),
            "short": lambda: {"short": score_short(args.space, args.recipe, archs, data)},
        }
        if name.startswith("supernet"):
            variant = name.partition(":")[2] or None
            if variant and variant not in VARIANTS:
                parser.error(f"unknown supernet variant {variant!r}; known: {', '.join(VARIANTS)}")
            results = score_supernet(args.space, variant, archs, data, Path(args.cache))
        elif name in jobs:
            results = jobs[name]()
        else:
            parser.error(f"unknown estimator {name!r}")
        for estimator, record in results.items():
            save_scores(args.space, estimator, record)
    if args.time_steps:
        names = args.time_steps.split(",")
        for name in names:
            if name.startswith("supernet:") and variant_of(name) not in VARIANTS:
                parser.error(f"unknown supernet variant in --time-steps: {name!r}")
        if data is None:
            data = load_split_data(args.space, protocol, Path(args.data) / "fashion-mnist")
        timing = time_steps(args.space, names, data, args.rounds)
        atomic_write_text(OUT / args.space / "timing.json", json.dumps(timing, indent=1))
    result = report(args.space, args.recipe, (SEEDS + EXTRA_SEEDS)[:args.truth_seeds])
    if args.plot:
        print(f"plot: {plot(args.space, args.recipe, result)}")
    if args.markdown:
        print(markdown(result))
        print()
        print(cost_markdown(result))
        return
    for name, entry in result["estimators"].items():
        subset = entry.get("connected", entry["all"])
        print(f"{name:24s} tau {subset['kendall_tau']:+.3f} [{subset['tau_90_low']:+.2f}, "
              f"{subset['tau_90_high']:+.2f}] rho {subset['spearman']:+.3f} "
              f"P@10% {subset['precision_top10']:.2f} {entry['seconds_per_arch']:.3f}s/arch")


if __name__ == "__main__":
    main()
