"""What a layer search reports beyond the shared run files: the share of candidates each
protocol rejected and the time the protocols saved (summary.json), and `fitness.png`, the
accuracies on the first two evaluation architectures against each other (the shared
`pareto.png` plots accuracy against FLOPs, which a layer does not change)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nas.evonorm.evolution import pareto_members, passed
from nas.evonorm.settings import PROTOCOLS
from nas.report import save_figure

Row = Mapping[str, Any]
STAGES = (*PROTOCOLS, "fitness")  # what can reject a candidate, in order


def rejected_by(row: Row) -> str | None:
    """The stage that rejected a candidate (`stability`, `quality`, or `fitness` when its
    training failed), read from its `error` ("<stage>: why"); None when it passed."""
    error = row.get("error")
    if not error:
        return None
    stage = str(error).partition(":")[0]
    return stage if stage in STAGES else "fitness"


def _seconds(row: Row, name: str) -> float:
    value = row.get(f"{name}_seconds")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def protocol_summary(rows: Sequence[Row], columns: Sequence[str]) -> dict[str, Any]:
    """Counts and shares of the candidates each stage rejected, and the time saved against
    evaluating every candidate fully. Repeats (a layer drawn again: its earlier result is
    reused, nothing runs) are counted apart; shares are of the candidates evaluated.

    Time saved: every evaluated candidate, rejected ones included, would have cost the mean
    fitness time of the candidates that completed it (`full_seconds`); the run spent the
    protocols' time on every candidate plus the fitness time of those that passed
    (`spent_seconds`). `saved_seconds` = full - spent, an estimate: a layer rejected early
    might have trained faster or slower than the mean."""
    new = [r for r in rows if not _is_number(r.get("repeat_of"))]
    counts = {stage: sum(rejected_by(r) == stage for r in new) for stage in STAGES}
    complete = [r for r in new if passed(r, columns)]
    protocol_seconds = {p: round(sum(_seconds(r, p) for r in new), 3) for p in PROTOCOLS}
    fitness_seconds = sum(_seconds(r, "fitness") for r in new)
    mean_fitness = fitness_seconds / len(complete) if complete else math.nan
    full = len(new) * mean_fitness
    spent = sum(protocol_seconds.values()) + fitness_seconds
    share = (lambda n: round(n / len(new), 4)) if new else (lambda n: math.nan)
    return {
        "candidates": len(rows), "repeats": len(rows) - len(new), "evaluated": len(new),
        "passed": len(complete), "rejected": counts,
        "rejected_share": {stage: share(n) for stage, n in counts.items()},
        "passed_share": share(len(complete)),
        "protocol_seconds": protocol_seconds, "fitness_seconds": round(fitness_seconds, 3),
        "mean_fitness_seconds": round(mean_fitness, 3),
        "full_seconds": round(full, 3), "spent_seconds": round(spent, 3),
        "saved_seconds": round(full - spent, 3),
        "saved_share": round((full - spent) / full, 4) if full > 0 else math.nan}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(float(value))


def plot_fitness(path: str | Path, rows: Sequence[Row], anchors: Sequence[Row],
                 columns: Sequence[str]) -> None:
    """Accuracy on the first architecture (y) against the second (x): the candidates that
    passed, their Pareto front, and the reference layers (one architecture: against trial)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    y = columns[0]
    x = columns[1] if len(columns) > 1 else "trial"
    good = [r for r in rows if passed(r, columns)]
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    if good:
        ax.scatter([float(r[x]) for r in good], [float(r[y]) for r in good], s=16,
                   c="#9aa7b8", label=f"passed ({len(good)} of {len(rows)})")
        front = sorted(pareto_members(good, columns), key=lambda r: float(r[x]))
        ax.plot([float(r[x]) for r in front], [float(r[y]) for r in front], "o-", c="#d62728",
                ms=5, lw=1, label=f"Pareto front ({len(front)})")
    for anchor in anchors:
        if x != "trial" and _is_number(anchor.get(x)) and _is_number(anchor.get(y)):
            ax.scatter([anchor[x]], [anchor[y]], marker="*", s=120, c="#1f77b4", zorder=4)
            ax.annotate(str(anchor["name"]), (anchor[x], anchor[y]), textcoords="offset points",
                        xytext=(5, 5), fontsize=8, color="#1f77b4")
    ax.set_xlabel(f"{x} (%)" if x != "trial" else x)
    ax.set_ylabel(f"{y} (%)")
    ax.set_title(f"EvoNorm layer search: {len(rows)} candidates", fontsize=10)
    ax.grid(alpha=0.3)
    if good:
        ax.legend(fontsize=8, loc="best")
    save_figure(fig, path)


__all__ = ["STAGES", "plot_fitness", "protocol_summary", "rejected_by"]
