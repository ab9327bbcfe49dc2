"""Named devices and how to open a predictor for one.

`cpu` and `cuda` are this machine (lookup tables measured here). Any other name is a file
`<cache>/devices/<name>.json`: a device learned by `nas latency fit` (kind `fit`; per space a
whole-network model, or a few-shot one whose model has kind `fewshot`) or a published table
imported by `nas latency import` (kind `lut`, entries in the SQLite store).
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from estimators.files import atomic_write_text
from estimators.latency.cache import devices_dir
from estimators.latency.errors import LatencyError
from estimators.latency.predictor import LocalTable, LutTable, Predictor, TablePredictor
from estimators.latency.profiler import Profiler
from estimators.latency.store import Correction, LatencyStore
from search_spaces import SearchSpace, first_line

LOCAL = ("cpu", "cuda")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")  # a file name on every system
CacheDir = str | os.PathLike[str] | None


def check_name(name: str) -> str:
    if name in LOCAL or not _NAME.fullmatch(name):
        raise LatencyError(f"device name {name!r} is not usable: letters, digits and _.+- "
                           f"(not starting with a symbol, at most 100), and not {' or '.join(LOCAL)}")
    return name


def device_path(name: str, cache_dir: CacheDir = None) -> Path:
    return devices_dir(cache_dir) / f"{check_name(name)}.json"


def save_device(name: str, payload: dict[str, Any], cache_dir: CacheDir = None) -> Path:
    path = device_path(name, cache_dir)
    atomic_write_text(path, json.dumps({"name": name, **payload}, indent=1))
    return path


def list_devices(cache_dir: CacheDir = None) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(devices_dir(cache_dir).glob("*.json")):
        try:
            found[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a damaged file is skipped in listings; opening it reports why
    return found


def load_device(name: str, cache_dir: CacheDir = None) -> dict[str, Any]:
    path = devices_dir(cache_dir) / f"{name}.json"
    if not _NAME.fullmatch(name) or not path.is_file():
        known = [*LOCAL, *list_devices(cache_dir)]
        raise LatencyError(f"unknown device {name!r}; known: {', '.join(known)} (learn one with "
                           f"`nas latency fit` or `nas latency import`)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LatencyError(f"device file {path} is damaged: {first_line(exc)}") from None
    if not isinstance(data, dict):
        raise LatencyError(f"device file {path} is damaged: not a JSON object")
    return data


def _lut_fields(device: str, data: dict[str, Any]) -> tuple[str, int, str, str, float]:
    """(fingerprint, batch size, dtype, format, overhead ms) of an imported device's file."""
    from estimators.latency.lut import FORMATS

    fields = (data.get("fingerprint"), data.get("batch_size"), data.get("dtype"),
              data.get("format"), data.get("overhead_ms", 0.0))
    fingerprint, batch, dtype, fmt, overhead = fields
    if not (isinstance(fingerprint, str) and isinstance(batch, int) and batch >= 1
            and isinstance(dtype, str) and fmt in FORMATS and isinstance(overhead, (int, float))
            and not isinstance(overhead, bool) and math.isfinite(overhead) and overhead >= 0):
        raise LatencyError(f"device file for {device!r} is damaged (fingerprint, batch_size, "
                           f"dtype, format or overhead_ms missing or of the wrong type); import "
                           f"the table again with `nas latency import ... --replace`")
    return fingerprint, batch, dtype, fmt, float(overhead)


def open_predictor(space: SearchSpace, device: str = "cpu", *, cache_dir: CacheDir = None,
                   batch_size: int = 1, dtype: str = "float32", threads: int | None = None,
                   clock: str | None = None, cuda_graphs: bool = False,
                   num_classes: int | None = None, stat: str = "median",
                   measure_missing: bool = True) -> Predictor:
    """A latency predictor for `space` on `device` (see the module docstring)."""
    store = LatencyStore(cache_dir=cache_dir)
    if device in LOCAL:
        profiler = Profiler(device, threads, batch_size, dtype, clock, cuda_graphs)
        fp = profiler.fingerprint.key
        found = store.correction(fp, space.name, batch_size, dtype)
        if found is None:
            raise LatencyError(
                f"no latency table for space {space.name!r} on this {device} ({fp}, batch "
                f"{batch_size}, {dtype}): run `nas latency build --space {space.name} "
                f"--device {device}` first")
        correction, info = found
        table = LocalTable(store, fp, batch_size, dtype, stat,
                           profiler if measure_missing else None)
        return TablePredictor(space, table, correction, device, num_classes,
                              {"fingerprint": fp, "entries": len(table.ms),
                               "batch_size": batch_size, "dtype": dtype, "stat": stat,
                               "calibration": info})
    data = load_device(device, cache_dir)
    if data.get("kind") == "lut":
        from estimators.latency.lut import KEYERS

        fingerprint, batch, dtype, fmt, overhead = _lut_fields(device, data)
        entries = {sig: e.median_ms for sig, e in store.entries(fingerprint, batch, dtype).items()}
        if not entries:
            raise LatencyError(f"device {device!r}: its entries are missing from the store "
                               f"{store.path}; import the table again")
        table = LutTable(entries, KEYERS[fmt], device)
        return TablePredictor(space, table, Correction(overhead, 1.0), device,
                              num_classes, {"format": fmt, "entries": len(entries),
                                            "batch_size": batch})
    if data.get("kind") == "fit":
        from estimators.latency.fit import FittedModel, FittedPredictor

        models = data.get("models", {})
        if not isinstance(models, dict):
            raise LatencyError(f"device file for {device!r} is damaged: 'models' is not a "
                               f"mapping; fit the device again")
        if space.name not in models:
            raise LatencyError(f"device {device!r} was fitted for space(s) "
                               f"{', '.join(models) or 'none'}, not {space.name!r}; fit it with "
                               f"`nas latency fit --space {space.name} --name {device} ...`")
        try:
            entry = models[space.name]["model"]
            if entry.get("kind") == "fewshot":
                from estimators.latency.fewshot_device import FewShotModel, FewShotPredictor

                return FewShotPredictor(space, FewShotModel.from_dict(entry), device)
            model = FittedModel.from_dict(entry)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LatencyError(f"device file for {device!r} is damaged (its {space.name} model: "
                               f"{type(exc).__name__} {first_line(exc)}); fit the device "
                               f"again") from None
        table = None
        if model.table_fingerprint:
            table = {sig: e.median_ms for sig, e in
                     store.entries(model.table_fingerprint, 1, "float32").items()}
        return FittedPredictor(space, model, device, table)
    raise LatencyError(f"device file for {device!r} has an unknown kind {data.get('kind')!r}")


def import_lut(path: str, name: str, fmt: str | None = None, batch_size: int = 1,
               cache_dir: CacheDir = None, replace: bool = False) -> dict[str, Any]:
    """Store a published table's entries under `lut:<name>` and register the device. A name
    already in use is refused (its entries would mix with the new ones) unless `replace`:
    then the old device and every entry it had are replaced wholly."""
    from estimators.latency.lut import read_lut
    from estimators.latency.store import Entry

    check_name(name)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise LatencyError(f"--batch-size must be a whole number >= 1, got {batch_size!r}")
    fmt, entries, overhead, notes = read_lut(path, fmt)
    fingerprint = f"lut:{name}"
    store = LatencyStore(cache_dir=cache_dir)
    if not replace and (device_path(name, cache_dir).exists() or store.count(fingerprint)):
        raise LatencyError(f"device {name!r} already exists; importing under its name would "
                           f"mix two tables: pass --replace to replace it wholly, or choose "
                           f"another --name")
    store.replace_all(fingerprint, batch_size, "float32",
                      [Entry(key, ms, ms) for key, ms in entries.items()])
    payload = {"kind": "lut", "format": fmt, "source": str(Path(path).resolve()),
               "fingerprint": fingerprint, "batch_size": batch_size, "dtype": "float32",
               "overhead_ms": overhead, "entries": len(entries), "notes": notes}
    save_device(name, payload, cache_dir)
    return {"name": name, **payload}
