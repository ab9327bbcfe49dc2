"""`nas latency build / predict / validate / devices` end to end on the toy space."""
from __future__ import annotations

import csv
import json

import pytest
from latency_toy import toy_space

from nas.cli import main


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    toy_space()
    cache = str(tmp_path_factory.mktemp("latency-cache"))
    assert main(["latency", "build", "--space", "lattoy", "--calibration", "3", "--rounds", "2",
                 "--passes", "1", "--cache-dir", cache, "--quiet", "--json"]) == 0
    return cache


def test_build_reports_entries_and_resumes(built, capsys):
    assert main(["latency", "build", "--space", "lattoy", "--calibration", "2", "--passes", "1",
                 "--cache-dir", built, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["entries"] == report["distinct_blocks"] == 21 and report["measured"] == 0
    assert report["fingerprint"].startswith("cpu|") and report["batch_size"] == 1
    assert {"overhead_ms", "scale"} <= report["correction"].keys()
    assert main(["latency", "build", "--space", "lattoy", "--calibration", "0", "--cache-dir",
                 built, "--quiet"]) == 0
    assert "21 entries for cpu|" in capsys.readouterr().out


def test_predict_text_and_json(built, capsys):
    assert main(["latency", "predict", "--space", "lattoy", "--arch", "r12-k5e4-k3e2",
                 "--cache-dir", built, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["key"] == "lattoy:r12-k5e4-k3e2" and out["latency_ms"] > 0
    layers = out["layers"]
    assert [row["name"] for row in layers] == ["stem", "stage1.0", "stage2.0", "head.pool",
                                               "classifier"]
    c = out["predictor"]
    assert out["latency_ms"] == pytest.approx(c["overhead_ms"] + c["scale"] *
                                              sum(r["latency_ms"] for r in layers))
    assert main(["latency", "predict", "--space", "lattoy", "--arch", "r12-k5e4-k3e2",
                 "--cache-dir", built, "--layers"]) == 0
    text = capsys.readouterr().out
    assert "latency on cpu:" in text and "stage2.0" in text


def test_validate_writes_csv_plot_and_metrics(built, tmp_path, capsys):
    out = tmp_path / "val"
    assert main(["latency", "validate", "--space", "lattoy", "-n", "4", "--calibration", "3",
                 "--passes", "1", "--out", str(out), "--cache-dir", built, "--json",
                 "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("within_5pct", "within_10pct", "mape", "kendall_tau"):
        assert key in result and key in result["flops_baseline"] and key in result["table"]
    assert 0 <= result["within_10pct"] <= 1 and result["n"] == 4
    with open(out / "validation.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 7 and {r["split"] for r in rows} == {"test", "calibration"}
    assert (out / "validation.png").read_bytes()[:4] == b"\x89PNG"


def test_sample_under_a_latency_budget_on_this_cpu(built, capsys):
    """`nas sample --device cpu` prices samples with the table built here."""
    assert main(["latency", "predict", "--space", "lattoy", "--arch", "r8-k3e2-k3e2",
                 "--cache-dir", built, "--json", "--no-measure"]) == 0
    smallest = json.loads(capsys.readouterr().out)["latency_ms"]
    budget = 1.5 * smallest
    assert main(["sample", "--space", "lattoy", "-n", "4", "--device", "cpu", "--budget",
                 f"{budget:.5f}ms-latency", "--cache-dir", built, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and all(0 < r["latency_ms"] <= budget for r in rows)
    assert main(["sample", "--space", "lattoy", "-n", "2", "--device", "cpu", "--budget",
                 f"{0.5 * smallest:.5f}ms-latency", "--cache-dir", built]) == 2
    assert "smallest architecture" in capsys.readouterr().err


def test_user_errors_exit_2_with_one_line(built, tmp_path, capsys):
    cases = [
        (["latency", "predict", "--space", "lattoy", "--arch", "r9-k3e2-k3e2", "--cache-dir",
          built], "r=9 is not one of"),
        (["latency", "predict", "--space", "lattoy", "--arch", "r8-k3e2-k3e2", "--device",
          "pixel9", "--cache-dir", built], "unknown device 'pixel9'"),
        (["latency", "predict", "--space", "lattoy", "--arch", "r8-k3e2-k3e2", "--cache-dir",
          str(tmp_path / "empty")], "run `nas latency build --space lattoy"),
        (["latency", "build", "--space", "lattoy", "--device", "pixel9"], "must be cpu or cuda"),
        (["latency", "build", "--space", "lattoy", "--threads", "2", "--clock", "thread"],
         "only measures one thread"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("error: ") and err.count("\n") == 1
    with pytest.raises(SystemExit) as info:
        main(["latency"])
    assert info.value.code == 2


@pytest.mark.parametrize("argv", [
    ["latency", "predict", "--space", "lattoy", "--arch", "r8-k3e2-k3e2", "--batch-size", "0"],
    ["latency", "predict", "--space", "lattoy", "--arch", "r8-k3e2-k3e2", "--threads", "0"],
    ["latency", "predict", "--space", "lattoy", "--arch", "r8-k3e2-k3e2", "--classes", "0"],
    ["latency", "predict", "--space", "lattoy", "--arch", "r8-k3e2-k3e2", "--classes", "-5"],
    ["latency", "build", "--space", "lattoy", "--threads", "-2"],
    ["latency", "build", "--space", "lattoy", "--calibration", "-1"],
    ["latency", "validate", "--space", "lattoy", "--batch-size", "0"],
    ["latency", "validate", "--space", "lattoy", "-n", "0"],
    ["latency", "import", "table.json", "--name", "x", "--batch-size", "0"],
])
def test_zero_and_negative_counts_are_refused_not_replaced(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_thread_and_class_counts_have_sane_upper_bounds():
    import argparse

    from nas.cli import common as cli_types

    assert cli_types.threads("4") == 4 and cli_types.classes("1000") == 1000
    for parse, text in ((cli_types.threads, "1000000000"), (cli_types.classes, "10" * 30),
                        (cli_types.threads, "0"), (cli_types.classes, "-5")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_profiler_refuses_zero_threads():
    from estimators.latency import LatencyError, Profiler

    with pytest.raises(LatencyError, match="threads"):
        Profiler("cpu", threads=0)
    with pytest.raises(LatencyError, match="batch-size"):
        Profiler("cpu", batch_size=0)
