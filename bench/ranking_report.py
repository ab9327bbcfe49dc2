"""Reporting of bench/ranking_estimators.py (issue 13): each estimator's scores against the
standalone ground truth (Kendall tau with a bootstrap 90% interval, Spearman, precision at the
top 10%), as report-RECIPE.json, a Markdown table and a scatter plot per space.

The ground truth is the mean of seeds 0 and 1 (`report-RECIPE.json`), or of four, six,
eight or ten seeds where `--truth-seeds N` asks for it (`report-RECIPE-Nseeds.json`, architectures
with those seeds only).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ranking_groundtruth import ROOT, SEEDS, ground_truth, load_json  # noqa: E402
from scipy.stats import kendalltau, spearmanr  # noqa: E402

from estimators.files import atomic_write_text  # noqa: E402

OUT = ROOT / "results" / "bench" / "ranking-estimators"
BOOTSTRAP = 2000


def report_name(recipe_name: str, seeds: tuple[int, ...] = SEEDS) -> str:
    """report-RECIPE.json against seeds 0 and 1; report-RECIPE-Nseeds.json against N."""
    return f"report-{recipe_name}" + ("" if seeds == SEEDS else f"-{len(seeds)}seeds") + ".json"


def agreement(truth: np.ndarray, estimate: np.ndarray, seed: int = 0) -> dict[str, float]:
    tau = float(kendalltau(estimate, truth)[0])
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, len(truth), len(truth))
        value = kendalltau(estimate[idx], truth[idx])[0]
        if np.isfinite(value):
            boot.append(value)
    top = max(1, int(round(0.1 * len(truth))))
    best_true = set(np.argsort(-truth, kind="stable")[:top])
    best_est = set(np.argsort(-estimate, kind="stable")[:top])
    return {"n": int(len(truth)), "kendall_tau": tau,
            "tau_90_low": float(np.percentile(boot, 5)),
            "tau_90_high": float(np.percentile(boot, 95)),
            "spearman": float(spearmanr(estimate, truth)[0]),
            "precision_top10": len(best_true & best_est) / top}


def report(space: str, recipe_name: str, seeds: tuple[int, ...] = SEEDS) -> dict[str, Any]:
    """Every estimator's scores under OUT/SPACE against the mean of `seeds`."""
    rows = ground_truth(space, recipe_name, seeds)
    out = OUT / space
    result: dict[str, Any] = {"space": space, "ground_truth_recipe": recipe_name,
                              "ground_truth_seeds": list(seeds),
                              "architectures": len(rows), "estimators": {}}
    for path in sorted(out.glob("scores-*.json")):
        record = load_json(path)
        name = record["name"]
        have = [r for r in rows if r["key"] in record["scores"]]
        if len(have) < 3:
            continue
        entry = {"seconds_per_arch": record["seconds_per_arch"],
                 **{k: record[k] for k in ("train_seconds", "train_steps", "seconds_per_step",
                                           "recipe") if k in record}}
        recipe = entry.get("recipe") or {}
        if entry.get("train_seconds") and "seconds_per_step" not in entry \
                and recipe.get("train_images"):  # scores written before steps were recorded
            entry["train_steps"] = recipe["epochs"] * (recipe["train_images"]
                                                       // recipe["batch_size"])
            entry["seconds_per_step"] = entry["train_seconds"] / entry["train_steps"]
        for subset, chosen in (("all", have), ("connected", [r for r in have if r["connected"]])):
            if subset == "connected" and not space.startswith("nb201"):
                continue
            truth = np.array([r["acc"] for r in chosen])
            estimate = np.array([record["scores"][r["key"]] for r in chosen], dtype=float)
            entry[subset] = agreement(truth, estimate)
        result["estimators"][name] = entry
    timing = load_json(out / "timing.json")
    for name, seconds in timing.get("seconds_per_step", {}).items():
        if name in result["estimators"]:
            result["estimators"][name].update(
                timed_seconds_per_step=seconds, timed_ratio=timing["ratio"][name],
                timed_baseline=timing["baseline"])
    atomic_write_text(out / report_name(recipe_name, seeds), json.dumps(result, indent=1))
    return result


def plot(space: str, recipe_name: str, result: dict[str, Any]) -> Path:
    """docs/ranking-SPACE.png: each estimator's scores against the ground truth of `result`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = tuple(result["ground_truth_seeds"])
    rows = {r["key"]: r for r in ground_truth(space, recipe_name, seeds)}
    names = list(result["estimators"])
    cols = 4
    fig, axes = plt.subplots((len(names) + cols - 1) // cols, cols,
                             figsize=(3.2 * cols, 2.8 * ((len(names) + cols - 1) // cols)),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        scores = load_json(OUT / space / f"scores-{name.replace(':', '_')}.json")["scores"]
        keys = [k for k in scores if k in rows and rows[k]["connected"]]
        ax.scatter([scores[k] for k in keys], [rows[k]["acc"] for k in keys], s=10)
        subset = result["estimators"][name].get("connected") or result["estimators"][name]["all"]
        ax.set_title(f"{name}\ntau {subset['kendall_tau']:.2f}", fontsize=8)
        ax.tick_params(labelsize=6)
        if name in ("params", "flops") or name.startswith("proxy:synflow"):
            ax.set_xscale("symlog")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.supylabel(f"standalone test accuracy (%), mean of {len(seeds)} seeds ({recipe_name})", fontsize=8)
    fig.tight_layout()
    path = ROOT / "docs" / f"ranking-{space}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(result: dict[str, Any]) -> str:
    """The report as a Markdown table (connected cells where the space has them), best first."""
    lines = ["| estimator | tau | 90% interval | Spearman | P@10% | s/arch |",
             "|---|---|---|---|---|---|"]
    entries = sorted(result["estimators"].items(),
                     key=lambda item: -item[1].get("connected", item[1]["all"])["kendall_tau"])
    for name, entry in entries:
        subset = entry.get("connected", entry["all"])
        lines.append(f"| `{name}` | {subset['kendall_tau']:.2f} | {subset['tau_90_low']:.2f} to "
                     f"{subset['tau_90_high']:.2f} | {subset['spearman']:.2f} | "
                     f"{subset['precision_top10']:.2f} | {entry['seconds_per_arch']:.2f} |")
    return "\n".join(lines)


def cost_markdown(result: dict[str, Any]) -> str:
    """The supernets whose training cost was timed back to back (`--time-steps`): tau, the
    full training's seconds (per-epoch times of the run that trained it) and the seconds
    per step measured back to back, with their ratio to the baseline."""
    timed = [(name, entry) for name, entry in result["estimators"].items()
             if "timed_seconds_per_step" in entry]
    if not timed:
        return ""
    base = timed[0][1]["timed_baseline"]
    base_steps = result["estimators"].get(base, {}).get("train_steps")
    lines = ["| supernet | tau | 90% interval | steps | train s | s/step (training) | "
             f"s/step (back to back) | per step vs `{base}` | whole training vs `{base}` |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in timed:
        steps = entry.get("train_steps")
        whole = f"{entry['timed_ratio'] * steps / base_steps:.2f}" if steps and base_steps \
            else "-"
        subset = entry.get("connected", entry["all"])
        train = f"{entry['train_seconds']:.0f}" if entry.get("train_seconds") else "-"
        per = f"{entry['seconds_per_step']:.3f}" if entry.get("seconds_per_step") else "-"
        lines.append(f"| `{name}` | {subset['kendall_tau']:.2f} | {subset['tau_90_low']:.2f} to "
                     f"{subset['tau_90_high']:.2f} | {entry.get('train_steps', '-')} | {train} | "
                     f"{per} | {entry['timed_seconds_per_step']:.3f} | "
                     f"{entry['timed_ratio']:.2f} | {whole} |")
    return "\n".join(lines)
