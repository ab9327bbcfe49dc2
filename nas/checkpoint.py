"""A run's checkpoint: `checkpoint.json` (strategy state, trials and anchors after the last
completed batch: the source of truth of a run folder) and `batch.json` (each finished
evaluation of the running batch, saved at once), written atomically and read back checked.

JSON has no NaN: a numeric metric that was NaN is written as null and restored as NaN.
`CHECKPOINT_FORMAT` is the version of the files this module and config.json write.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from estimators.files import atomic_write_json
from nas.results import (
    LEAD_COLUMNS,
    TEXT_COLUMNS,
    ResultsError,
    clean_json,
    columns_of,
    is_int,
    json_kind,
    read_json,
    write_csv,
)
from nas.run_lock import writing
from search_spaces import first_line

CHECKPOINT_FORMAT = 1
CHECKPOINT_FILE = "checkpoint.json"
BATCH_FILE = "batch.json"
ANCHOR_LEAD = ("name", "key")

Row = dict[str, Any]


def restore_nan(row: Mapping[str, Any]) -> Row:
    """JSON null back to NaN for numeric metrics."""
    return {k: (math.nan if v is None and k not in TEXT_COLUMNS else v) for k, v in row.items()}


def write_json(run_dir: Path, path: Path, payload: Mapping[str, Any]) -> None:
    """`payload` to `path` in the run folder, atomically, NaN as null (a failed write is one
    `cannot write` line and leaves the previous file whole)."""
    with writing(run_dir):
        atomic_write_json(path, clean_json(payload))


class Checkpoint:
    """The checkpoint files of the run folder `run_dir`."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / CHECKPOINT_FILE
        self.batch_path = self.run_dir / BATCH_FILE

    def load(self) -> dict[str, Any] | None:
        """The saved checkpoint, checked for what a resumed search needs; None for a new run."""
        return checked_checkpoint(read_json(self.path), self.path, resume=True) \
            if self.path.is_file() else None

    def restore(self, data: Mapping[str, Any], strategy: Any
                ) -> tuple[list[Row], list[Row], int, float]:
        """Load the strategy's state from `data` (see `load`); (trials, anchors, completed
        batches, seconds of search so far)."""
        try:
            strategy.load_state_dict(data["strategy"])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ResultsError(f"{self.path} is damaged: the strategy state cannot be restored "
                               f"({type(exc).__name__}: {first_line(exc)})") from None
        return ([restore_nan(r) for r in data["trials"]],
                [restore_nan(a) for a in data.get("anchors", [])],
                int(data["batches"]), float(data["elapsed_s"]))

    def save(self, state: Mapping[str, Any], rows: Sequence[Row], anchors: Sequence[Row],
             batches: int, elapsed: float, finished: bool) -> None:
        """The checkpoint first (atomically: the source of truth), then the files derived from
        it; a failed write leaves the previous checkpoint whole. The running batch is done."""
        write_json(self.run_dir, self.path, {
            "format": CHECKPOINT_FORMAT, "batches": batches, "elapsed_s": elapsed,
            "finished": finished, "strategy": state, "trials": list(rows),
            "anchors": list(anchors)})
        with writing(self.run_dir):
            write_csv(self.run_dir / "trials.csv", rows, columns_of(rows))
            if anchors:
                write_csv(self.run_dir / "anchors.csv", anchors, columns_of(anchors, ANCHOR_LEAD))
            self.batch_path.unlink(missing_ok=True)

    def saved_batch(self, batch: int, keys: Sequence[str]) -> dict[int, Row]:
        """The finished evaluations of batch `batch` (asking `keys`) saved by a killed run: none
        when the file belongs to another batch or is damaged (those are evaluated again)."""
        if not self.batch_path.is_file():
            return {}
        try:
            saved = read_json(self.batch_path)
            if saved.get("batch") == batch and saved.get("keys") == list(keys):
                done = {int(i): dict(m) for i, m in saved["done"].items()}
                if all(0 <= i < len(keys) for i in done):
                    return done
        except (ResultsError, AttributeError, TypeError, ValueError):
            pass
        return {}

    def save_batch(self, batch: int, keys: Sequence[str], done: Mapping[int, Mapping[str, Any]]
                   ) -> None:
        """The evaluations of the running batch finished so far (by index in `keys`)."""
        write_json(self.run_dir, self.batch_path, {
            "batch": batch, "keys": list(keys), "done": {str(k): v for k, v in done.items()}})


def checked_checkpoint(data: Any, path: Path, resume: bool = False) -> dict[str, Any]:
    """`data` read from checkpoint.json, checked for the shape this version writes (`resume`:
    with the strategy state and counters a resumed search needs)."""
    def bad(problem: str) -> ResultsError:
        return ResultsError(f"{path} is damaged: {problem}")

    if not isinstance(data, dict):
        raise bad(f"expected an object, got {json_kind(data)}")
    for name, lead in (("trials", LEAD_COLUMNS), ("anchors", ANCHOR_LEAD)):
        rows = data.get(name, [] if name == "anchors" else None)
        if not isinstance(rows, list):
            raise bad(f"{name!r} must be a list of rows, got {json_kind(rows)}")
        for index, row in enumerate(rows):
            what = f"{name[:-1]} {index}"
            if not isinstance(row, dict):
                raise bad(f"{what} is {json_kind(row)}, not an object")
            missing = [k for k in lead if k not in row]
            if missing:
                raise bad(f"{what} has no {missing[0]!r}")
            if not all(isinstance(row[k], str) and row[k] for k in ("key", "name") if k in lead):
                raise bad(f"{what} has no key or name text")
            for key, value in row.items():
                if key in TEXT_COLUMNS:
                    ok = value is None or isinstance(value, str)
                else:
                    ok = value is None or isinstance(value, (int, float))
                if not ok:
                    raise bad(f"{what}: {key} is {json_kind(value)} ({value!r:.40})")
            if name == "trials" and (row["trial"] != index or not is_int(row["batch"])):
                raise bad(f"{what} is numbered {row['trial']!r} (batch {row['batch']!r})")
    if resume:
        if not isinstance(data.get("strategy"), dict):
            raise bad(f"'strategy' must be the strategy's state, got "
                      f"{json_kind(data.get('strategy'))}")
        if not (is_int(data.get("batches")) and data["batches"] >= 0):
            raise bad(f"'batches' must be a whole number, got {data.get('batches')!r}")
        if not isinstance(data.get("elapsed_s"), (int, float)) or \
                isinstance(data.get("elapsed_s"), bool):
            raise bad(f"'elapsed_s' must be a number, got {data.get('elapsed_s')!r}")
    return data
