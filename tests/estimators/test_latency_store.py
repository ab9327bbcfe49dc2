"""The SQLite lookup-table store and the cache directory."""
from __future__ import annotations

import multiprocessing as mp
import sys

import pytest

from estimators.latency.cache import ENV_VAR, cache_dir, platform_cache_dir
from estimators.latency.store import Correction, Entry, LatencyStore


def test_entries_round_trip_keyed_by_fingerprint_batch_dtype(tmp_path):
    store = LatencyStore(tmp_path / "t.sqlite")
    store.put("fpA", 1, "float32", [Entry("conv[3x8x8](k=3)", 0.5, 0.4, 7, 10)])
    store.put("fpA", 8, "float32", [Entry("conv[3x8x8](k=3)", 2.0, 1.9, 7, 3)])
    store.put("fpB", 1, "float32", [Entry("conv[3x8x8](k=3)", 9.0, 8.0, 7, 1)])
    expected = Entry("conv[3x8x8](k=3)", 0.5, 0.4, 7, 10)
    assert store.get("fpA", "conv[3x8x8](k=3)", 1, "float32") == expected
    assert store.get("fpA", "conv[3x8x8](k=3)", 1, "bfloat16") is None
    assert store.entries("fpA", 8, "float32")["conv[3x8x8](k=3)"].median_ms == 2.0
    assert store.count("fpA") == 2 and store.count() == 3
    keys = {(r["fingerprint"], r["batch"]) for r in store.summary()}
    assert keys == {("fpA", 1), ("fpA", 8), ("fpB", 1)}
    store.put("fpA", 1, "float32", [Entry("conv[3x8x8](k=3)", 0.7, 0.6)])  # replace, not duplicate
    assert store.count("fpA", 1, "float32") == 1
    assert store.get("fpA", "conv[3x8x8](k=3)", 1, "float32").stat("min") == 0.6


def test_corrections_and_devices_round_trip(tmp_path):
    store = LatencyStore(tmp_path / "t.sqlite")
    assert store.correction("fp", "mobile", 1, "float32") is None
    store.put_correction("fp", "mobile", 1, "float32", Correction(0.25, 1.2), {"networks": 8})
    correction, info = store.correction("fp", "mobile", 1, "float32")
    assert correction == Correction(0.25, 1.2) and info == {"networks": 8}
    assert correction.apply(10.0) == pytest.approx(12.25)
    store.put_device("fp", {"model": "x"})
    assert store.devices() == {"fp": {"model": "x"}}


def test_store_uses_wal_journal(tmp_path):
    store = LatencyStore(tmp_path / "t.sqlite")
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _writer(path: str, tag: str, start, errors) -> None:
    try:
        store = LatencyStore(path)  # a connection of its own, opened in the child
        start.wait(30)
        for i in range(150):
            store.put("fp", 1, "float32", [Entry(f"{tag}-{i}", float(i), float(i))])
            store.put("fp", 1, "float32", [Entry(f"shared-{i}", float(i), float(i))])
    except Exception as exc:  # reported to the parent, which fails the test
        errors.put(repr(exc))


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "shared.sqlite"
    LatencyStore(path).close()
    # fork where available: the children start without re-importing torch
    context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    start, errors = context.Event(), context.Queue()
    procs = [context.Process(target=_writer, args=(str(path), tag, start, errors))
             for tag in ("a", "b")]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    assert errors.empty(), errors.get()
    entries = LatencyStore(path).entries("fp", 1, "float32")
    assert len(entries) == 3 * 150
    assert {f"a-{i}" for i in range(150)} <= entries.keys()


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert (tmp_path / "arg").is_dir()
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert platform_cache_dir() == tmp_path / "xdg" / "nas"
    assert LatencyStore(cache_dir=tmp_path / "c").path == tmp_path / "c" / "latency.sqlite"
