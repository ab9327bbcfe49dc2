"""A run's result files: trials, the ranked Pareto front, its hypervolume and plot.

A run folder holds `config.json` (everything needed to rerun), `trials.csv` (one row per
evaluated architecture), `anchors.csv` (the space's reference networks, evaluated alike),
`pareto.csv` / `pareto.md` (non-dominated rows within the budget, ranked best first on the first
objective), `pareto.png`, `summary.json` (hypervolume and its box) and `checkpoint.json`.
Everything is written atomically (temporary file, then rename).

Hypervolume is reported as the share of a box that the front dominates, so it is unitless and
comparable between runs on the same box. Per objective the box runs from the ideal to the
reference value: a cost (minimised) from 0 to its budget bound, or without a bound to the cost
of the space's largest architecture; a percentage accuracy (supernet, train and table
estimators) from 100 to 0; any other maximised score (a zero-cost proxy) from the best to the
worst value on the front, less a 10% margin.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from estimators.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from nas.objectives import Constraint, Objective, all_satisfied, format_metric
from nas.pareto import hypervolume, pareto_mask
from search_spaces import NasError, first_line

TEXT_COLUMNS = ("key", "name", "acc_estimator", "error", "space")
PERCENT_ESTIMATORS = ("supernet", "train", "table")
LEAD_COLUMNS = ("trial", "batch", "key")
SCORE_MARGIN = 0.1  # share of a score's front range added below it (see `hypervolume_box`)
TAIL_COLUMNS = ("acc_estimator", "within_budget", "eval_seconds", "error")
COST_ORDER = ("acc", "flops", "flops_sparse", "params", "latency_ms")


class ResultsError(NasError):
    """A run folder that is missing or unreadable."""


def clean_json(value: Any) -> Any:
    """NaN and infinities as null (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {path}: {first_line(exc)}") from None


# --- CSV -----------------------------------------------------------------------------------------
def columns_of(rows: Sequence[Mapping[str, Any]], lead: Sequence[str] = LEAD_COLUMNS) -> list[str]:
    """Stable column order: lead columns, the usual metrics, other metrics sorted, then tail."""
    seen: set[str] = set()
    for row in rows:
        seen.update(row)
    ordered = [c for c in lead if c in seen] + [c for c in COST_ORDER if c in seen]
    tail = [c for c in TAIL_COLUMNS if c in seen]
    rest = sorted(seen - set(ordered) - set(tail))
    return ordered + rest + tail


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or columns_of(rows))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in columns})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return value


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]],
              columns: Sequence[str] | None = None) -> None:
    atomic_write_text(path, to_csv(rows, columns))


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows with numbers parsed back (empty cells are NaN, text columns stay text)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            raw = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise ResultsError(f"{path} does not exist") from None
    except (OSError, ValueError, csv.Error) as exc:  # binary data, not UTF-8, a NUL byte
        raise ResultsError(f"cannot read {path} as CSV: {first_line(exc)}") from None
    rows = []
    for record in raw:
        if None in record:  # more fields than the header names
            raise ResultsError(f"{path}: a row has more fields than the header")
        rows.append({name: _parse_cell(name, text) for name, text in record.items()})
    return rows


def _parse_cell(name: str, text: str | None) -> Any:
    if name in TEXT_COLUMNS:
        return text or None
    if text is None or text == "":
        return math.nan
    if text in ("True", "False"):
        return text == "True"
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if name in ("trial", "batch", "rank") else number


# --- the front -----------------------------------------------------------------------------------
def usable(row: Mapping[str, Any], objectives: Sequence[Objective]) -> bool:
    """No error and a finite value for every objective."""
    if row.get("error"):
        return False
    for objective in objectives:
        value = row.get(objective.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            return False
    return True


def pareto_rows(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective],
                constraints: Sequence[Constraint]) -> list[dict[str, Any]]:
    """Non-dominated usable rows within every constraint, best first on the first objective
    (ties: better on the next), with `rank` from 1."""
    candidates = [dict(r) for r in rows
                  if usable(r, objectives) and all_satisfied(constraints, r)]
    if not candidates:
        return []
    points = _minimised(candidates, objectives)
    front = [r for r, keep in zip(candidates, pareto_mask(points)) if keep]
    front.sort(key=lambda r: tuple(-o.sign() * float(r[o.metric]) for o in objectives) +
               (str(r.get("key")),))
    for rank, row in enumerate(front, 1):
        row["rank"] = rank
    return front


def _minimised(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective]) -> np.ndarray:
    return np.array([[-o.sign() * float(r[o.metric]) for o in objectives] for r in rows],
                    dtype=float).reshape(len(rows), len(objectives))


@dataclass(frozen=True)
class Box:
    """Per objective, the ideal and the reference value (natural units)."""

    ideal: tuple[float, ...]
    reference: tuple[float, ...]

    def as_dict(self, objectives: Sequence[Objective]) -> dict[str, list[float]]:
        return {o.metric: [i, r] for o, i, r in zip(objectives, self.ideal, self.reference)}

    def union(self, other: "Box", objectives: Sequence[Objective]) -> "Box":
        """The box that holds both (for comparing runs on one scale)."""
        ideal, reference = [], []
        for o, i1, r1, i2, r2 in zip(objectives, self.ideal, self.reference, other.ideal,
                                     other.reference):
            if o.direction == "maximize":
                ideal.append(max(i1, i2))
                reference.append(min(r1, r2))
            else:
                ideal.append(min(i1, i2))
                reference.append(max(r1, r2))
        return Box(tuple(ideal), tuple(reference))


def hypervolume_box(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective],
                    constraints: Sequence[Constraint], estimator: str,
                    largest: Mapping[str, float]) -> Box:
    """The box of the module docstring. `largest`: the cost metrics of the space's largest
    architecture (the reference of an unbounded cost)."""
    bounds = {c.metric: c.bound for c in constraints}
    ideal, reference = [], []
    for objective in objectives:
        metric = objective.metric
        if objective.direction == "minimize":
            ideal.append(0.0)
            worst = bounds.get(metric, largest.get(metric))
            if worst is None:
                values = _values(rows, metric)
                worst = max(values) if values else 1.0
            reference.append(float(worst))
        elif metric.startswith("acc") and estimator in PERCENT_ESTIMATORS:
            ideal.append(100.0)
            reference.append(0.0)
        else:
            # A score without a scale (a zero-cost proxy): the front's own range, widened by
            # a margin so that its end points count; the worst trials (proxies have outliers
            # of -1e6) would squash every front to the same share.
            values = _values(pareto_rows(rows, objectives, constraints), metric) or \
                _values(rows, metric)
            high = max(values) if values else 1.0
            low = min(values) if values else 0.0
            margin = SCORE_MARGIN * ((high - low) or abs(high) or 1.0)
            ideal.append(high)
            reference.append(low - margin)
    return Box(tuple(ideal), tuple(reference))


def _values(rows: Iterable[Mapping[str, Any]], metric: str) -> list[float]:
    out = []
    for row in rows:
        value = row.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(float(value)) and not row.get("error"):
            out.append(float(value))
    return out


def normalised_hypervolume(front: Sequence[Mapping[str, Any]], objectives: Sequence[Objective],
                           box: Box) -> float:
    """Share of `box` dominated by `front` (0 when empty; 1 = the ideal point)."""
    if not front:
        return 0.0
    points = []
    for row in front:
        point = []
        for o, best, worst in zip(objectives, box.ideal, box.reference):
            span = abs(worst - best) or 1.0
            point.append(abs(float(row[o.metric]) - best) / span
                         if (float(row[o.metric]) - best) * (worst - best) >= 0 else 0.0)
        points.append(point)
    return float(hypervolume(np.array(points), [1.0] * len(objectives)))


# --- rendering -----------------------------------------------------------------------------------
def objectives_of(config: Mapping[str, Any]) -> list[Objective]:
    return [Objective(m, d) for m, d in config["objectives"]]


def constraints_of(config: Mapping[str, Any]) -> list[Constraint]:
    return [Constraint(m, float(b)) for m, b in config["constraints"]]


def display_columns(objectives: Sequence[Objective], rows: Sequence[Mapping[str, Any]]) -> list[str]:
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
               "objectives": [[o.metric, o.direction] for o in objectives],
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
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


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
