"""Ranking quality of the performance predictors (`estimators.predictors`) against the number
of training archs on NAS-Bench-201 (CIFAR-10).

Two parts, each over `--draws` random draws (draw d uses seed d for the split and the predictor):
1. table: the 15,625 cells of `nb201/nb201.csv`, target `acc12_cifar10_val` (12-epoch
   schedule). Per draw a test set of `--test` (2,000) cells, and n training cells disjoint from
   it (the n = 20 cells are among the n = 50 ones, and so on: the same test set for every n).
2. zc: the 491 CIFAR-10 cells of `nb201/naslib_zc_nb201.json`, target NASLib's 200-epoch
   `val_accuracy`; n training cells, the other 491 - n the test set. Each predictor without
   and with the nine zero-cost proxy scores as extra features, as published (`+zc`) and
   through sign(x) log(1 + |x|) (`+log-zc`: the scores are heavy-tailed, e.g. grasp spans
   -1,712 to 28,843, and the predictor standardises features linearly). As baselines, the
   Kendall tau of each proxy's own score on the test cells: the proxy that ranks the training
   cells best in that draw ("chosen on train") and the proxy best on average over the test sets
   (an oracle choice, an upper bound for one proxy). NASLib stores a failed score (jacov and
   epe_nas on the 7 cells with no path from input to output) as -1e8: as a feature it is read
   as missing (the predictor puts the training mean there); as a proxy's own ranking it stays
   the lowest score.

Figures: Kendall tau (scipy, tau-b) of the predicted mean with the true value on the test
cells, mean and standard error over the draws; the same among the test cells in the top 10% by
true value (how well the good cells are ordered among themselves); the median seconds of one
fit plus predict (one core). Results go to `results/bench/predictors-nb201/report.json`.

Usage: OMP_NUM_THREADS=1 python bench/predictors_nb201.py [--data ../shared/data] [--draws 20]
       [--ns 20,50,100,200] [--test 2000] [--predictors mlp,gp] [--parts table,zc] [--markdown]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from estimators.files import atomic_path  # noqa: E402
from estimators.predictors import PREDICTORS, make_predictor  # noqa: E402
from nas.benchmark import read_table  # noqa: E402
from nas.text_table import format_table  # noqa: E402
from search_spaces import Arch, SearchSpace, get_space  # noqa: E402

TARGET = "acc12_cifar10_val"
PROXIES = ("snip", "jacov", "grad_norm", "plain", "epe_nas", "fisher", "grasp", "l2_norm",
           "synflow")
FAILED = -1e7  # NASLib writes -1e8 for a score it could not compute
TOP = 0.10
# NASLib's op index order in its cell tuples, and the official string (see the data README).
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
OUT = ROOT / "results" / "bench" / "predictors-nb201" / "report.json"


def naslib_to_official(key: str) -> str:
    a = [NASLIB_OPS[int(t)] for t in key.strip("()").split(",")]
    return f"|{a[0]}~0|+|{a[1]}~0|{a[3]}~1|+|{a[2]}~0|{a[4]}~1|{a[5]}~2|"


def tau(a: np.ndarray, b: np.ndarray) -> float:
    return float(kendalltau(a, b).statistic)


def top_tau(predicted: np.ndarray, true: np.ndarray) -> float:
    """Kendall tau among the cells in the top `TOP` share by true value."""
    top = np.argsort(-true, kind="stable")[:max(2, math.ceil(TOP * len(true)))]
    return tau(predicted[top], true[top])


def score(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {"tau": tau(predicted, true), "top_tau": top_tau(predicted, true)}


def fit_predict(name: str, space: SearchSpace, seed: int, train: Sequence[Arch],
                y_train: np.ndarray, test: Sequence[Arch], y_test: np.ndarray,
                f_train: np.ndarray | None = None,
                f_test: np.ndarray | None = None) -> dict[str, float]:
    start = time.perf_counter()
    model = make_predictor(name, space, seed=seed).fit(train, y_train, features=f_train)
    mean = model.predict(test, features=f_test).mean
    return {**score(mean, y_test), "seconds": time.perf_counter() - start}


def summarise(draws: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"draws": len(draws)}
    for key in ("tau", "top_tau"):
        values = np.array([d[key] for d in draws], dtype=float)
        out[key] = float(np.nanmean(values))
        out[f"{key}_stderr"] = (float(np.nanstd(values, ddof=1) / math.sqrt(np.isfinite(
            values).sum())) if np.isfinite(values).sum() > 1 else math.nan)
        if not np.isfinite(values).all():
            out[f"{key}_undefined_draws"] = int((~np.isfinite(values)).sum())
    if "seconds" in draws[0]:
        out["median_seconds"] = statistics.median(d["seconds"] for d in draws)
    if "proxy" in draws[0]:
        chosen = [d["proxy"] for d in draws]
        out["chosen"] = {p: chosen.count(p) for p in sorted(set(chosen), key=chosen.count,
                                                            reverse=True)}
    return out


def run_table(args: argparse.Namespace, space: SearchSpace) -> dict[str, Any]:
    table = read_table(args.data / "nb201" / "nb201.csv", space, [TARGET])
    archs, y = table.archs, table.columns[TARGET]
    runs: dict[str, dict[int, list[dict[str, float]]]] = {
        p: {n: [] for n in args.ns} for p in args.predictors}
    for draw in range(args.draws):
        order = np.random.default_rng(draw).permutation(len(archs))
        test = order[:args.test]
        test_archs = [archs[i] for i in test]
        for n in args.ns:
            train = order[args.test:args.test + n]
            for name in args.predictors:
                runs[name][n].append(fit_predict(name, space, draw, [archs[i] for i in train],
                                                 y[train], test_archs, y[test]))
        print(f"  [table] draw {draw + 1}/{args.draws}", flush=True)
    return {"target": TARGET, "cells": len(archs), "test": args.test,
            "methods": {name: {str(n): summarise(r) for n, r in by_n.items()}
                        for name, by_n in runs.items()}}


def load_zc(path: Path, space: SearchSpace) -> tuple[list[Arch], np.ndarray, np.ndarray]:
    """The NASLib cells, their 200-epoch `val_accuracy` and raw proxy scores (cells x 9)."""
    entries = json.loads(path.read_text())["nasbench201"]["cifar10"]
    archs = [space.parse(naslib_to_official(key)) for key in entries]
    y = np.array([e["val_accuracy"] for e in entries.values()], dtype=float)
    scores = np.array([[e[p] for p in PROXIES] for e in entries.values()], dtype=float)
    return archs, y, scores


def run_zc(args: argparse.Namespace, space: SearchSpace) -> dict[str, Any]:
    archs, y, scores = load_zc(args.data / "nb201" / "naslib_zc_nb201.json", space)
    features = np.where(np.isfinite(scores) & (scores > FAILED), scores, np.nan)
    variants = {"+zc": features, "+log-zc": np.sign(features) * np.log1p(np.abs(features))}
    ranking = np.where(np.isfinite(scores), scores, -np.inf)  # a failed score ranks last
    methods = [f"{p}{suffix}" for p in args.predictors for suffix in ("", *variants)]
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        m: {n: [] for n in args.ns} for m in methods + ["proxy chosen on train"]}
    per_proxy: dict[str, dict[int, list[dict[str, float]]]] = {
        p: {n: [] for n in args.ns} for p in PROXIES}
    for draw in range(args.draws):
        order = np.random.default_rng(draw).permutation(len(archs))
        for n in args.ns:
            train, test = order[:n], order[n:]
            tr_archs, te_archs = [archs[i] for i in train], [archs[i] for i in test]
            for name in args.predictors:
                runs[name][n].append(fit_predict(name, space, draw, tr_archs, y[train],
                                                 te_archs, y[test]))
                for suffix, f in variants.items():
                    runs[f"{name}{suffix}"][n].append(fit_predict(
                        name, space, draw, tr_archs, y[train], te_archs, y[test], f[train],
                        f[test]))
            on_train = [tau(ranking[train, j], y[train]) for j in range(len(PROXIES))]
            for j, proxy in enumerate(PROXIES):
                per_proxy[proxy][n].append(score(ranking[test, j], y[test]))
            best = int(np.nanargmax(on_train))
            runs["proxy chosen on train"][n].append(
                {**per_proxy[PROXIES[best]][n][-1], "proxy": PROXIES[best]})
        print(f"  [zc] draw {draw + 1}/{args.draws}", flush=True)
    result = {name: {str(n): summarise(r) for n, r in by_n.items()}
              for name, by_n in runs.items()}
    proxies = {p: {str(n): summarise(r) for n, r in by_n.items()} for p, by_n in per_proxy.items()}
    oracle = {}
    for n in args.ns:  # the proxy with the best mean tau over this n's test sets
        best = max(PROXIES, key=lambda p: proxies[p][str(n)]["tau"])
        oracle[str(n)] = {**proxies[best][str(n)], "proxy": best}
    result["best proxy (oracle)"] = oracle
    failed = {p: int((scores[:, j] <= FAILED).sum()) for j, p in enumerate(PROXIES)
              if (scores[:, j] <= FAILED).any()}
    return {"target": "val_accuracy (cifar10, 200 epochs)", "cells": len(archs),
            "failed_scores": failed, "methods": result, "proxies": proxies}


def rows(part: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for method, by_n in part["methods"].items():
        for n, s in by_n.items():
            row = {"method": method, "n_train": int(n), "draws": s["draws"],
                   "tau": round(s["tau"], 3), "stderr": round(s["tau_stderr"], 3),
                   "top10_tau": round(s["top_tau"], 3),
                   "top10_stderr": round(s["top_tau_stderr"], 3),
                   "median_s": round(s["median_seconds"], 3) if "median_seconds" in s else "-"}
            if "proxy" in s:
                row["method"] = f"{method}: {s['proxy']}"
            if "chosen" in s:
                top, count = next(iter(s["chosen"].items()))
                row["method"] = f"{method}: {top} {count}/{s['draws']}"
            out.append(row)
    return out


def markdown(part: dict[str, Any], ns: Sequence[int]) -> str:
    """One row per method, one column per n: tau ± stderr / top-10% tau ± stderr."""
    head = ["method", *(f"n = {n}" for n in ns), f"s per fit+predict (n = {ns[-1]})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, by_n in part["methods"].items():
        cells = [f"`{method}`" if method.split("+")[0] in PREDICTORS else method]
        for n in ns:
            s = by_n[str(n)]
            proxy = f" ({s['proxy']})" if "proxy" in s else ""
            if "chosen" in s:  # the proxy chosen most often, in how many draws
                top, count = next(iter(s["chosen"].items()))
                proxy = f" ({top} {count}/{s['draws']})"
            cells.append(f"{s['tau']:.3f} ± {s['tau_stderr']:.3f} / {s['top_tau']:.3f} ± "
                         f"{s['top_tau_stderr']:.3f}{proxy}")
        last = by_n[str(ns[-1])]
        cells.append(f"{last['median_seconds']:.3f}" if "median_seconds" in last else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--ns", default="20,50,100,200", help="training set sizes (comma list)")
    parser.add_argument("--test", type=int, default=2000, help="test cells of the table part")
    parser.add_argument("--predictors", default=",".join(PREDICTORS))
    parser.add_argument("--parts", default="table,zc", help="table and/or zc (comma list)")
    parser.add_argument("--out", type=Path, default=OUT, help="report JSON")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = parser.parse_args()
    args.ns = [int(n) for n in args.ns.split(",")]
    args.predictors = args.predictors.split(",")
    parts = args.parts.split(",")
    if not set(parts) <= {"table", "zc"}:
        parser.error(f"--parts takes table and/or zc, got {args.parts!r}")
    space = get_space("nb201")
    report: dict[str, Any] = {"draws": args.draws, "ns": args.ns, "predictors": args.predictors,
                              "top_share": TOP}
    start = time.perf_counter()
    if "table" in parts:
        report["table"] = run_table(args, space)
    if "zc" in parts:
        report["zc"] = run_zc(args, space)
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{args.draws} draws, wall {report['wall_seconds']} s; report: {args.out}")
    titles = {"table": f"1. nb201.csv ({TARGET}), {args.test} test cells per draw",
              "zc": "2. NASLib's 491 cells (200-epoch val_accuracy), the other cells as test"}
    for part in parts:
        print(f"\n{titles[part]}: Kendall tau, top-{TOP:.0%} tau, mean ± stderr over "
              f"{args.draws} draws\n")
        print(markdown(report[part], args.ns) if args.markdown
              else format_table(rows(report[part])))


if __name__ == "__main__":
    main()
