"""Named devices and how to open a predictor for one.

`cpu` and `cuda` are this machine (lookup tables measured here). Any other name is a file
`<cache>/devices/<name>.json`: a device learned by `nas latency fit` (kind `fit`) or a
published table imported by `nas latency import` (kind `lut`, entries in the SQLite store).
"""
from __future__ import annotations

import json
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
from search_spaces import SearchSpace

LOCAL = ("cpu", "cuda")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
CacheDir = str | os.PathLike[str] | None


def check_name(name: str) -> str:
    if name in LOCAL or not _NAME.fullmatch(name):
        raise LatencyError(f"device name {name!r} is not usable: letters, digits and _.+- "
                           f"(not starting with a symbol), and not {' or '.join(LOCAL)}")
    return name


def save_device(name: str, payload: dict[str, Any], cache_dir: CacheDir = None) -> Path:
    path = devices_dir(cache_dir) / f"{check_name(name)}.json"
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
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LatencyError(f"device file {path} is damaged: {exc}") from None


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

        entries = {sig: e.median_ms for sig, e in
                   store.entries(data["fingerprint"], data["batch_size"], data["dtype"]).items()}
        if not entries:
            raise LatencyError(f"device {device!r}: its entries are missing from the store "
                               f"{store.path}; import the table again")
        table = LutTable(entries, KEYERS[data["format"]], device)
        return TablePredictor(space, table, Correction(data.get("overhead_ms", 0.0), 1.0), device,
                              num_classes, {"format": data["format"], "entries": len(entries),
                                            "batch_size": data["batch_size"]})
    if data.get("kind") == "fit":
        from estimators.latency.fit import FittedModel, FittedPredictor

        models = data.get("models", {})
        if space.name not in models:
            raise LatencyError(f"device {device!r} was fitted for space(s) "
                               f"{', '.join(models) or 'none'}, not {space.name!r}; fit it with "
                               f"`nas latency fit --space {space.name} --name {device} ...`")
        model = FittedModel.from_dict(models[space.name]["model"])
        table = None
        if model.table_fingerprint:
            table = {sig: e.median_ms for sig, e in
                     store.entries(model.table_fingerprint, 1, "float32").items()}
        return FittedPredictor(space, model, device, table)
    raise LatencyError(f"device file for {device!r} has an unknown kind {data.get('kind')!r}")


def import_lut(path: str, name: str, fmt: str | None = None, batch_size: int = 1,
               cache_dir: CacheDir = None) -> dict[str, Any]:
    """Store a published table's entries under `lut:<name>` and register the device."""
    from estimators.latency.lut import read_lut
    from estimators.latency.store import Entry

    check_name(name)
    fmt, entries, overhead, notes = read_lut(path, fmt)
    fingerprint = f"lut:{name}"
    store = LatencyStore(cache_dir=cache_dir)
    store.put(fingerprint, batch_size, "float32",
              [Entry(key, ms, ms) for key, ms in entries.items()])
    payload = {"kind": "lut", "format": fmt, "source": str(Path(path).resolve()),
               "fingerprint": fingerprint, "batch_size": batch_size, "dtype": "float32",
               "overhead_ms": overhead, "entries": len(entries), "notes": notes}
    save_device(name, payload, cache_dir)
    return {"name": name, **payload}
