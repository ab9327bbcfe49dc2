"""Fitting a device from a CSV of whole-network measurements and saving it by name."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from estimators.latency.devices import LOCAL, check_name, load_device, save_device
from estimators.latency.errors import LatencyError
from estimators.latency.fingerprint import cpu_fingerprint
from estimators.latency.fit import fit_device
from estimators.latency.store import LatencyStore
from search_spaces import Arch, InvalidArchError, SearchSpace, first_line

COLUMN_PREFIX = "latency_ms_"


def read_measurements(space: SearchSpace, path: str | os.PathLike[str], column: str,
                      arch_column: str = "arch") -> tuple[list[Arch], np.ndarray, int]:
    """(archs, latencies, rows dropped for a missing/non-positive latency)."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise LatencyError(f"measurements file {path} does not exist") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise LatencyError(f"cannot read {path} as CSV: {first_line(exc)}") from None
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    if column not in frame.columns:
        raise LatencyError(f"{path} has no column {column!r}; numeric columns: "
                           f"{', '.join(map(str, numeric)) or 'none'}")
    if arch_column not in frame.columns:
        raise LatencyError(f"{path} has no architecture column {arch_column!r}; columns: "
                           f"{', '.join(map(str, frame.columns))} (choose with --arch-column)")
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(values) & (values > 0)
    archs = []
    for row, text in zip(np.flatnonzero(keep), frame[arch_column][keep]):
        try:
            archs.append(space.parse(str(text)))
        except InvalidArchError as exc:
            raise LatencyError(f"{path} row {row + 2}: {exc}") from None
    return archs, values[keep], int((~keep).sum())


def local_table(space: SearchSpace, store: LatencyStore) -> tuple[dict[str, float] | None, str]:
    """This machine's one-thread CPU table for `space`, if it was built."""
    fp = cpu_fingerprint(1).key
    if store.correction(fp, space.name, 1, "float32") is None:
        return None, ""
    return {s: e.median_ms for s, e in store.entries(fp, 1, "float32").items()}, fp


def fit_from_csv(space: SearchSpace, measurements: str, column: str, train: int,
                 arch_column: str = "arch", name: str | None = None, seed: int = 0,
                 cache_dir: str | None = None, num_classes: int | None = None) -> dict[str, Any]:
    """Fit, evaluate on the held-out rows, save the model under `name` for `space`."""
    name = check_name(name or (column[len(COLUMN_PREFIX):] if column.startswith(COLUMN_PREFIX)
                               else column))
    archs, latencies, dropped = read_measurements(space, measurements, column, arch_column)
    store = LatencyStore(cache_dir=cache_dir)
    table, table_fp = local_table(space, store)
    if table is not None:
        needed = {s.signature for a in archs for s in space.blocks(a, num_classes)}
        if not needed <= table.keys():
            table, table_fp = None, ""  # the local table does not cover the file's networks
    report, _ = fit_device(space, archs, latencies, train, seed, table, table_fp, num_classes)
    try:
        existing = load_device(name, cache_dir) if name not in LOCAL else {}
    except LatencyError:
        existing = {}
    models = existing.get("models", {}) if existing.get("kind") == "fit" else {}
    summary = report.as_dict()
    models[space.name] = {"model": report.model.as_dict(),
                          "evaluation": {k: v for k, v in summary.items()
                                         if k != "cross_validation"},
                          "source": {"file": str(Path(measurements).resolve()), "column": column,
                                     "rows": len(archs), "dropped_rows": dropped, "seed": seed},
                          "fitted_at": time.time()}
    path = save_device(name, {"kind": "fit", "models": models}, cache_dir)
    return {"device": name, "space": space.name, "column": column, "path": str(path),
            "dropped_rows": dropped, **summary}
