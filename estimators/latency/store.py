"""The lookup-table store: SQLite in WAL mode, safe for several writing processes.

`blocks` holds one timing per (device fingerprint, block signature, batch size, dtype);
`corrections` holds the fitted whole-network correction (overhead + scale) per
(fingerprint, space, batch size, dtype); `devices` describes each fingerprint seen.
Every write is its own short transaction, so an interrupted build keeps what it measured.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from estimators.latency.cache import table_path
from estimators.latency.errors import LatencyError

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    fingerprint TEXT NOT NULL, signature TEXT NOT NULL, batch INTEGER NOT NULL,
    dtype TEXT NOT NULL, median_ms REAL NOT NULL, min_ms REAL NOT NULL,
    rounds INTEGER NOT NULL, calls INTEGER NOT NULL, measured_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, signature, batch, dtype)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS corrections (
    fingerprint TEXT NOT NULL, space TEXT NOT NULL, batch INTEGER NOT NULL, dtype TEXT NOT NULL,
    overhead_ms REAL NOT NULL, scale REAL NOT NULL, info TEXT NOT NULL,
    PRIMARY KEY (fingerprint, space, batch, dtype)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (fingerprint TEXT PRIMARY KEY, info TEXT NOT NULL);
"""
BUSY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Entry:
    """One block timing (ms per call of the whole batch)."""

    signature: str
    median_ms: float
    min_ms: float
    rounds: int = 0
    calls: int = 0

    def stat(self, name: str) -> float:
        return self.min_ms if name == "min" else self.median_ms


@dataclass(frozen=True)
class Correction:
    """Whole network = overhead_ms + scale * (sum of block entries)."""

    overhead_ms: float = 0.0
    scale: float = 1.0

    def apply(self, block_sum_ms: float) -> float:
        return self.overhead_ms + self.scale * block_sum_ms


class LatencyStore:
    """Lookup tables in one SQLite file (default: `latency.sqlite` in the cache directory)."""

    def __init__(self, path: str | os.PathLike[str] | None = None,
                 cache_dir: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path else table_path(cache_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S,
                                         isolation_level=None, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            with self._transaction():
                for statement in filter(str.strip, SCHEMA.split(";")):
                    self._conn.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise LatencyError(f"cannot open latency table {self.path}: {exc}") from None

    # --- plumbing -----------------------------------------------------------------------------
    def _transaction(self) -> _Tx:
        return _Tx(self._conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LatencyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- block entries ------------------------------------------------------------------------
    def put(self, fingerprint: str, batch: int, dtype: str, entries: Iterable[Entry]) -> int:
        rows = [(fingerprint, e.signature, batch, dtype, float(e.median_ms), float(e.min_ms),
                 e.rounds, e.calls, time.time()) for e in entries]
        with self._transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def entries(self, fingerprint: str, batch: int, dtype: str) -> dict[str, Entry]:
        """Every entry of one device/batch/dtype, by signature (a damaged row is a
        LatencyError naming it)."""
        cursor = self._read(
            "SELECT signature, median_ms, min_ms, rounds, calls FROM blocks "
            "WHERE fingerprint = ? AND batch = ? AND dtype = ?", (fingerprint, batch, dtype))
        entries = (self._entry(row, fingerprint, batch, dtype) for row in cursor)
        return {entry.signature: entry for entry in entries}

    def get(self, fingerprint: str, signature: str, batch: int, dtype: str) -> Entry | None:
        row = self._read(
            "SELECT signature, median_ms, min_ms, rounds, calls FROM blocks WHERE fingerprint = ? "
            "AND signature = ? AND batch = ? AND dtype = ?",
            (fingerprint, signature, batch, dtype)).fetchone()
        return self._entry(row, fingerprint, batch, dtype) if row else None

    def replace_all(self, fingerprint: str, batch: int, dtype: str,
                    entries: Iterable[Entry]) -> int:
        """Replace every entry and correction of `fingerprint` (all batch sizes and dtypes)
        by `entries`, in one transaction."""
        rows = [(fingerprint, e.signature, batch, dtype, float(e.median_ms), float(e.min_ms),
                 e.rounds, e.calls, time.time()) for e in entries]
        with self._transaction():
            self._conn.execute("DELETE FROM blocks WHERE fingerprint = ?", (fingerprint,))
            self._conn.execute("DELETE FROM corrections WHERE fingerprint = ?", (fingerprint,))
            self._conn.executemany(
                "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    # --- reading checked values -----------------------------------------------------------------
    def _read(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise LatencyError(f"cannot read latency table {self.path}: {exc}") from None

    def _damaged(self, table: str, row: str, column: str, value: object,
                 expected: str) -> LatencyError:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        return LatencyError(f"latency table {self.path} is damaged: table {table!r}, row "
                            f"{row}: {column} is {shown}, expected {expected}; delete the file "
                            f"(or that row) and run `nas latency build` or `import` again")

    def _entry(self, row: tuple, fingerprint: str, batch: int, dtype: str) -> Entry:
        signature, median_ms, min_ms, rounds, calls = row
        where = f"({fingerprint}, {signature}, batch {batch}, {dtype})"
        for column, value in (("median_ms", median_ms), ("min_ms", min_ms)):
            if not _number(value) or value < 0:
                raise self._damaged("blocks", where, column, value, "a number of ms >= 0")
        for column, value in (("rounds", rounds), ("calls", calls)):
            if not isinstance(value, int) or value < 0:
                raise self._damaged("blocks", where, column, value, "a whole number >= 0")
        return Entry(signature, float(median_ms), float(min_ms), rounds, calls)

    def count(self, fingerprint: str | None = None, batch: int | None = None,
              dtype: str | None = None) -> int:
        clauses, params = _where(fingerprint=fingerprint, batch=batch, dtype=dtype)
        row = self._read(f"SELECT COUNT(*) FROM blocks{clauses}", params).fetchone()
        return int(row[0])

    def summary(self) -> list[dict[str, object]]:
        """Entry counts per (fingerprint, batch, dtype)."""
        cursor = self._read(
            "SELECT fingerprint, batch, dtype, COUNT(*) FROM blocks "
            "GROUP BY fingerprint, batch, dtype ORDER BY fingerprint, batch, dtype")
        return [{"fingerprint": f, "batch": b, "dtype": d, "entries": n} for f, b, d, n in cursor]

    # --- corrections --------------------------------------------------------------------------
    def put_correction(self, fingerprint: str, space: str, batch: int, dtype: str,
                       correction: Correction, info: Mapping[str, object]) -> None:
        with self._transaction():
            self._conn.execute("INSERT OR REPLACE INTO corrections VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (fingerprint, space, batch, dtype, correction.overhead_ms,
                                correction.scale, json.dumps(dict(info))))

    def correction(self, fingerprint: str, space: str, batch: int,
                   dtype: str) -> tuple[Correction, dict[str, object]] | None:
        row = self._read(
            "SELECT overhead_ms, scale, info FROM corrections WHERE fingerprint = ? AND space = ? "
            "AND batch = ? AND dtype = ?", (fingerprint, space, batch, dtype)).fetchone()
        if row is None:
            return None
        overhead, scale, info = row
        where = f"({fingerprint}, {space}, batch {batch}, {dtype})"
        if not _number(overhead):
            raise self._damaged("corrections", where, "overhead_ms", overhead, "a number of ms")
        if not _number(scale) or scale <= 0:
            raise self._damaged("corrections", where, "scale", scale, "a number > 0")
        return Correction(float(overhead), float(scale)), self._json("corrections", where, info)

    # --- devices ------------------------------------------------------------------------------
    def put_device(self, fingerprint: str, info: Mapping[str, object]) -> None:
        with self._transaction():
            self._conn.execute("INSERT OR REPLACE INTO devices VALUES (?, ?)",
                               (fingerprint, json.dumps(dict(info))))

    def devices(self) -> dict[str, dict[str, object]]:
        return {f: self._json("devices", f"({f})", i)
                for f, i in self._read("SELECT fingerprint, info FROM devices")}

    def _json(self, table: str, where: str, text: object) -> dict[str, object]:
        try:
            value = json.loads(text) if isinstance(text, str) else None
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise self._damaged(table, where, "info", text, "a JSON object")
        return value


class _Tx:
    """`BEGIN IMMEDIATE` ... `COMMIT` (takes the write lock up front, so concurrent writers
    queue on the busy timeout instead of failing on lock upgrade)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _number(value: object) -> bool:
    """A finite int or float as SQLite returns it (text in a REAL column stays text)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _where(**filters: object) -> tuple[str, tuple[object, ...]]:
    used = {k: v for k, v in filters.items() if v is not None}
    if not used:
        return "", ()
    return " WHERE " + " AND ".join(f"{k} = ?" for k in used), tuple(used.values())
