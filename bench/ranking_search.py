"""The search's own pick against the ground truth (issue 13, deliverable 5).

`nas search` with every default (nsga2, the `supernet` estimator, 100 trials, seed 0) on a
reduced space of bench/ranking_groundtruth.py; its top-1 architecture (the best estimated
accuracy among the trials) is trained standalone with the ground-truth recipe (2 seeds, or
`--truth-seeds N`, compared with the architectures' means over the same N seeds), and
its mean test accuracy is placed among the ground-truth architectures (percentile: the share
of them it beats).

- `nb201`: `--option resolution=16` (the ground truth's input size);
- `mobile`: `--option resolution=arch --budget <half the largest subnet's FLOPs>-flops`.

Resumable: the search resumes from its run folder and each standalone run is kept.

    python bench/ranking_search.py --space nb201 --recipe e8
    python bench/ranking_search.py --space nb201 --recipe e24 --run search-blend
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ranking_groundtruth import (  # noqa: E402
    GROUND_TRUTHS,
    ROOT,
    ground_truth,
    load_json,
    run_path,
    train_one,
)

from estimators.files import atomic_write_text  # noqa: E402
from estimators.flops import FlopsEstimator  # noqa: E402
from nas.cli import main as nas_main  # noqa: E402

OUT = ROOT / "results" / "bench" / "ranking-search"


def search_args(space: str, run: Path) -> list[str]:
    truth = GROUND_TRUTHS[space]
    args = ["search", "--space", str(ROOT / "bench" / "spaces" / truth.space_file),
            "--trials", "100", "--seed", "0", "--quiet", "--data-dir",
            str(DATA / "fashion-mnist"), "--no-anchors"]
    if truth.data_resolution:
        args += ["--option", f"resolution={truth.data_resolution}"]
    else:
        largest = FlopsEstimator()(truth.space().max_arch())["flops"]
        args += ["--option", "resolution=arch", "--budget", f"{largest / 2 / 1e6:.4f}M-flops"]
    if (run / "checkpoint.json").exists():
        return ["search", "--resume", str(run), "--quiet"]
    return args + ["--out", str(run)]


def top1(run: Path) -> tuple[str, float]:
    with open(run / "trials.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("acc") not in (None, "")]
    best = max(rows, key=lambda r: float(r["acc"]))
    return best["key"], float(best["acc"])


def main() -> None:
    global DATA
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", required=True, choices=sorted(GROUND_TRUTHS))
    parser.add_argument("--recipe", required=True, help="the ground-truth recipe")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--run", default="search",
                        help="the search's folder under results/bench/ranking-search/SPACE/ "
                             "(a new name keeps an earlier search's record: 'search' ran "
                             "before the proxy blend, 'search-blend' with it)")
    parser.add_argument("--truth-seeds", type=int, default=2, choices=(2, 4, 6, 8, 10),
                        help="seeds the pick is trained with and the ground truth is averaged "
                             "over (seeds 0 .. N-1)")
    args = parser.parse_args()
    DATA = Path(args.data)
    out = OUT / args.space
    run = out / args.run
    out.mkdir(parents=True, exist_ok=True)
    summary_path = run / "summary.json"
    if not summary_path.exists() or load_json(summary_path).get("trials", 0) < 100:
        code = nas_main(search_args(args.space, run))
        if code != 0:
            raise SystemExit(code)
    key, estimate = top1(run)
    truth = GROUND_TRUTHS[args.space]
    arch = truth.space().parse(key)
    accs = []
    seeds = tuple(range(args.truth_seeds))
    for seed in seeds:
        path = run_path(out / args.recipe, arch, seed)
        if load_json(path).get("protocol") != truth.protocols[args.recipe].describe():
            train_one(args.space, args.recipe, arch, seed, path, DATA / "fashion-mnist")
        accs.append(load_json(path)["acc"])
    rows = ground_truth(args.space, args.recipe, seeds)
    means = np.array([r["acc"] for r in rows])
    pick = float(np.mean(accs))
    result = {"space": args.space, "recipe": args.recipe, "search": str(run.relative_to(ROOT)),
              "top1": key, "estimated_acc": estimate, "standalone_accs": accs,
              "standalone_acc": pick, "ground_truth_n": len(rows),
              "percentile": float(100 * np.mean(means < pick)),
              "ground_truth_best": float(means.max()),
              "ground_truth_median": float(np.median(means))}
    suffix = ("" if args.run == "search" else f"-{args.run}") + \
        ("" if args.truth_seeds == 2 else f"-{args.truth_seeds}seeds")
    atomic_write_text(out / f"report-{args.recipe}{suffix}.json", json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


DATA = ROOT.parent / "shared" / "data"

if __name__ == "__main__":
    main()
