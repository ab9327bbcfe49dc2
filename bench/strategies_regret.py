"""Regret of each search strategy on NAS-Bench-201 (CIFAR-10, 12-epoch table).

Every strategy searches `acc12_cifar10_val` for up to 300 queries (one query = one table
lookup) on 100 seeds; the regret is that of the incumbent's `acc12_cifar10_test` against the
table's best test accuracy, reported after 25, 50, 100, 150 and 300 queries (mean and standard
error over the seeds). Issue 17's targets: the best predictor-guided strategy at most 0.16 at
150 queries and 0.40 at 50; a 100-seed run at 150 queries under 5 minutes on 2 cores.

Each run is kept in results/bench/strategies-regret/NAME.json as soon as it finishes; a run
already there is not repeated (delete its file to rerun it). `--plot` draws the curves into
docs/strategies-regret.png.

Usage: python bench/strategies_regret.py [--data ../shared/data] [--seeds 100] [--queries 300]
       [--workers 2] [--runs random,evolution,...] [--plot]
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from nas.benchmark import BenchmarkResult, read_table, run_benchmark
from nas.text_table import format_table
from search_spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "bench" / "strategies-regret"
PROXIES = ROOT / "results" / "bench" / "proxies-nb201" / "nb201_cells_fmnist.csv"
OBJECTIVE, REPORT = "acc12_cifar10_val", "acc12_cifar10_test"
CHECKPOINTS = (25, 50, 100, 150, 300)
# name shown -> (strategy, options)
RUNS: dict[str, tuple[str, dict]] = {
    "random": ("random", {}),
    "evolution": ("evolution", {}),
    # Plain aging evolution: no best-first neighbourhood completion (and so no restarts).
    "plain-aging-P50-S10": ("evolution", {"exploit": 0.0}),
    "rl": ("rl", {}),
    "tpe": ("tpe", {}),
    "bananas": ("bananas", {}),
    # Measured before the defaults changed: BANANAS' first setting, with its own predictor.
    "bananas-mlp": ("bananas", {"predictor": "mlp", "initial": 10, "parents": 10, "random": 20}),
    "local": ("local", {}),
    "local-initial30": ("local", {"initial": 30}),
    "local-initial50": ("local", {"initial": 50}),
    # White et al.'s form: random restarts.
    "local-random-restarts": ("local", {"restart": "random"}),
    # Zero-cost warm start: the initial archs are the best of a random pool under a proxy
    # score (our synflow, results/bench/proxies-nb201), known without a query.
    "local-synflow-pool1000": ("local", {"warm_start": "synflow", "warm_start_pool": 1000}),
    "local-synflow-pool3000": ("local", {"warm_start": "synflow", "warm_start_pool": 3000}),
    "local-jacov-pool1000": ("local", {"warm_start": "jacov", "warm_start_pool": 1000}),
    "local-params-pool1000": ("local", {"warm_start": "params", "warm_start_pool": 1000}),
    "bananas-synflow-pool1000": ("bananas", {"warm_start": "synflow", "warm_start_pool": 1000}),
    # The predictor learns the normal scores of the ranks (a Gaussian copula), stop 29.
    "bananas-ranks": ("bananas", {"targets": "ranks"}),
    "bananas-ranks-mean": ("bananas", {"targets": "ranks", "acquisition": "mean"}),
    "bananas-synflow-pool1000-ranks": ("bananas", {"warm_start": "synflow",
                                                   "warm_start_pool": 1000,
                                                   "targets": "ranks"}),
    "evolution-synflow-pool1000": ("evolution", {"warm_start": "synflow",
                                                 "warm_start_pool": 1000}),
}
PROXY_COLUMNS = ("synflow", "jacov", "naswot", "params")


def load_table(path: Path, proxies: Path, columns: tuple[str, ...] = (OBJECTIVE, REPORT)):
    """`columns` of the NB201 table with our proxy scores of each cell beside them."""
    import pandas as pd

    frame = pd.read_csv(path, usecols=["arch", *columns]).merge(
        pd.read_csv(proxies, usecols=["arch", *PROXY_COLUMNS]), on="arch", how="left")
    with tempfile.TemporaryDirectory() as tmp:
        merged = Path(tmp) / "nb201_with_proxies.csv"
        frame.to_csv(merged, index=False)
        return read_table(merged, get_space("nb201"), [*columns, *PROXY_COLUMNS])


def run(name: str, table, seeds: int, queries: int, workers: int) -> dict:
    """One run's figures, from its file when it already ran with these settings."""
    path = OUT / f"{name}.json"
    strategy, options = RUNS[name]
    if path.exists():
        saved = json.loads(path.read_text())
        if (saved["seeds"], saved["queries"], saved["options"]) == (seeds, queries, options):
            return saved
    warm = options.get("warm_start")
    result: BenchmarkResult = run_benchmark(
        table, strategy, OBJECTIVE, REPORT, queries=queries, seeds=seeds, options=options,
        workers=workers, cheap=[warm] if warm else [])
    per_seed = np.array(result.per_seed_curves)
    figures = {
        "name": name, "strategy": strategy, "options": options, "seeds": seeds,
        "queries": queries, "cpu_seconds": round(result.cpu_seconds, 2),
        "wall_seconds": round(result.seconds, 2), "curve": result.curve,
        "at": {str(q): {"mean": float(per_seed[:, q - 1].mean()),
                        "stderr": float(per_seed[:, q - 1].std(ddof=1) / math.sqrt(seeds)),
                        "median": float(np.median(per_seed[:, q - 1]))}
               for q in CHECKPOINTS if q <= queries},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.cm.tab20(np.linspace(0, 1, max(len(results), 2)))
    for (name, r), colour in zip(results.items(), colours):
        style = "-" if r["strategy"] in ("bananas", "local") else "--"
        ax.plot(range(1, len(r["curve"]) + 1), r["curve"], style, color=colour, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("queries")
    ax.set_ylabel(f"mean regret of {REPORT} (100 seeds)")
    ax.axhline(0.13, color="grey", linestyle=":", label="best-validation cell (0.13)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated names of RUNS")
    parser.add_argument("--proxies", type=Path, default=PROXIES,
                        help="zero-cost proxy scores of every cell (bench/proxies_nb201.py)")
    parser.add_argument("--plot", action="store_true")
    args = parser.parse_args()
    table = load_table(args.data / "nb201" / "nb201.csv", args.proxies)
    val, test = table.columns[OBJECTIVE], table.columns[REPORT]
    print(f"table: {len(table)} cells; best test {test.max():.2f}; the best validation cell "
          f"tests at {test[np.argmax(val)]:.2f} (regret {test.max() - test[np.argmax(val)]:.2f})")
    results = {}
    for name in args.runs.split(","):
        if name not in RUNS:
            parser.error(f"unknown run {name!r}; known: {', '.join(RUNS)}")
        results[name] = run(name, table, args.seeds, args.queries, args.workers)
    rows = []
    for name, r in results.items():
        row = {"run": name}
        for q, figures in r["at"].items():
            row[f"@{q}"] = f"{figures['mean']:.3f} +- {figures['stderr']:.3f}"
        row["cpu_s"] = r["cpu_seconds"]
        rows.append(row)
    print(f"{args.seeds} seeds; mean regret +- standard error after N queries\n")
    print(format_table(rows))
    if args.plot:
        plot(results, ROOT / "docs" / "strategies-regret.png")


if __name__ == "__main__":
    main()
