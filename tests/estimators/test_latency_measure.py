"""`nas latency measure`: time random whole networks here, write a CSV `nas latency fit` reads."""
from __future__ import annotations

import csv
import json

from latency_toy import toy_space

from estimators.latency.profiler import Profiler
from estimators.latency.timing import Timing
from nas.cli import main
from search_spaces import get_space


def test_measure_writes_a_csv_of_distinct_networks(tmp_path, capsys):
    toy_space()
    out = tmp_path / "toy.csv"
    assert main(["latency", "measure", "--space", "lattoy", "-n", "3", "--passes", "1",
                 "--out", str(out), "--seed", "1", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 3 and report["fingerprint"].startswith("cpu|") and report["passes"] == 1
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    space = get_space("lattoy")
    assert len({space.parse(r["arch"]) for r in rows}) == 3
    assert all(float(r["latency_ms"]) > 0 for r in rows)


def test_measure_alternates_networks_then_fits_fewshot(tmp_path, capsys, monkeypatch):
    """Mocked timer: the passes visit every network in turn; the CSV fits few-shot on all rows."""
    calls: list[int] = []

    def fake_time_call(self, fn, plan=None):
        calls.append(id(fn))
        return Timing(1.0 + 0.1 * (len(calls) % 5), 1.0, 1, 1)

    monkeypatch.setattr(Profiler, "time_call", fake_time_call)
    out = tmp_path / "cpu.csv"
    assert main(["latency", "measure", "--space", "nb201", "--n", "5", "--passes", "2",
                 "--out", str(out), "--quiet"]) == 0
    assert "timed 5 nb201 networks" in capsys.readouterr().out
    assert len(calls) == 10 and calls[:5] == calls[5:] and len(set(calls)) == 5
    cache = str(tmp_path / "cache")
    assert main(["latency", "fit", "--space", "nb201", "--measurements", str(out), "--column",
                 "latency_ms", "--train", "5", "--name", "mycpu", "--cache-dir", cache]) == 0
    text = capsys.readouterr().out
    assert "trained on 5 rows, tested on 0 (all rows train" in text and "'mycpu'" in text
    assert main(["latency", "predict", "--space", "nb201", "--arch",
                 "nb201:c3+c1.avg+skip.skip.none", "--device", "mycpu", "--cache-dir", cache,
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["latency_ms"] > 0


def test_measure_bad_input_is_one_line(tmp_path, capsys):
    cases = [(["--device", "pixel9"], "--device cpu or cuda"),
             (["--out", str(tmp_path)], "is a folder"),
             (["--space", "nope"], "nope")]
    for extra, message in cases:
        argv = ["latency", "measure", "--space", "lattoy", "-n", "2", "--passes", "1", "--out",
                str(tmp_path / "x.csv"), "--quiet", *extra]
        toy_space()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
