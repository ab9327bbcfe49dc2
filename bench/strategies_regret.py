"""Regret of each search strategy on NAS-Bench-201 (CIFAR-10, 12-epoch table).

Every strategy searches `acc12_cifar10_val` for 150 queries (one query = one table lookup) on
100 seeds; the regret is that of the incumbent's `acc12_cifar10_test` against the table's best
test accuracy. Targets (issue 5): evolution mean regret <= 0.30; rl and tpe beat random by more
than twice the standard error of the difference; each 100-seed run under 60 s.

Usage: python bench/strategies_regret.py [--data ../shared/data] [--seeds 100] [--queries 150]
       [--workers 1] [--strategies random,evolution,...]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from nas.benchmark import BenchmarkResult, read_table, run_benchmark
from nas.text_table import format_table
from search_spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVE, REPORT = "acc12_cifar10_val", "acc12_cifar10_test"
# name shown -> (strategy, options)
RUNS: dict[str, tuple[str, dict]] = {
    "random": ("random", {}),
    "evolution": ("evolution", {}),
    # Plain aging evolution: no best-first neighbourhood completion (and so no restarts).
    "plain-aging-P50-S10": ("evolution", {"exploit": 0.0}),
    "plain-aging-P20-S5": ("evolution", {"exploit": 0.0, "population": 20, "sample_size": 5}),
    "rl": ("rl", {}),
    "tpe": ("tpe", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--strategies", default=",".join(RUNS),
                        help="comma-separated names of RUNS")
    args = parser.parse_args()
    table = read_table(args.data / "nb201" / "nb201.csv", get_space("nb201"),
                       [OBJECTIVE, REPORT])
    val, test = table.columns[OBJECTIVE], table.columns[REPORT]
    print(f"table: {len(table)} cells; best test {test.max():.2f}; the best validation cell "
          f"tests at {test[np.argmax(val)]:.2f} (regret {test.max() - test[np.argmax(val)]:.2f})")
    print(f"{args.queries} queries x {args.seeds} seeds, {args.workers} worker(s)\n")
    results: dict[str, BenchmarkResult] = {}
    for name in args.strategies.split(","):
        strategy, options = RUNS[name]
        results[name] = run_benchmark(table, strategy, OBJECTIVE, REPORT, queries=args.queries,
                                      seeds=args.seeds, options=options, workers=args.workers)
    rows = []
    baseline = results.get("random")
    for name, r in results.items():
        row = {"strategy": name, "mean_regret": round(r.mean_regret, 3),
               "stderr": round(r.stderr, 3), "median": round(r.median_regret, 3),
               "at_50": round(r.curve[min(49, len(r.curve) - 1)], 3),
               "at_100": round(r.curve[min(99, len(r.curve) - 1)], 3),
               "seconds": round(r.seconds, 1), "cpu_s": round(r.cpu_seconds, 1)}
        if baseline is not None:
            # How many standard errors of the difference this strategy is ahead of random.
            gap = baseline.mean_regret - r.mean_regret
            row["ahead_of_random_in_stderr"] = "-" if r is baseline else \
                round(gap / math.hypot(baseline.stderr, r.stderr), 1)
        rows.append(row)
    print(format_table(rows))


if __name__ == "__main__":
    main()
