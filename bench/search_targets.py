"""The main job's targets: `nas search --space mobile --budget 300M-flops` on this machine.

1. First run with an empty cache (the supernet is trained on Fashion-MNIST inside the run),
   then a second run that reuses the cached supernet: wall time of each, and whether every
   Pareto row is within the budget.
2. The best architecture found (rank 1 of the first run's front: the most accurate within
   300M FLOPs) and the `mobilenetv2` reference `mobilenet_v2` (300M FLOPs) trained standalone
   with one recipe on Fashion-MNIST, scored on the test split, for each seed.

Prints the figures and the commands that produced them. The defaults are the issue's; the
machine's load average is printed beside the times (a shared 2-core machine drifts 2x).

    python bench/search_targets.py [--data-dir ../shared/data/fashion-mnist] [--epochs 2]
        [--seeds 0] [--skip-search RUN] [--cache-dir DIR] [--extra ...]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET = 300e6


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run_search(argv: list[str], env: dict[str, str]) -> tuple[dict, float]:
    command = [sys.executable, "-m", "nas", "search", *argv, "--json", "--quiet"]
    print("$ " + shlex.join(["nas", "search", *argv]), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"nas search failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), seconds


def report_run(label: str, payload: dict, seconds: float) -> None:
    front = payload["pareto"]
    within = all(r["flops"] <= BUDGET for r in front)
    best = front[0] if front else {}
    print(f"{label}: {seconds / 60:.2f} min wall (load {load_average()}), {payload['trials']} "
          f"trials, front {len(front)}, hypervolume {payload['hypervolume']:.4f}, every Pareto "
          f"row within 300M flops: {within}; best {best.get('key')} acc "
          f"{best.get('acc', float('nan')):.2f} at {best.get('flops', 0) / 1e6:.1f}M flops",
          flush=True)


def standalone(key: str, data_dir: str, epochs: float, seed: int) -> dict:
    """Train `key` from scratch on Fashion-MNIST (train split) and score the test split."""
    import torch

    from estimators.accuracy import build_for_data
    from estimators.data import load_data
    from estimators.flops import FlopsEstimator
    from estimators.train import TrainRecipe, train_model
    from search_spaces import Arch

    torch.set_num_threads(1)
    data = load_data("fashion-mnist", data_dir, seed=0)
    arch = Arch.decode(key)
    model = build_for_data(arch, data, seed, data.resolution)
    start = time.perf_counter()
    result = train_model(model, data, TrainRecipe(epochs=epochs), seed, "test", data.resolution)
    return {"key": key, "seed": seed, "test_acc": result.acc,
            "flops": FlopsEstimator()(arch)["flops"], "minutes": (time.perf_counter() - start) / 60}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" /
                                                  "fashion-mnist"))
    parser.add_argument("--cache-dir", help="supernet cache (default: a new empty folder)")
    parser.add_argument("--first", metavar="RUN",
                        help="a first run already made (its supernet in --cache-dir): only "
                             "the second run is timed")
    parser.add_argument("--skip-search", metavar="RUN",
                        help="take the best architecture from this run instead of searching")
    parser.add_argument("--epochs", type=float, default=2.0,
                        help="standalone training epochs (same recipe for both networks)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--skip-standalone", action="store_true")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="more `nas search` options, e.g. --workers 2")
    args = parser.parse_args()

    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    out = Path(tempfile.mkdtemp(prefix="nas-targets-"))
    env["NAS_CACHE_DIR"] = args.cache_dir or str(out / "cache")
    print(f"supernet cache {env['NAS_CACHE_DIR']}, runs under {out}", flush=True)
    if args.skip_search:
        best_key = _front(Path(args.skip_search))[0]["key"]
    else:
        base = ["--space", "mobile", "--budget", "300M-flops", "--data-dir", args.data_dir,
                *args.extra]
        if args.first:  # a first run made before, whose supernet is in --cache-dir
            best_key = _front(Path(args.first))[0]["key"]
            t1 = None
        else:
            first, t1 = run_search(base + ["--out", str(out / "first")], env)
            report_run("first run (supernet trained)", first, t1)
            best_key = first["pareto"][0]["key"]
        second, t2 = run_search(base + ["--out", str(out / "second"), "--seed", "1"], env)
        report_run("second run (cached supernet, seed 1)", second, t2)
        print(f"targets: first run < 15 min: {None if t1 is None else t1 < 900}; second run "
              f"< 2 min: {t2 < 120}", flush=True)
    if args.skip_standalone:
        return 0
    from search_spaces import get_space

    reference = get_space("mobilenetv2").reference_archs()["mobilenet_v2"].key
    print(f"\nstandalone training, {args.epochs:g} epochs, same recipe, Fashion-MNIST test split")
    rows = []
    for seed in args.seeds:
        for key in (best_key, reference):
            row = standalone(key, args.data_dir, args.epochs, seed)
            rows.append(row)
            print(f"  seed {seed}: {row['key']} ({row['flops'] / 1e6:.1f}M flops): test acc "
                  f"{row['test_acc']:.2f} % ({row['minutes']:.1f} min)", flush=True)
    found = [r["test_acc"] for r in rows if r["key"] == best_key]
    ref = [r["test_acc"] for r in rows if r["key"] == reference]
    print(f"mean test acc: found {sum(found) / len(found):.2f} %, mobilenet_v2 "
          f"{sum(ref) / len(ref):.2f} %; found more accurate: {sum(found) > sum(ref)}")
    return 0


def _front(run: Path) -> list[dict]:
    import csv

    with open(run / "pareto.csv", newline="") as handle:
        return list(csv.DictReader(handle))


if __name__ == "__main__":
    sys.exit(main())
