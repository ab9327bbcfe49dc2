"""Finalists of the layer search: after the budget, the `finalists` layers of highest mean
fitness (the first of `evolution.ranked`) are retrained from `finalist_seeds` and the
search's pick is made on those scores.

Why: every candidate trains from the search's seed for one short run, so its fitness is noisy
by a point or more (more on a MobileNet), and the highest of hundreds of such scores is the
luckiest as much as the best. In the first default search (stop 22) the layer of highest
fitness scored 1.1 and 9.6 points less on the validation images when trained from two other
seeds (ResNet, MobileNet), where BN-ReLU's scores moved by 0.6 and 0.1. Retraining a few
finalists costs a few of the search's evaluations and picks on scores that took no part in the
selection.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nas.evonorm import evolution
from nas.evonorm.workers import LayerEvaluator

Row = Mapping[str, Any]
RETRAINED = "retrained_mean"  # the finalists table's column the pick is made on


def cell(column: str, seed: int) -> str:
    return f"{column}|{seed}"


def retrain(evaluator: LayerEvaluator, finalists: Sequence[Row], columns: Sequence[str],
            seeds: Sequence[int], scores: dict[str, dict[str, float | None]],
            save: Callable[[], None]) -> None:
    """Retrain each finalist from each seed not retrained yet; `scores` (key -> {cell: acc},
    kept in the checkpoint) gets each result as it comes, then `save()` runs."""
    jobs = [(str(row["key"]), seed) for row in finalists for seed in seeds
            if any(cell(c, seed) not in scores.get(str(row["key"]), {}) for c in columns)]

    def keep(index: int, result: Mapping[str, Any]) -> None:
        key, seed = jobs[index]
        scores.setdefault(key, {}).update({cell(c, seed): _finite(result.get(c))
                                           for c in columns})
        save()

    evaluator.retrain([(i, key, seed) for i, (key, seed) in enumerate(jobs)], keep)


def table(finalists: Sequence[Row], columns: Sequence[str], seeds: Sequence[int],
          scores: Mapping[str, Mapping[str, float | None]]) -> list[dict[str, Any]]:
    """One row per finalist, best first: its trial and key, its fitness (`<column>`), the mean
    of its retrained scores per network (`<column>_retrained`) and over all of them
    (`retrained_mean`; NaN where a retraining failed, ranked last)."""
    out = []
    for row in finalists:
        key = str(row["key"])
        got = scores.get(key, {})
        row_out: dict[str, Any] = {"trial": int(row["trial"]), "key": key}
        means = []
        for column in columns:
            values = [evolution.measured(got.get(cell(column, s))) for s in seeds]
            mean = sum(values) / len(values) if values else math.nan
            row_out[column] = float(row[column])
            row_out[f"{column}_retrained"] = round(mean, 4)
            means.append(mean)
        row_out[RETRAINED] = round(sum(means) / len(means), 4)
        out.append(row_out)
    out.sort(key=lambda r: (math.isnan(r[RETRAINED]), -r[RETRAINED]
                            if not math.isnan(r[RETRAINED]) else 0.0, r["trial"]))
    return out


def _finite(value: Any) -> float | None:
    """A score as the checkpoint keeps it: JSON has no NaN, so a failed one is None."""
    number = evolution.measured(value)
    return number if math.isfinite(number) else None


__all__ = ["RETRAINED", "retrain", "table"]
