"""Hypervolume of the found accuracy/latency front on NAS-Bench-201: nsga2 against random.

Objective `acc12_cifar10_val` (maximised) against the latency of one device (minimised); the
found front's hypervolume is divided by the table's true front's, both from the true front's
nadir. Target (issue 5): at 300 queries and 20 seeds, nsga2's gap (1 - ratio) is at most a third
of random search's, on raspi4, titan_rtx_1 and pixel3. Random search at 1,000 queries is shown
for scale.

Usage: python bench/strategies_pareto.py [--data ../shared/data] [--seeds 20] [--queries 300]
       [--seed-start 0] [--workers 1]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.benchmark import read_table, run_benchmark
from nas.text_table import format_table
from search_spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVE = "acc12_cifar10_val"
DEVICES = ("latency_ms_raspi4", "latency_ms_titan_rtx_1", "latency_ms_pixel3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--long-queries", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    table = read_table(args.data / "nb201" / "nb201.csv", get_space("nb201"),
                       [OBJECTIVE, *DEVICES])
    seeds = range(args.seed_start, args.seed_start + args.seeds)
    runs = {"nsga2": ("nsga2", args.queries), "random": ("random", args.queries),
            f"random@{args.long_queries}": ("random", args.long_queries)}
    rows = []
    for device in DEVICES:
        gaps, seconds = {}, {}
        for name, (strategy, queries) in runs.items():
            result = run_benchmark(table, strategy, OBJECTIVE, costs=[device], queries=queries,
                                   seeds=seeds, workers=args.workers)
            gaps[name] = 100 * (1 - result.hypervolume_ratio(device))
            seconds[name] = result.cpu_seconds
        rows.append({"device": device.removeprefix("latency_ms_"),
                     **{f"gap%_{k}": round(v, 3) for k, v in gaps.items()},
                     "nsga2/random": round(gaps["nsga2"] / gaps["random"], 3),
                     "nsga2_cpu_s": round(seconds["nsga2"], 1)})
    print(f"{args.queries} queries x {args.seeds} seeds (from {args.seed_start}); "
          f"gap = 1 - found/true hypervolume\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
