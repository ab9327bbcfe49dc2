"""Ranking quality of the `mobile` supernet on Fashion-MNIST (issue 4's target).

20 `mobile` subnets spread over the space's FLOPs range (20 equal-width FLOPs bins between
the smallest and the largest arch; one random arch per bin, drawn from a pool that covers the
range) are scored twice: by the `supernet` estimator (weights inherited from the supernet
trained with the default recipe, BatchNorm recalibrated, 2,000 validation images) and by
standalone training from scratch (the same recipe for all; the `train` estimator). Reported:
Kendall tau and Spearman between the two, the noise floor (3 of the subnets trained again
with another seed: seed-to-seed differences, and the tau two seeds would reach with that
noise), the supernet's training time, the standalone training times and the time to score one
subnet with the supernet estimator.

Runs resume: every result is written to --out as it is made. Standalone runs can be split
over processes (`--part standalone --shard 0/2` and `--shard 1/2`, then `--part report`).
Run from the repository root:

    python bench/supernet_ranking.py [--data ../shared/data] [--out results/bench-supernet]
        [--part all|supernet|standalone|report] [--shard I/N] [--threads 1] [--epochs 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from scipy.stats import kendalltau, spearmanr  # noqa: E402

from estimators.accuracy import TrainEstimator  # noqa: E402
from estimators.data import load_data  # noqa: E402
from estimators.files import atomic_write_text  # noqa: E402
from estimators.flops import FlopsEstimator  # noqa: E402
from estimators.supernet import (  # noqa: E402
    SupernetEstimator,  # noqa: E402
    SupernetRecipe,
    train_supernet,
)
from estimators.train import TrainRecipe  # noqa: E402
from search_spaces import Arch, SearchSpace, get_space  # noqa: E402
from search_spaces.supernets.dead_taps import dead_taps_trimmed  # noqa: E402

SPACE = "mobile"
SUBNETS = 20
NOISE_SUBNETS = 3  # trained again with another seed
SEED = 0
STANDALONE = TrainRecipe(epochs=1.0, batch_size=128, lr=0.1, train_images=30_000)  # --epochs


def biased_pool(space: SearchSpace, count: int, seed: int) -> list[Arch]:
    """Archs from the smallest to the largest: each draws a size q in [0, 1] and picks, per
    dimension, the option near q of the way along (plus noise), so the FLOPs range is covered
    (uniform samples crowd the middle)."""
    rng = np.random.default_rng(seed)
    pool = [space.min_arch(), space.max_arch()]
    for _ in range(count):
        q = rng.random()
        genes = {}
        for dim in space.dimensions:
            n = len(dim.options)
            index = int(np.clip(np.rint(q * (n - 1) + rng.normal(0, 0.6)), 0, n - 1))
            genes[dim.name] = dim.options[index]
        pool.append(space.make(genes))
    return list(dict.fromkeys(pool))


def pick_subnets(space: SearchSpace, count: int, seed: int) -> list[tuple[Arch, float]]:
    """One random arch per equal-width FLOPs bin (the nearest to the bin when it is empty)."""
    flops = FlopsEstimator()
    pool = [(a, flops(a)["flops"]) for a in biased_pool(space, 4000, seed)]
    low, high = min(f for _, f in pool), max(f for _, f in pool)
    edges = np.linspace(low, high, count + 1)
    rng = np.random.default_rng(seed + 1)
    chosen: list[tuple[Arch, float]] = []
    for i in range(count):
        inside = [p for p in pool if edges[i] <= p[1] <= edges[i + 1] and p not in chosen]
        if not inside:
            centre = (edges[i] + edges[i + 1]) / 2
            inside = [min((p for p in pool if p not in chosen), key=lambda p: abs(p[1] - centre))]
        chosen.append(inside[int(rng.integers(len(inside)))])
    return chosen


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def save_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


def part_supernet(data, subnets, out: Path, cache: Path) -> None:
    recipe = SupernetRecipe()
    start = time.perf_counter()
    cpu = time.process_time()
    trained = train_supernet(SPACE, data, recipe, cache_dir=cache, log=print)
    record = load_json(out / "supernet.json")
    if not trained.reused or "train_seconds" not in record:
        record = {"recipe": recipe.as_dict(), "train_seconds": time.perf_counter() - start,
                  "train_cpu_seconds": time.process_time() - cpu,
                  "history": trained.history, "threads": torch.get_num_threads(),
                  "load_average": os.getloadavg()}
    estimator = SupernetEstimator(trained, data)
    estimator(subnets[0][0])  # warm-up: resizes and caches the images once
    estimator._cache.clear()
    scores = {}
    for arch, _ in subnets:
        cpu = time.process_time()
        metrics = estimator(arch)
        scores[arch.key] = {"acc": metrics["acc"], "seconds": metrics["supernet_seconds"],
                            "cpu_seconds": time.process_time() - cpu}
        print(f"supernet {metrics['acc']:.2f} in {metrics['supernet_seconds']:.2f}s {arch.key}",
              flush=True)
    record["scores"] = scores
    record["eval_threads"] = torch.get_num_threads()
    record["eval_load_average"] = os.getloadavg()
    save_json(out / "supernet.json", record)


def part_standalone(data, subnets, out: Path, shard: tuple[int, int]) -> None:
    """Runs are keyed by arch, seed and recipe, so several recipes can share one --out."""
    jobs = [(arch, SEED) for arch, _ in subnets]
    jobs += [(subnets[i][0], SEED + 1) for i in noise_indices(len(subnets))]
    for index, (arch, seed) in enumerate(jobs):
        if index % shard[1] != shard[0]:
            continue
        digest = hashlib.sha256(arch.key.encode()).hexdigest()[:12]
        path = out / "standalone" / f"{digest}-s{seed}.json"
        done = load_json(path)
        if done.get("key") == arch.key and done.get("recipe") == STANDALONE.describe():
            continue
        cpu = time.process_time()
        with dead_taps_trimmed():  # exact; only skips kernel taps that read padding
            metrics = TrainEstimator(data, STANDALONE, seed=seed)(arch)
        record = {"key": arch.key, "seed": seed, "recipe": STANDALONE.describe(),
                  "acc": metrics["acc"], "train_seconds": metrics["train_seconds"],
                  "cpu_seconds": time.process_time() - cpu, "load_average": os.getloadavg()}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(path, record)
        print(f"standalone seed {seed}: {metrics['acc']:.2f} in "
              f"{metrics['train_seconds']:.0f}s {arch.key}", flush=True)


def noise_indices(count: int) -> list[int]:
    """Low, middle and high FLOPs subnets."""
    return [0, count // 2, count - 1]


def simulated_tau(values: np.ndarray, sigma: float, seed: int = 0, trials: int = 2000) -> float:
    """Median Kendall tau between two noisy copies (noise sd `sigma`) of `values`."""
    rng = np.random.default_rng(seed)
    taus = [kendalltau(values + rng.normal(0, sigma, len(values)),
                       values + rng.normal(0, sigma, len(values)))[0] for _ in range(trials)]
    return float(np.median(taus))


def part_report(subnets, out: Path) -> dict[str, Any]:
    supernet = load_json(out / "supernet.json")
    runs = [load_json(p) for p in sorted((out / "standalone").glob("*.json"))]
    alone = {(r["key"], r["seed"]): r for r in runs if r.get("recipe") == STANDALONE.describe()}
    rows = []
    for arch, flops in subnets:
        run = alone.get((arch.key, SEED))
        score = supernet.get("scores", {}).get(arch.key)
        if run is None or score is None:
            continue
        rows.append({"key": arch.key, "flops": flops, "supernet_acc": score["acc"],
                     "standalone_acc": run["acc"], "standalone_seconds": run["train_seconds"],
                     "standalone_cpu_seconds": run["cpu_seconds"],
                     "supernet_eval_seconds": score["seconds"],
                     "supernet_eval_cpu_seconds": score["cpu_seconds"]})
    report: dict[str, Any] = {"subnets": len(rows), "rows": rows}
    if len(rows) >= 3:
        a = np.array([r["supernet_acc"] for r in rows])
        b = np.array([r["standalone_acc"] for r in rows])
        report["kendall_tau"] = float(kendalltau(a, b)[0])
        report["spearman"] = float(spearmanr(a, b)[0])
        report["standalone_spread"] = float(b.max() - b.min())
        report["supernet_spread"] = float(a.max() - a.min())
        report["kendall_tau_standalone_vs_flops"] = float(
            kendalltau(b, [r["flops"] for r in rows])[0])
        report["kendall_tau_supernet_vs_flops"] = float(
            kendalltau(a, [r["flops"] for r in rows])[0])
    pairs = []
    for i in noise_indices(len(subnets)):
        key = subnets[i][0].key
        if (key, SEED) in alone and (key, SEED + 1) in alone:
            pairs.append({"key": key, "seed0": alone[(key, SEED)]["acc"],
                          "seed1": alone[(key, SEED + 1)]["acc"]})
    if pairs:
        diffs = np.array([p["seed0"] - p["seed1"] for p in pairs])
        sigma = float(np.sqrt(np.mean(diffs ** 2) / 2))  # per-run sd from paired differences
        report["noise"] = {"pairs": pairs, "mean_abs_seed_difference": float(np.abs(diffs).mean()),
                           "max_abs_seed_difference": float(np.abs(diffs).max()),
                           "seed_sd": sigma}
        if len(rows) >= 3:
            b = np.array([r["standalone_acc"] for r in rows])
            report["noise"]["tau_two_seeds_would_reach"] = simulated_tau(b, sigma)
    for name in ("train_seconds", "train_cpu_seconds", "recipe", "history", "load_average",
                 "threads", "eval_threads"):
        if name in supernet:
            report[f"supernet_{name}"] = supernet[name]
    if rows:
        report["supernet_eval_seconds_median"] = float(
            np.median([r["supernet_eval_seconds"] for r in rows]))
        report["supernet_eval_seconds_max"] = float(
            max(r["supernet_eval_seconds"] for r in rows))
        report["supernet_eval_cpu_seconds_median"] = float(
            np.median([r["supernet_eval_cpu_seconds"] for r in rows]))
        report["standalone_seconds_median"] = float(
            np.median([r["standalone_seconds"] for r in rows]))
        report["standalone_seconds_total"] = float(
            sum(r["train_seconds"] for r in alone.values()))
    report["standalone_recipe"] = STANDALONE.describe()
    save_json(out / "report.json", report)
    return report


def main() -> None:
    global STANDALONE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"),
                        help="reference data folder (holds fashion-mnist/)")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench-supernet"))
    parser.add_argument("--cache", default=None, help="supernet cache (default: OUT/cache)")
    parser.add_argument("--part", default="all",
                        choices=("all", "supernet", "standalone", "report"))
    parser.add_argument("--shard", default="0/1", help="I/N: this process's share of the "
                                                       "standalone runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--epochs", type=float, default=STANDALONE.epochs,
                        help=f"standalone training epochs (default {STANDALONE.epochs:g})")
    args = parser.parse_args()
    STANDALONE = dataclasses.replace(STANDALONE, epochs=args.epochs)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shard = tuple(int(v) for v in args.shard.split("/"))
    space = get_space(SPACE)
    subnets = pick_subnets(space, SUBNETS, SEED)
    save_json(out / "subnets.json", {"subnets": [{"key": a.key, "flops": f} for a, f in subnets]})
    if args.part in ("all", "supernet", "standalone"):
        data = load_data("fashion-mnist", Path(args.data) / "fashion-mnist")
        if args.part in ("all", "supernet"):
            part_supernet(data, subnets, out, Path(args.cache or out / "cache"))
        if args.part in ("all", "standalone"):
            part_standalone(data, subnets, out, (shard[0], shard[1]))
    report = part_report(subnets, out)
    summary = {k: v for k, v in report.items() if k not in ("rows", "supernet_history")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
