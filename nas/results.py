"""A run's result files as data: JSON and CSV read and written, rows with their columns.

A run folder holds `config.json` (everything needed to rerun), `trials.csv` (one row per
evaluated architecture), `anchors.csv` (the space's reference networks, evaluated alike),
`pareto.csv` / `pareto.md` (non-dominated rows within the budget, ranked best first on the first
objective), `pareto.png`, `summary.json` (hypervolume and its box) and `checkpoint.json`.
Everything is written atomically (temporary file, then rename). The front and its hypervolume
are computed in `nas.pareto`, the reports rendered in `nas.report`, the checkpoint kept in
`nas.checkpoint`.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from estimators.files import atomic_write_text
from nas.objectives import Constraint, Objective, constraints_from_json, objectives_from_json
from search_spaces import NasError, first_line

TEXT_COLUMNS = ("key", "name", "acc_estimator", "error", "space", "transforms")
LEAD_COLUMNS = ("trial", "batch", "key")
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


def json_kind(value: Any) -> str:
    """What a JSON value is, for messages about a damaged file."""
    return {dict: "an object", list: "a list", str: "text", bool: "true/false",
            type(None): "null"}.get(type(value), "a number")


def is_int(value: Any) -> bool:
    """A whole number (JSON true/false are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


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


# --- config.json ---------------------------------------------------------------------------------
def objectives_of(config: Mapping[str, Any]) -> list[Objective]:
    return objectives_from_json(config["objectives"])


def constraints_of(config: Mapping[str, Any]) -> list[Constraint]:
    return constraints_from_json(config["constraints"])
