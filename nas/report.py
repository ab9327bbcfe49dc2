"""A run's reports: `pareto.csv`, `pareto.md`, `pareto.png` and `summary.json` rendered from its
config and rows, the front as `nas search` prints it, and the fronts of several runs in one plot.
"""
from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from estimators.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from nas.budget import format_budget
from nas.objectives import Constraint, Objective, all_satisfied, format_metric
from nas.pareto import hypervolume_box, normalised_hypervolume, pareto_rows, usable
from nas.results import clean_json, columns_of, constraints_of, objectives_of, write_csv
from nas.text_table import format_table


def save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically (a reader never sees half a file) and close
    it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def display_columns(objectives: Sequence[Objective],
                    rows: Sequence[Mapping[str, Any]]) -> list[str]:
    seen = set().union(*(r.keys() for r in rows)) if rows else set()
    wanted = ["rank", "key"] + [o.metric for o in objectives]
    wanted += [c for c in ("acc", "flops", "params", "latency_ms") if c in seen]
    return list(dict.fromkeys(c for c in wanted if c in seen or c in ("rank", "key")))


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    def fmt(column: str, value: Any) -> str:
        if isinstance(value, float) and column != "rank":
            return format_metric(column, value) if column.split("_")[0] in (
                "flops", "params", "latency", "acc") else f"{value:.4g}"
        return f"`{value}`" if column == "key" else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(c, r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def summarise(run_dir: str | Path, config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
              anchors: Sequence[Mapping[str, Any]],
              extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write pareto.csv, pareto.md, pareto.png and summary.json (with `extra`, e.g. what ran
    the search); return the summary."""
    run_dir = Path(run_dir)
    objectives, constraints = objectives_of(config), constraints_of(config)
    front = pareto_rows(rows, objectives, constraints)
    box = hypervolume_box(rows, objectives, constraints, config["evaluation"]["estimator"],
                          config.get("largest", {}))
    hv = normalised_hypervolume(front, objectives, box)
    write_csv(run_dir / "pareto.csv", front, columns_of(front, ("rank", "trial", "batch", "key")))
    summary = {"run_dir": str(run_dir), "space": config["evaluation"]["space"],
               "strategy": config["strategy"], "estimator": config["evaluation"]["estimator"],
               "seed": config["seed"], "trials": len(rows),
               "usable": sum(usable(r, objectives) for r in rows),
               "within_budget": sum(usable(r, objectives) and all_satisfied(constraints, r)
                                    for r in rows),
               "front_size": len(front), "hypervolume": hv,
               "hypervolume_box": box.as_dict(objectives),
               "objectives": [o.to_json() for o in objectives],
               "budget": [str(c) for c in constraints], **dict(extra or {})}
    atomic_write_json(run_dir / "summary.json", clean_json(summary))
    atomic_write_text(run_dir / "pareto.md", pareto_markdown(config, summary, front, anchors))
    plot_run(run_dir / "pareto.png", config, rows, front, anchors, hv)
    return summary


def pareto_markdown(config: Mapping[str, Any], summary: Mapping[str, Any],
                    front: Sequence[Mapping[str, Any]],
                    anchors: Sequence[Mapping[str, Any]]) -> str:
    objectives = objectives_of(config)
    evaluation = config["evaluation"]
    budget = ", ".join(summary["budget"]) or "none"
    lines = [f"# Pareto front: {evaluation['space']}",
             "",
             f"Strategy `{config['strategy']}`, estimator `{evaluation['estimator']}`, data "
             f"`{evaluation['data']['name']}`, seed {config['seed']}, budget {budget}.",
             f"{summary['trials']} trials, {summary['within_budget']} usable within the budget, "
             f"{summary['front_size']} on the front. Hypervolume {summary['hypervolume']:.4f} "
             f"(share of the box {_box_text(summary['hypervolume_box'])}).",
             "",
             markdown_table(front, display_columns(objectives, front)) if front else
             "(no usable trial within the budget)"]
    if anchors:
        shown = [{**a, "rank": a.get("name")} for a in anchors]
        columns = ["rank", "key"] + [c for c in display_columns(objectives, anchors)
                                     if c not in ("rank", "key")]
        lines += ["", "Reference architectures (anchors):", "",
                  markdown_table(shown, columns).replace("| rank |", "| name |", 1)]
    return "\n".join(lines) + "\n"


def _box_text(box: Mapping[str, Sequence[float]]) -> str:
    return ", ".join(f"{m} from {format_metric(m, i)} to {format_metric(m, r)}"
                     for m, (i, r) in box.items())


def plot_axes(objectives: Sequence[Objective]) -> tuple[str, str]:
    """(x, y): the first minimised objective (else flops) against the first maximised one
    (else acc)."""
    x = next((o.metric for o in objectives if o.direction == "minimize"), "flops")
    y = next((o.metric for o in objectives if o.direction == "maximize"), "acc")
    return x, y


def plot_run(path: str | Path, config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
             front: Sequence[Mapping[str, Any]], anchors: Sequence[Mapping[str, Any]],
             hv: float) -> None:
    """All trials, the front as a step line, anchors labelled, the budget as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = objectives_of(config)
    x, y = plot_axes(objectives)
    scale, unit = _axis_scale(x)
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    pts = [(float(r[x]) / scale, float(r[y])) for r in rows
           if _finite(r.get(x)) and _finite(r.get(y)) and not r.get("error")]
    if pts:
        ax.scatter(*zip(*pts), s=14, c="#9aa7b8", alpha=0.7, label=f"trials ({len(pts)})")
    fpts = sorted((float(r[x]) / scale, float(r[y])) for r in front
                  if _finite(r.get(x)) and _finite(r.get(y)))
    if fpts:
        ax.step(*zip(*fpts), where="post", c="#d62728", lw=1.2)
        ax.scatter(*zip(*fpts), s=30, c="#d62728", zorder=3, label=f"Pareto front ({len(fpts)})")
    for bound in constraints_of(config):
        if bound.metric == x:
            ax.axvline(bound.bound / scale, ls="--", c="k", lw=0.8, label=f"budget {bound}")
    low = _y_floor([p[1] for p in pts], [p[1] for p in fpts])
    for anchor in anchors:
        if not _finite(anchor.get(x)):
            continue
        ax_x = float(anchor[x]) / scale
        if _finite(anchor.get(y)) and not anchor.get("error"):
            ay = float(anchor[y])
            off = low is not None and ay < low
            shown = low if off else ay
            ax.scatter([ax_x], [shown], marker="v" if off else "*", s=90 if off else 120,
                       c="#1f77b4", zorder=4)
            ax.annotate(f"{anchor['name']}{' (below)' if off else ''}", (ax_x, shown),
                        textcoords="offset points", xytext=(5, 5), fontsize=8, color="#1f77b4")
        else:  # no accuracy for it under this estimator: mark where its cost lies
            ax.axvline(ax_x, ls=":", c="#1f77b4", lw=0.8)
            ax.annotate(str(anchor["name"]), (ax_x, 0.02), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=8, color="#1f77b4", xytext=(3, 0),
                        textcoords="offset points")
    if low is not None:
        values = [p[1] for p in pts] + [p[1] for p in fpts] + [
            float(a[y]) for a in anchors if _finite(a.get(y)) and _finite(a.get(x))
            and not a.get("error") and float(a[y]) >= low]
        high = max(values)
        pad = 0.05 * ((high - low) or abs(high) or 1.0)
        ax.set_ylim(low - pad, high + pad)
    evaluation = config["evaluation"]
    ax.set_xlabel(f"{x} ({unit})" if unit else x)
    ax.set_ylabel(f"{y} ({evaluation['estimator']})")
    ax.set_title(f"{evaluation['space']}: {config['strategy']}, {len(rows)} trials, "
                 f"hypervolume {hv:.3f}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    save_figure(fig, path)


def _y_floor(trials: Sequence[float], front: Sequence[float]) -> float | None:
    """Lowest value shown: the front's and most trials', so that a few outliers (proxy
    scores of -1e6) do not squash the plot; points below are drawn on the floor."""
    if not trials and not front:
        return None
    bulk = float(np.percentile(trials, 10)) if trials else math.inf
    return min(min(front, default=math.inf), bulk)


def _axis_scale(metric: str) -> tuple[float, str]:
    if metric.startswith(("flops", "params")):
        return 1e6, "M"
    if metric.startswith("latency"):
        return 1.0, "ms"
    return 1.0, ""


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(float(value))


# --- the command line ----------------------------------------------------------------------------
def format_front(result: Any, objectives: Sequence[Objective],
                 constraints: Sequence[Constraint]) -> str:
    """The Pareto table and a summary of a `SearchResult`, as `nas search` prints it."""
    s = result.summary
    head = (f"Pareto front of {s['space']}: {len(result.pareto)} of {len(result.rows)} trials "
            f"({s['within_budget']} usable within budget {format_budget(tuple(constraints))}); "
            f"strategy {s['strategy']}, estimator {s['estimator']}, seed {s['seed']}")
    table = format_table(result.pareto, display_columns(objectives, result.pareto)) \
        if result.pareto else "(no usable trial within the budget)"
    return (f"{head}\n\n{table}\n\nhypervolume {result.hypervolume:.4f} "
            f"(stopped: {result.stopped})\nresults: {result.run_dir}")


def progress_bar(total: int | None, initial: int) -> Any:
    """The search's progress bar (stderr; `front_progress` is its text)."""
    import sys

    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="search", unit="arch", file=sys.stderr,
                dynamic_ncols=True, leave=False)


def front_progress(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective],
                   constraints: Sequence[Constraint]) -> str:
    """The front's size and its best value of each objective (the progress bar's text)."""
    front = pareto_rows(rows, objectives, constraints)
    parts = [f"front {len(front)}"]
    for objective in objectives:
        values = [float(r[objective.metric]) for r in front]
        if values:
            best = max(values) if objective.direction == "maximize" else min(values)
            parts.append(f"{objective.metric} {format_metric(objective.metric, best)}")
    return ", ".join(parts)


def plot_fronts(path: str | Path, runs: Sequence[Any]) -> None:
    """The fronts of several runs (`nas.run_folder.Run`) in one PNG (`nas report --plot`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    for run in runs:
        x, y = plot_axes(run.objectives)
        scale = 1e6 if x.startswith(("flops", "params")) else 1.0
        points = sorted((float(r[x]) / scale, float(r[y])) for r in run.front())
        if points:
            ax.step(*zip(*points), where="post", marker="o", ms=4, label=run.path.name)
    x, y = plot_axes(runs[0].objectives)
    ax.set_xlabel(f"{x} (M)" if x.startswith(("flops", "params")) else x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)
