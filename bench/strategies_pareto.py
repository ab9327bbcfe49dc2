"""Hypervolume of the found accuracy/latency front on NAS-Bench-201, per strategy and device.

Objective `acc12_cifar10_val` (maximised) against the latency of one device (minimised); the
found front's hypervolume is divided by the table's true front's, both from the true front's
nadir; the gap is 1 - that ratio. Issue 5's target: at 300 queries and 20 seeds nsga2's gap is
at most a third of random search's. Issue 17's: at 150 queries and 100 seeds the
predictor-guided `bananas` gap is at most half of nsga2's, on raspi4, titan_rtx_1 and pixel3.

`bananas-synflow` is bananas given what a search knows without an evaluation: our synflow score
and the device's latency (in a search, from the device's latency table). Its 40 initial archs
are the first non-dominated layers of a random pool of 3,000 under (synflow, latency), and its
acquisition takes the latency as it is instead of predicting it.

Each (run, device) is kept in results/bench/strategies-pareto/ as soon as it finishes, and not
repeated with the same settings.

Usage: python bench/strategies_pareto.py [--data ../shared/data] [--seeds 100] [--queries 150]
       [--strategies nsga2,bananas,bananas-synflow,random] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from strategies_regret import PROXIES, load_table

from nas.benchmark import run_benchmark
from nas.text_table import format_table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "bench" / "strategies-pareto"
OBJECTIVE = "acc12_cifar10_val"
DEVICES = ("latency_ms_raspi4", "latency_ms_titan_rtx_1", "latency_ms_pixel3")
# run name -> (strategy, options, with a warm start on synflow and the device's latency)
RUNS: dict[str, tuple[str, dict, bool]] = {
    "nsga2": ("nsga2", {}, False), "bananas": ("bananas", {}, False),
    "random": ("random", {}, False),
    "bananas-synflow": ("bananas", {"warm_start": "synflow", "warm_start_pool": 3000,
                                    "initial": 40}, True),
    "bananas-ranks-mean": ("bananas", {"targets": "ranks", "acquisition": "mean"}, False),
    "bananas-synflow-ranks": ("bananas", {"warm_start": "synflow", "warm_start_pool": 3000,
                                          "initial": 40, "targets": "ranks"}, True),
    "bananas-synflow-ranks-mean": ("bananas", {"warm_start": "synflow", "warm_start_pool": 3000,
                                               "initial": 40, "targets": "ranks",
                                               "acquisition": "mean"}, True),
}


def gap(table, name: str, device: str, seeds: int, queries: int, workers: int,
        first_seed: int = 0) -> dict:
    """Mean and standard error of the hypervolume gap (%) over seeds `first_seed` onwards,
    cached on disk."""
    start = f"-from{first_seed}" if first_seed else ""
    path = OUT / f"{name}-{device.removeprefix('latency_ms_')}-q{queries}-s{seeds}{start}.json"
    if path.exists():
        return json.loads(path.read_text())
    strategy, options, warm = RUNS[name]
    result = run_benchmark(table, strategy, OBJECTIVE, costs=[device], queries=queries,
                           seeds=list(range(first_seed, first_seed + seeds)),
                           workers=workers, options=options,
                           cheap=[options["warm_start"], device] if warm else [])
    gaps = 100 * (1 - np.array(result.hypervolume_ratios[device]))
    figures = {"strategy": strategy, "options": options, "device": device, "seeds": seeds,
               "first_seed": first_seed,
               "queries": queries,
               "gap_percent": float(gaps.mean()),
               "stderr": float(gaps.std(ddof=1) / math.sqrt(seeds)),
               "cpu_seconds": round(result.cpu_seconds, 2)}
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first-seed .. first-seed + seeds - 1 (fresh seeds confirm "
                             "a setting chosen on seeds 0-99)")
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--strategies", default="nsga2,bananas,bananas-synflow,random",
                        help=f"comma-separated runs: {', '.join(RUNS)}")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--devices", default=",".join(DEVICES),
                        help="comma-separated latency columns (default: all three)")
    parser.add_argument("--proxies", type=Path, default=PROXIES,
                        help="zero-cost proxy scores of every cell (bench/proxies_nb201.py)")
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    unknown = [s for s in strategies if s not in RUNS]
    if unknown:
        parser.error(f"unknown run {unknown[0]!r}; known: {', '.join(RUNS)}")
    if any(d not in DEVICES for d in args.devices.split(",")):
        parser.error(f"--devices: known: {', '.join(DEVICES)}")
    table = load_table(args.data / "nb201" / "nb201.csv", args.proxies, (OBJECTIVE, *DEVICES))
    rows = []
    for device in args.devices.split(","):
        row: dict = {"device": device.removeprefix("latency_ms_")}
        gaps = {}
        for strategy in strategies:
            figures = gap(table, strategy, device, args.seeds, args.queries, args.workers,
                          args.first_seed)
            gaps[strategy] = figures["gap_percent"]
            row[f"gap%_{strategy}"] = f"{figures['gap_percent']:.3f} +- {figures['stderr']:.3f}"
            row[f"cpu_s_{strategy}"] = figures["cpu_seconds"]
        if "nsga2" in gaps:
            for strategy in strategies:
                if strategy != "nsga2":
                    row[f"{strategy}/nsga2"] = round(gaps[strategy] / gaps["nsga2"], 3)
        rows.append(row)
    print(f"{args.queries} queries x {args.seeds} seeds; gap = 1 - found/true hypervolume, "
          f"mean +- standard error\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
