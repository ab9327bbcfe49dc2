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


# --- damaged tables: detected on read, one line naming the table and row ---------------------
def _raw(path, *statements):
    import sqlite3

    conn = sqlite3.connect(path)
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("value, column", [
    ("'fast'", "median_ms"),  # text in a REAL column stays text in SQLite
    ("-0.5", "median_ms"),  # a negative latency
    ("'nan'", "median_ms"),
])
def test_wrongly_typed_or_negative_entries_are_one_line_errors(tmp_path, value, column):
    from estimators.latency.errors import LatencyError

    path = tmp_path / "t.sqlite"
    LatencyStore(path).put("fp", 1, "float32", [Entry("good", 1.0, 1.0), Entry("bad", 1.0, 1.0)])
    _raw(path, f"UPDATE blocks SET {column} = {value} WHERE signature = 'bad'")
    store = LatencyStore(path)
    for read in (lambda: store.entries("fp", 1, "float32"),
                 lambda: store.get("fp", "bad", 1, "float32")):
        with pytest.raises(LatencyError) as info:
            read()
        message = str(info.value)
        assert "\n" not in message and "'blocks'" in message and "bad" in message
        assert column in message
    assert store.get("fp", "good", 1, "float32").median_ms == 1.0


def test_null_latency_in_a_foreign_schema_is_an_error(tmp_path):
    from estimators.latency.errors import LatencyError

    path = tmp_path / "t.sqlite"
    _raw(path, "CREATE TABLE blocks (fingerprint TEXT, signature TEXT, batch INTEGER, "
               "dtype TEXT, median_ms REAL, min_ms REAL, rounds INTEGER, calls INTEGER, "
               "measured_at REAL)",
         "INSERT INTO blocks VALUES ('fp', 'sig', 1, 'float32', NULL, 1.0, 1, 1, 0)")
    with pytest.raises(LatencyError, match="median_ms is None"):
        LatencyStore(path).entries("fp", 1, "float32")


@pytest.mark.parametrize("update, column", [
    ("scale = 'x'", "scale"), ("scale = -1.0", "scale"), ("overhead_ms = 'slow'", "overhead_ms"),
    ("info = 'not json'", "info"),
])
def test_damaged_corrections_are_one_line_errors(tmp_path, update, column):
    from estimators.latency.errors import LatencyError

    path = tmp_path / "t.sqlite"
    LatencyStore(path).put_correction("fp", "mobile", 1, "float32", Correction(0.1, 1.0), {})
    _raw(path, f"UPDATE corrections SET {update}")
    with pytest.raises(LatencyError) as info:
        LatencyStore(path).correction("fp", "mobile", 1, "float32")
    assert "\n" not in str(info.value) and "'corrections'" in str(info.value)
    assert column in str(info.value)


def test_a_prediction_is_never_negative(tmp_path):
    """A fitted negative overhead below the calibrated range would predict < 0 ms."""
    from latency_toy import toy_space

    from estimators.latency.predictor import LocalTable, TablePredictor

    space = toy_space()
    store = LatencyStore(tmp_path / "t.sqlite")
    arch = space.min_arch()
    store.put("fp", 1, "float32", [Entry(s.signature, 0.01, 0.01) for s in space.blocks(arch)])
    predictor = TablePredictor(space, LocalTable(store, "fp", 1, "float32"),
                               Correction(-5.0, 1.0), "cpu")
    assert predictor.latency_ms(arch) == 0.0


def test_replace_all_drops_every_old_entry_of_the_fingerprint(tmp_path):
    store = LatencyStore(tmp_path / "t.sqlite")
    store.put("lut:x", 1, "float32", [Entry("old", 1.0, 1.0)])
    store.put("lut:x", 8, "float32", [Entry("old8", 1.0, 1.0)])
    store.put("other", 1, "float32", [Entry("keep", 1.0, 1.0)])
    assert store.replace_all("lut:x", 1, "float32", [Entry("new", 2.0, 2.0)]) == 1
    assert store.count("lut:x") == 1 and set(store.entries("lut:x", 1, "float32")) == {"new"}
    assert store.count("other") == 1
