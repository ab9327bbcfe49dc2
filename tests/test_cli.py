"""The `nas` command line: JSON shapes, readable output, and exit status 2 for user mistakes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nas.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_spaces_json_lists_every_space(capsys):
    code, out, _ = run(capsys, "spaces", "--json")
    assert code == 0
    rows = json.loads(out)
    names = {r["name"] for r in rows}
    assert {"mobile", "mobilenetv2", "fbnet", "nb201", "resnet", "densenet", "vit"} <= names
    assert all(r["log10_size"] > 0 and r["dimensions"] for r in rows)


def test_spaces_table(capsys):
    code, out, _ = run(capsys, "spaces")
    assert code == 0 and "log10_size" in out and "mobile" in out


def test_sample_json_within_budget_and_seeded(capsys):
    code, out, _ = run(capsys, "sample", "--space", "mobile", "-n", "5", "--seed", "3",
                       "--budget", "200M-flops", "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 5
    assert all(r["flops"] <= 200e6 and r["key"].startswith("mobile:") for r in rows)
    assert {"key", "flops", "flops_sparse", "params"} <= set(rows[0])
    _, again, _ = run(capsys, "sample", "--space", "mobile", "-n", "5", "--seed", "3",
                      "--budget", "200M-flops", "--json")
    assert json.loads(again) == rows


def test_describe_reference_reproduces_mobilenet_v2(capsys):
    code, out, _ = run(capsys, "describe", "--space", "mobilenetv2", "--ref", "mobilenet_v2",
                       "--json")
    assert code == 0
    info = json.loads(out)
    assert info["params"] == 3_504_872
    assert info["flops"] == pytest.approx(300.77e6, rel=0.001)
    assert info["flops_sparse"] == info["flops"]
    assert sum(layer["params"] for layer in info["layers"]) == info["params"]


def test_describe_accepts_published_forms(capsys):
    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    code, out, _ = run(capsys, "describe", "--space", "nb201", "--arch", cell, "--json")
    assert code == 0 and json.loads(out)["params"] == 1_531_546
    ofa = ('{"ks":[7,5,5,5,7,7,5,7,5,7,3,7,5,3,7,3,5,3,5,3],"e":[6,4,4,6,6,3,4,3,3,6,3,3,3,6,3,4,'
           '6,4,3,6],"d":[2,2,2,2,3],"r":204}')
    code, out, _ = run(capsys, "describe", "--space", "mobile", "--arch", ofa, "--json")
    assert code == 0 and json.loads(out)["params"] == 4_457_920
    fbnet = "-".join(["k3_e1"] * 22)
    code, out, _ = run(capsys, "describe", "--space", "fbnet", "--arch", fbnet, "--json")
    assert code == 0 and json.loads(out)["params"] == 2_525_176


def test_describe_readable_table_and_verify(capsys):
    code, out, _ = run(capsys, "describe", "--space", "resnet", "--ref", "resnet18", "--verify")
    assert code == 0
    assert "stem" in out and "fvcore" in out and "11,689,512" in out


@pytest.mark.parametrize("argv, message", [
    (["sample", "--space", "nope"], "unknown space"),
    (["sample", "--space", "mobile", "--budget", "300X-flops"], "malformed budget"),
    (["sample", "--space", "mobile", "--budget", "1M-flops"], "smallest architecture"),
    (["describe", "--space", "mobile", "--arch", "mobile:not-a-key"], ""),
    (["describe", "--space", "resnet", "--ref", "resnet1000"], "unknown reference"),
    (["describe", "--space", "mobile"], "one of the arguments"),
    (["sample", "--space", "nb201-sparse"], "unknown space"),
    (["sample", "--space", "/nonexistent/space.yaml"], "does not exist"),
])
def test_user_errors_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert "Traceback" not in err


def test_console_entry_point_exit_status():
    result = subprocess.run([sys.executable, "-m", "nas", "sample", "--space", "mobile",
                             "--budget", "5-bananas"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: malformed budget")


def test_space_from_yaml_file(tmp_path, capsys):
    path = tmp_path / "small_mobile.yaml"
    path.write_text("name: small_mobile\nbase: mobilenetv2\n")
    code, out, _ = run(capsys, "sample", "--space", str(path), "-n", "3", "--json")
    assert code == 0
    assert all(r["key"].startswith("small_mobile:") for r in json.loads(out))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbase: mobilenetv2\nnot_a_setting: 3\n")
    code, _, err = run(capsys, "sample", "--space", str(bad))
    assert code == 2 and "not_a_setting" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, _, err = run(capsys, "sample", "--space", str(broken))
    assert code == 2 and "cannot read" in err


def test_documented_example_space_file(capsys):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "mobile_small.yaml"
    code, out, _ = run(capsys, "sample", "--space", str(example), "-n", "4", "--budget",
                       "100M-flops", "--json")
    assert code == 0
    rows = json.loads(out)
    assert all(r["flops"] <= 100e6 and r["key"].startswith("mobile_small:") for r in rows)


@pytest.mark.parametrize("argv", [
    ["sample", "--space", "mobile", "--classes", "0"],
    ["sample", "--space", "mobile", "--classes", "-5"],
    ["describe", "--space", "resnet", "--ref", "resnet18", "--classes", "0"],
    ["describe", "--space", "resnet", "--ref", "resnet18", "--classes", "-5"],
    ["describe", "--space", "resnet", "--ref", "resnet18", "--classes", "10" * 20],
    ["sample", "--space", "mobile", "-n", "9" * 60],  # ran for ever
    ["sample", "--space", "x" * 300],  # OSError: file name too long
    ["sample", "--space", "mobile", "--seed", "-1"],  # numpy's ValueError escaped before
    ["sample", "--space", "mobile", "--seed", "9" * 40],
    ["evaluate", "--space", "nb201", "--ref", "all_c3", "--estimator", "proxy", "--seed", "-1"],
    ["benchmark", "--table", "t.csv", "--space", "nb201", "--objective", "acc", "--strategy",
     "random", "--seed-start", "-3"],
])
def test_class_and_other_counts_must_be_positive(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "expected a" in err or "at least 1" in err or "unknown space" in err


@pytest.mark.parametrize("content, setting", [
    ("base: mobile\nkernels: [3, 4]\n", "kernels"),  # `describe --verify` crashed on k=4
    ("base: mobile\nexpands: [0]\n", "expands"),
    ("base: mobile\nresolutions: [-8]\n", "resolutions"),
    ("base: resnet\nstage_channels: [0, 128, 256, 512]\n", "stage_channels"),
    ("base: fbnet\nresolution: 0\n", "resolution"),
])
def test_space_file_mistakes_are_one_error_line(tmp_path, capsys, content, setting):
    path = tmp_path / "mine.yaml"
    path.write_text(content)
    code, _, err = run(capsys, "describe", "--space", str(path), "--ref", "largest", "--verify")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert setting in err and "Traceback" not in err


def test_space_file_named_like_a_builtin_is_refused(tmp_path, capsys):
    path = tmp_path / "resnet.yaml"
    path.write_text("base: resnet\nresolutions: [224]\n")
    code, _, err = run(capsys, "sample", "--space", str(path), "-n", "1")
    assert code == 2 and "built-in" in err and err.count("\n") == 1
    path.write_text("name: mobile\nbase: mobile\n")
    code, _, err = run(capsys, "sample", "--space", str(path), "-n", "1")
    assert code == 2 and "built-in" in err


@pytest.mark.parametrize("key", [
    "resnet:basic-d\u0662.2.2.2-w1.0.1.0.1.0.1.0-r224",  # Arabic-Indic 2
    "resnet:basic-d2.2.2.2-w1.0.1.0.1.0.1.0-r\uff12\uff12\uff14",  # full-width 224
    "densenet:g32-c0.5-dense.dense.dense.dense-b6.12.24.16-r\u0662\u0662\u0664",
])
def test_keys_with_non_ascii_digits_are_one_error_line(capsys, key):
    space = key.partition(":")[0]
    code, _, err = run(capsys, "describe", "--space", space, "--arch", key)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_benchmark_workers_zero_is_refused(tmp_path, capsys):
    """`--workers 0` used to run silently as one worker."""
    import numpy as np

    from search_spaces import get_space

    space = get_space("nb201")
    rng = np.random.default_rng(0)
    archs = {space.sample(rng) for _ in range(40)}
    table = tmp_path / "nb.csv"
    table.write_text("arch,acc\n" + "".join(f"{a.key},{i}\n" for i, a in enumerate(archs)))
    argv = ["benchmark", "--table", str(table), "--space", "nb201", "--objective", "acc",
            "--strategy", "random", "--queries", "5", "--seeds", "2"]
    code, _, err = run(capsys, *argv, "--workers", "0")
    assert code == 2 and "in 1..1024" in err and err.count("\n") == 1
    code, _, _ = run(capsys, *argv)
    assert code == 0


@pytest.mark.parametrize("device", ["9" * 400, "x" * 101])
def test_a_device_name_too_long_for_a_file_is_one_error_line(capsys, device):
    code, _, err = run(capsys, "sample", "--space", "mobile", "-n", "1", "--device", device)
    assert code == 2 and err.startswith("error: unknown device") and "Traceback" not in err


def test_a_reader_that_stops_early_is_no_traceback(monkeypatch):
    """`nas spaces | head -1`: the pipe is closed before the table is written."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    closed = os.fdopen(write_end, "w", buffering=1)  # each line written at once, as to a tty
    monkeypatch.setattr(sys, "stdout", closed)
    try:
        assert main(["spaces"]) == 0
    finally:
        closed.close()


# A settings dict of the command itself that cannot be built: grow and compress miss their
# required start/teacher; evolve-layer has a wrongly typed value.
DAMAGED = {"grow": ({"no_such_setting": 1}, "damaged settings"),
           "compress": ({"no_such_setting": 1}, "damaged settings"),
           "evolve-layer": ({"population": "many"}, "population must be")}


@pytest.mark.parametrize("command", list(DAMAGED))
@pytest.mark.parametrize("case", ["no config", "another command", "damaged"])
def test_resuming_a_damaged_run_folder_is_one_line(tmp_path, capsys, command, case):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    settings, words = DAMAGED[command]
    config = {"no config": None,
              "another command": {"command": "nas search", "settings": {}},
              "damaged": {"command": f"nas {command}", "settings": settings}}[case]
    words = {"no config": "no config.json", "another command": "another command"}.get(case, words)
    if config is not None:
        (run_dir / "config.json").write_text(json.dumps(config))
    code, _, err = run(capsys, command, "--resume", str(run_dir))
    assert code == 2 and err.count("\n") == 1 and words in err


@pytest.mark.parametrize("command", list(DAMAGED))
def test_an_out_folder_holding_a_run_is_refused(tmp_path, capsys, command):
    (tmp_path / "config.json").write_text("{}")
    extra = {"grow": ["--start", "x.pt"], "compress": ["--teacher", "x.pt"]}.get(command, [])
    code, _, err = run(capsys, command, *extra, "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "already holds a run" in err


LONG = "9" * 400  # longer than a file name may be


@pytest.mark.parametrize("argv", [
    ["grow", "--start", LONG],
    ["grow", "--start", "/nonexistent.pt", "--out", LONG],
    ["compress", "--teacher", "/nonexistent.pt", "--resume", LONG],
    ["stitch", "--anchors", "/a.pt", "/b.pt", "--out", "a\x00b"],
    ["stitch", "--anchors", "/a.pt", "/b.pt", "--out", ""],
    ["search", "--space", "nb201", "--out", "a\x00b"],
])
def test_a_path_the_system_refuses_is_one_line(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error:")
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["grow", "--start", "/nonexistent.pt"],
    ["compress", "--teacher", "/nonexistent.pt"],
    ["stitch", "--anchors", "/nonexistent/a.pt", "/nonexistent/b.pt"],
])
@pytest.mark.parametrize("where", ["--results", "--out"])
def test_refused_input_leaves_no_run_folder(tmp_path, capsys, argv, where):
    target = tmp_path / "runs"
    code, _, err = run(capsys, *argv, where, str(target))
    assert code == 2 and err.count("\n") == 1
    left = [p for p in target.rglob("*")] if target.exists() else []
    assert left == [], f"left behind: {left}"


def test_strategies_lists_every_registered_strategy_with_its_options(capsys):
    from nas.strategies import get_strategy, list_strategies, strategy_options

    code, out, _ = run(capsys, "strategies", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert list(rows) == list_strategies()
    for name, row in rows.items():
        assert row["summary"] and row["objectives"] == (
            "several" if get_strategy(name).multi_objective else "one")
        listed = {o["name"]: o["default"] for o in row["options"]}
        assert listed == {k: v for k, (v, _) in json.loads(json.dumps(
            strategy_options(name))).items()}
        assert all(o["help"] for o in row["options"])
    assert [o["name"] for o in rows["local"]["options"]][:3] == ["initial", "restart",
                                                                 "restart_distance"]
    code, out, _ = run(capsys, "strategies", "local")
    assert code == 0 and out.startswith("local (objectives: one)") and "warm_start=null" in out


def test_estimators_lists_every_registered_estimator_with_its_options(capsys):
    from estimators.registry import get_estimator, list_estimators

    code, out, _ = run(capsys, "estimators", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert list(rows) == list(list_estimators())
    for name, row in rows.items():
        plugin = get_estimator(name)
        assert row["needs_data"] == plugin.needs_data and row["summary"] == plugin.summary
        assert {o["name"]: o["default"] for o in row["options"]} == plugin.option_defaults()


@pytest.mark.parametrize("command", ["strategies", "estimators"])
def test_an_unknown_plugin_name_is_one_line(capsys, command):
    code, _, err = run(capsys, command, "nosuch")
    assert code == 2 and err.count("\n") == 1 and "known:" in err


def test_a_cache_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    code, _, err = run(capsys, "latency", "devices", "--cache-dir", str(a_file))
    assert code == 2 and err.count("\n") == 1 and "cache folder" in err
