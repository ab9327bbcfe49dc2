"""Reading a run folder back (`nas report`, `nas export`, `--resume`).

`checkpoint.json` is the source of truth: it is written atomically after every completed batch,
and `trials.csv` / `anchors.csv` are derived from it. A run is loaded from the checkpoint's
trials and anchors; a CSV that disagrees with them (cut short, edited, damaged) is rebuilt from
the checkpoint with one warning. Without a checkpoint the CSV files are read strictly: a cut or
damaged row, binary data or a count that disagrees with `summary.json` is a one-line error, never
a silent partial front. Every file is checked for the shape this version writes, so a damaged
or hand-edited one is a one-line error naming it, not a traceback.
"""
from __future__ import annotations

import csv
import io
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nas.checkpoint import ANCHOR_LEAD, checked_checkpoint, restore_nan, write_json
from nas.objectives import Constraint, Objective
from nas.pareto import Box, hypervolume_box, normalised_hypervolume, pareto_rows
from nas.results import (
    LEAD_COLUMNS,
    TEXT_COLUMNS,
    ResultsError,
    _parse_cell,
    columns_of,
    constraints_of,
    is_int,
    json_kind,
    objectives_of,
    read_json,
    to_csv,
)
from nas.run_lock import LOCK_FILE, run_lock, writing
from search_spaces import first_line

Warn = Callable[[str], None]


class RunWarning(UserWarning):
    """A run file that disagreed with the checkpoint and was rebuilt from it."""


def resolve_run(run: str | Path, results_root: str | Path = "results") -> Path:
    """A run folder from a path or a run id under `results_root`."""
    candidates = [Path(run), Path(results_root) / str(run)]
    for path in candidates:
        if (path / "config.json").is_file():
            return path
    raise ResultsError(f"no run at {run!r}: expected a folder with config.json (a path, or a "
                       f"run id under {results_root}/)")


@contextmanager
def started_run(run_dir: Path, check_resume: Callable[[], None],
                new_config: Callable[[], Mapping[str, Any]]) -> Iterator[None]:
    """Create the run folder and hold its lock for the block; a folder that already holds a
    run has its config checked (`check_resume` raises when it is another run), a new one gets
    `config.json` first."""
    with writing(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        if (run_dir / "config.json").exists():
            check_resume()
        else:
            write_json(run_dir, run_dir / "config.json", new_config())
        yield


STEM_CHARS = 60  # of the space or file name in a run folder's name (file names end at 255)


def new_run_dir(root: str | Path, space: str, strategy: str, seed: int) -> Path:
    """results/<space>-<strategy>-s<seed>-<timestamp>[-n], created empty (two searches started
    in the same second get two folders)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(space).stem if space.endswith(
        (".json", ".yaml", ".yml")) else space)[:STEM_CHARS]
    base = Path(root) / f"{stem}-{strategy}-s{seed}-{datetime.now():%Y%m%d-%H%M%S}"
    path, n = base, 1
    with writing(root):
        while True:
            try:
                path.mkdir(parents=True)
                return path
            except FileExistsError:
                if not Path(root).is_dir():
                    raise
                n += 1
                path = base.with_name(f"{base.name}-{n}")


@contextmanager
def dropped_if_empty(path: Path, created: bool) -> Iterator[None]:
    """A run folder this command created (`created`) is removed when the run fails before
    writing anything into it: bad settings leave no empty folder behind."""
    try:
        yield
    except BaseException:
        if created:
            with suppress(OSError):
                if [p.name for p in path.iterdir()] == [LOCK_FILE]:  # the lock is released
                    (path / LOCK_FILE).unlink()
                path.rmdir()  # only an empty folder goes
        raise


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    anchors: list[dict[str, Any]]

    @property
    def objectives(self) -> list[Objective]:
        return objectives_of(self.config)

    @property
    def constraints(self) -> list[Constraint]:
        return constraints_of(self.config)

    def front(self) -> list[dict[str, Any]]:
        """The ranked Pareto front: what `pareto.csv` holds and `nas export --rank` picks."""
        return pareto_rows(self.rows, self.objectives, self.constraints)

    def box(self) -> Box:
        return hypervolume_box(self.rows, self.objectives, self.constraints,
                               self.config["evaluation"]["estimator"],
                               self.config.get("largest", {}))


def load_run(run: str | Path, results_root: str | Path = "results",
             warn: Warn | None = None) -> Run:
    """A run's config, trials and anchors: from `checkpoint.json` where there is one (the CSV
    files are rebuilt from it where they disagree; `warn` gets one line each), else from the
    CSV files, read strictly."""
    from nas.run_lock import is_locked

    warn = warn or (lambda text: warnings.warn(text, RunWarning, stacklevel=3))
    path = resolve_run(run, results_root)
    config = checked_config(read_json(path / "config.json"), path / "config.json")
    checkpoint_path = path / "checkpoint.json"
    if checkpoint_path.is_file():
        checkpoint = checked_checkpoint(read_json(checkpoint_path), checkpoint_path)
        rows = [restore_nan(r) for r in checkpoint["trials"]]
        anchors = [restore_nan(a) for a in checkpoint.get("anchors", [])]
        repair = not is_locked(path)  # a running search rewrites them itself
        if rows or (path / "trials.csv").exists():
            _sync(path / "trials.csv", rows, LEAD_COLUMNS, ("trial", "batch", "key"), repair,
                  warn)
        if anchors:
            _sync(path / "anchors.csv", anchors, ANCHOR_LEAD, ANCHOR_LEAD, repair, warn)
        elif (path / "anchors.csv").is_file():
            anchors = read_rows(path / "anchors.csv", ANCHOR_LEAD)
        return Run(path, config, rows, anchors)
    rows = read_trials(path / "trials.csv") if (path / "trials.csv").exists() else []
    _check_summary(path, rows)
    anchors = read_rows(path / "anchors.csv", ANCHOR_LEAD) if (path / "anchors.csv").exists() \
        else []
    return Run(path, config, rows, anchors)


def compare(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per run; `hypervolume_common` uses one box holding every run's box (runs with
    the same objectives), so the runs compare on one scale."""
    common: Box | None = None
    same = len({tuple(map(tuple, r.config["objectives"])) for r in runs}) == 1
    if same:
        for run in runs:
            common = run.box() if common is None else common.union(run.box(), run.objectives)
    table = []
    for run in runs:
        front = run.front()
        objectives = run.objectives
        first = objectives[0]
        best = (max if first.direction == "maximize" else min)(
            (float(r[first.metric]) for r in front), default=math.nan)
        row = {"run": run.path.name, "space": run.config["evaluation"]["space"],
               "strategy": run.config["strategy"],
               "estimator": run.config["evaluation"]["estimator"], "seed": run.config["seed"],
               "trials": len(run.rows), "front": len(front), f"best_{first.metric}": best,
               "hypervolume": normalised_hypervolume(front, objectives, run.box())}
        if common is not None:
            row["hypervolume_common"] = normalised_hypervolume(front, objectives, common)
        table.append(row)
    return table


# --- CSV files -----------------------------------------------------------------------------------
def read_rows(path: Path, required: Sequence[str] = ()) -> list[dict[str, Any]]:
    """A CSV file written by this version: UTF-8 text, every row complete, numbers where
    numbers go; anything else is a one-line ResultsError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror or first_line(exc)}") from None
    if b"\0" in data:
        raise ResultsError(f"{path} is not a CSV file (binary data)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ResultsError(f"{path} is not a CSV file (not UTF-8 text)") from None
    if text and not text.endswith("\n"):
        raise ResultsError(f"{path} ends in the middle of a row (cut short)")
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    except csv.Error as exc:
        raise ResultsError(f"{path} is not a valid CSV file: {first_line(exc)}") from None
    if not records:
        if required:
            raise ResultsError(f"{path} is empty")
        return []
    header = records[0]
    missing = [c for c in required if c not in header]
    if missing or len(set(header)) != len(header):
        problem = f"no {missing[0]!r} column" if missing else "a column named twice"
        raise ResultsError(f"{path} is not a file of this version: its header has {problem}")
    rows = []
    for number, record in enumerate(records[1:], 1):
        if len(record) != len(header):
            raise ResultsError(f"{path}, row {number}: {len(record)} fields where the header has "
                               f"{len(header)} (a cut or damaged row)")
        row = {name: _parse_cell(name, cell) for name, cell in zip(header, record)}
        for name, value in row.items():
            if name not in TEXT_COLUMNS and isinstance(value, str):
                raise ResultsError(f"{path}, row {number}: {name} is not a number ({value!r})")
        rows.append(row)
    return rows


def read_trials(path: Path) -> list[dict[str, Any]]:
    """trials.csv read strictly: its rows numbered 0, 1, 2... and each with a key."""
    rows = read_rows(path, ("trial", "batch", "key"))
    for index, row in enumerate(rows):
        if row["trial"] != index or not row["key"]:
            raise ResultsError(f"{path}, row {index + 1}: expected trial {index} with a key, got "
                               f"trial {row['trial']!r}, key {row['key']!r}")
    return rows


def _sync(path: Path, rows: list[dict[str, Any]], lead: Sequence[str],
          required: Sequence[str], repair: bool, warn: Warn) -> None:
    """Rebuild `path` from `rows` (the checkpoint's) where it disagrees with them."""
    expected = to_csv(rows, columns_of(rows, lead))
    try:
        if path.read_text(encoding="utf-8") == expected:
            return
    except (OSError, ValueError):
        pass
    problem = None
    if not path.exists():
        problem = "is missing"
    else:
        try:
            found = read_rows(path, required)
            if not _same_rows(found, rows):
                problem = (f"holds {len(found)} rows where checkpoint.json holds {len(rows)}"
                           if len(found) != len(rows) else "differs from checkpoint.json")
        except ResultsError as exc:
            problem = f"is damaged ({str(exc).removeprefix(str(path)).lstrip(' ,:')})"
    if problem is None or not repair:
        return
    try:
        from estimators.files import atomic_write_text

        atomic_write_text(path, expected)
        warn(f"{path} {problem}; rebuilt it from checkpoint.json (the source of truth)")
    except OSError as exc:
        warn(f"{path} {problem}; using checkpoint.json (cannot rewrite it: "
             f"{exc.strerror or first_line(exc)})")


def _same_rows(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        for key in set(x) | set(y):
            if _cell(x.get(key)) != _cell(y.get(key)):
                return False
    return True


def _cell(value: Any) -> Any:
    if value is None or value == "" or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def _check_summary(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Without a checkpoint, a trials.csv that disagrees with summary.json cannot be rebuilt."""
    try:
        counted = read_json(path / "summary.json").get("trials")
    except (ResultsError, AttributeError):
        return
    if isinstance(counted, int) and counted != len(rows):
        raise ResultsError(f"{path}/trials.csv holds {len(rows)} trials but summary.json counts "
                           f"{counted}, and there is no checkpoint.json to rebuild it from")


# --- JSON files ----------------------------------------------------------------------------------
def checked_config(config: Any, path: Path) -> dict[str, Any]:
    """`config` read from config.json, checked for what reading the run needs."""
    def bad(problem: str) -> ResultsError:
        return ResultsError(f"{path} is not a run configuration of this version: {problem}")

    if not isinstance(config, dict):
        raise bad(f"expected an object, got {json_kind(config)}")
    objectives = config.get("objectives")
    if not (isinstance(objectives, list) and objectives and _reads(objectives, Objective)):
        raise bad("'objectives' must be a list of [metric, maximize|minimize]")
    if not (isinstance(config.get("constraints"), list)
            and _reads(config["constraints"], Constraint)):
        raise bad("'constraints' must be a list of [metric, bound]")
    evaluation = config.get("evaluation")
    if not isinstance(evaluation, dict):
        raise bad(f"'evaluation' must be an object, got {json_kind(evaluation)}")
    for key, check in (("space", lambda v: isinstance(v, str)),
                       ("estimator", lambda v: isinstance(v, str)),
                       ("seed", is_int), ("threads", is_int),
                       ("options", lambda v: isinstance(v, dict)),
                       ("data", lambda v: isinstance(v, dict) and isinstance(v.get("name"), str))):
        if not check(evaluation.get(key)):
            raise bad(f"evaluation {key!r} is {json_kind(evaluation.get(key))}")
    if not isinstance(config.get("strategy"), str) or not is_int(config.get("seed")):
        raise bad("'strategy' must be a name and 'seed' a whole number")
    if not isinstance(config.get("largest", {}), dict) or \
            not isinstance(config.get("data") or {}, dict):
        raise bad("'largest' and 'data' must be objects")
    return config


def _reads(values: list[Any], kind: type[Objective] | type[Constraint]) -> bool:
    """Every item of `values` is the JSON form of a `kind`."""
    try:
        for value in values:
            kind.from_json(value)
    except ValueError:
        return False
    return True
