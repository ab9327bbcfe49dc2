"""Metrics by lookup in a CSV of measured architectures (e.g. NAS-Bench-201's `nb201.csv`):
the table estimator's accuracy, and the tabular benchmark's columns (`nas benchmark`). The `arch`
column is parsed by the space's `parse`, so a table may hold keys or the published forms (NB201
cell strings...)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from search_spaces import Arch, NasError, SearchSpace, first_line


class TableError(NasError):
    """A table that cannot be read, lacks a column, or lacks an architecture."""


class AccuracyTable:
    """Rows of a CSV by architecture; `column` is read as `acc`, `extra` columns under their
    own names. Without `column`, the table's `acc` column, or its only column whose name starts
    with `acc`, is used.

    `archs` lists the rows' architectures in file order, `row_of` maps each to its row and
    `columns` holds every loaded column (`column` first, then `extra`) by its own name."""

    def __init__(self, path: str | Path, space: SearchSpace, column: str | None = None,
                 arch_column: str = "arch", extra: Sequence[str] = ()):
        import pandas as pd  # only tables need it

        self.path = Path(path)
        self.space = space
        try:  # the arch column stays text: keys like "012" keep their leading zero
            frame = pd.read_csv(self.path, dtype={arch_column: str})
        except FileNotFoundError:
            raise TableError(f"table {self.path} does not exist") from None
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise TableError(f"cannot read table {self.path} as CSV: {first_line(exc)}") from None
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        if arch_column not in frame.columns:
            raise TableError(f"table {self.path} has no {arch_column!r} column; columns: "
                             f"{', '.join(map(str, frame.columns))}")
        self.column = column if column is not None else _default_column(self.path, numeric)
        for name in (self.column, *extra):
            if name not in frame.columns:
                raise TableError(f"table {self.path} has no column {name!r}; "
                                 f"numeric columns: {', '.join(numeric)}")
            if name not in numeric:
                raise TableError(f"column {name!r} of {self.path} is not numeric; "
                                 f"numeric columns: {', '.join(numeric)}")
        self.extra = tuple(extra)
        self.columns: dict[str, np.ndarray] = {
            name: frame[name].to_numpy(dtype=float) for name in (self.column, *self.extra)}
        self.archs: list[Arch] = []
        self.row_of: dict[Arch, int] = {}
        for i, text in enumerate(frame[arch_column].astype(str)):
            try:
                arch = space.parse(text)
            except NasError as exc:
                raise TableError(f"{self.path}, row {i + 2} ({text!r}): {exc}") from None
            if arch in self.row_of:
                raise TableError(f"{self.path}, row {i + 2}: {arch.key} appears twice")
            self.row_of[arch] = i
            self.archs.append(arch)
        self._metrics: list[dict[str, float] | None] = [None] * len(self.archs)

    def __len__(self) -> int:
        return len(self.archs)

    def __contains__(self, arch: Arch) -> bool:
        return arch in self.row_of

    def metrics(self, arch: Arch) -> dict[str, float]:
        """Every loaded column of `arch`'s row by its own name; NaN everywhere for an arch the
        table lacks (a search strategy is told such an arch failed)."""
        row = self.row_of.get(arch)
        if row is None:
            return {name: math.nan for name in self.columns}
        cached = self._metrics[row]
        if cached is None:
            cached = self._metrics[row] = {n: float(v[row]) for n, v in self.columns.items()}
        return cached

    def lookup(self, arch: Arch) -> dict[str, float]:
        """`acc` (the chosen column) plus the extra columns; a missing arch or an empty cell
        is an error naming the table."""
        if arch not in self.row_of:
            raise TableError(f"{arch.key} is not in table {self.path} ({len(self)} rows)")
        row = self.metrics(arch)
        acc = row[self.column]
        if math.isnan(acc):
            raise TableError(f"{arch.key} has no value in column {self.column!r} of {self.path}")
        return {"acc": acc, **{name: row[name] for name in self.extra}}


def _default_column(path: Path, numeric: list[str]) -> str:
    if "acc" in numeric:
        return "acc"
    candidates = [c for c in numeric if c.startswith("acc")]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise TableError(f"table {path} has no accuracy column (named 'acc...'); name one of "
                         f"its numeric columns: {', '.join(numeric) or 'none'}")
    raise TableError(f"table {path} has several accuracy columns; pick one: "
                     f"{', '.join(candidates)}")
