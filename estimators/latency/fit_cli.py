"""Fitting a device from a CSV of whole-network measurements and saving it by name."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from estimators.latency import fewshot_device as few
from estimators.latency.devices import LOCAL, check_name, load_device, save_device
from estimators.latency.errors import LatencyError
from estimators.latency.fingerprint import cpu_fingerprint
from estimators.latency.fit import fit_device
from estimators.latency.metrics import accuracy
from estimators.latency.store import LatencyStore
from search_spaces import Arch, InvalidArchError, SearchSpace, first_line

COLUMN_PREFIX = "latency_ms_"
METHODS = ("auto", "fewshot", "network")
FEWSHOT_BELOW = 30  # `auto`: few-shot below this many training rows (given reference devices)


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


def choose_method(space: SearchSpace, method: str, train: int,
                  cache_dir: str | None = None) -> str:
    """`fewshot` or `network`; `auto`: few-shot below FEWSHOT_BELOW training rows when the
    space has reference devices (shipped or the user's), the whole-network fit otherwise."""
    if method not in METHODS:
        raise LatencyError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if method != "auto":
        return method
    has_refs = (few.shipped_csv(space.name) is not None
                or few.user_reference_path(space.name, cache_dir).is_file())
    return "fewshot" if has_refs and train < FEWSHOT_BELOW else "network"


def _fit_fewshot(space: SearchSpace, archs: list[Arch], y: np.ndarray, train: int, seed: int,
                 name: str, cache_dir: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model dict, report) of a few-shot fit on `train` seeded rows, tested on the rest."""
    from scipy.stats import spearmanr

    start = time.perf_counter()
    if not few.MIN_ROWS <= train <= len(y):
        raise LatencyError(f"--train must be between {few.MIN_ROWS} and {len(y)} for a "
                           f"few-shot fit (the file has {len(y)} usable rows), got {train}")
    refs = few.load_references(space, cache_dir, exclude=(name,))
    models = few.reference_models(space, refs)
    order = np.random.default_rng(seed).permutation(len(y))
    tr, te = order[:train], order[train:]
    model = few.fit_fewshot_device(space, [archs[i] for i in tr], y[tr], models)
    predicted = np.array([model.latency_ms(archs[i]) for i in te])
    if len(te):
        test: dict[str, Any] = accuracy(predicted, y[te])
        test["spearman"] = float(spearmanr(predicted, y[te])[0]) if len(te) > 1 else float("nan")
    else:  # every row trains (e.g. the ten networks of `nas latency measure`): nothing to test
        test = {"within_5pct": None, "within_10pct": None, "mape": None, "kendall_tau": None,
                "n": 0, "spearman": None}
    report = {"method": "fewshot", "feature_set": "fewshot", "train_rows": int(len(tr)),
              "test_rows": int(len(te)), **test, "references": list(model.references),
              "strength": model.strength, "loo_rmse": model.loo_rmse,
              "seconds": round(time.perf_counter() - start, 2)}
    return model.as_dict(), report


def fit_from_csv(space: SearchSpace, measurements: str, column: str, train: int,
                 arch_column: str = "arch", name: str | None = None, seed: int = 0,
                 cache_dir: str | None = None, num_classes: int | None = None,
                 method: str = "network", save_as_reference: bool = False) -> dict[str, Any]:
    """Fit, evaluate on the held-out rows, save the model under `name` for `space`
    (`method`: network, fewshot or auto, see `choose_method`); `save_as_reference` also adds
    the file's measured column to the user's reference set of the space."""
    name = check_name(name or (column[len(COLUMN_PREFIX):] if column.startswith(COLUMN_PREFIX)
                               else column))
    method = choose_method(space, method, train, cache_dir)
    archs, latencies, dropped = read_measurements(space, measurements, column, arch_column)
    if method == "fewshot":
        model, summary = _fit_fewshot(space, archs, latencies, train, seed, name, cache_dir)
    else:
        model, summary = _fit_network(space, archs, latencies, train, seed, num_classes,
                                      cache_dir)
    reference = (str(few.add_reference(space, name, archs, latencies, cache_dir))
                 if save_as_reference else None)
    path = _save(name, space, model, summary, measurements, column, len(archs), dropped, seed,
                 cache_dir)
    return {"device": name, "space": space.name, "column": column, "path": str(path),
            "dropped_rows": dropped, "reference": reference, **summary}


def _fit_network(space: SearchSpace, archs: list[Arch], y: np.ndarray, train: int, seed: int,
                 num_classes: int | None,
                 cache_dir: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model dict, report) of the whole-network fit (this machine's block table as a feature
    where it covers the file's networks)."""
    table, table_fp = local_table(space, LatencyStore(cache_dir=cache_dir))
    if table is not None:
        needed = {s.signature for a in archs for s in space.blocks(a, num_classes)}
        if not needed <= table.keys():
            table, table_fp = None, ""  # the local table does not cover the file's networks
    report, _ = fit_device(space, archs, y, train, seed, table, table_fp, num_classes)
    return report.model.as_dict(), {"method": "network", **report.as_dict()}


def _save(name: str, space: SearchSpace, model: dict[str, Any], summary: dict[str, Any],
          measurements: str, column: str, rows: int, dropped: int, seed: int,
          cache_dir: str | None) -> Path:
    """Save `model` as the `space` model of device `name` (its other spaces' models kept)."""
    try:
        existing = load_device(name, cache_dir) if name not in LOCAL else {}
    except LatencyError:
        existing = {}
    models = existing.get("models", {}) if existing.get("kind") == "fit" else {}
    models[space.name] = {"model": model,
                          "evaluation": {k: v for k, v in summary.items()
                                         if k != "cross_validation"},
                          "source": {"file": str(Path(measurements).resolve()), "column": column,
                                     "rows": rows, "dropped_rows": dropped, "seed": seed},
                          "fitted_at": time.time()}
    return save_device(name, {"kind": "fit", "models": models}, cache_dir)
