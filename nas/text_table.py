"""Plain-text tables for the CLI."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nas.objectives import format_metric

Formatter = Callable[[str, Any], str]


def default_format(column: str, value: Any) -> str:
    if isinstance(value, float) and column.split("_")[0] in ("flops", "params", "latency", "acc"):
        return format_metric(column, value)
    if isinstance(value, int) and column.split("_")[0] in ("flops", "params"):
        return format_metric(column, float(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                 fmt: Formatter = default_format) -> str:
    """Left-aligned text columns, numbers right-aligned, one header line and a rule."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    cells = [[fmt(c, row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [all(_looks_numeric(r[i]) for r in cells) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def _looks_numeric(text: str) -> bool:
    head = text.split(" ")[0].rstrip("KMG%")
    try:
        float(head)
    except ValueError:
        return False
    return True
