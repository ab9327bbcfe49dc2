"""`nas search`, `nas report`, `nas export` from the command line (in-process)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from nas import load  # the public name users call
from nas.cli import main

SMALL_ARGV = ["--space", "nb201", "--budget", "60M-flops", "--estimator", "proxy",
              "--option", 'proxies=["jacov"]', "--option", "batch_size=16", "--data", "digits",
              "--trials", "12", "--batch-size", "4", "--workers", "0"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`nas search ... --json` once; (payload, run folder)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["search", *SMALL_ARGV, "--out", str(out), "--json"])
    assert code == 0
    return json.loads(buffer.getvalue()), out


def test_search_json_is_one_object_with_the_front(cli_run):
    payload, out = cli_run
    assert set(payload) >= {"run_dir", "pareto", "hypervolume", "trials"}
    assert payload["run_dir"] == str(out) and payload["trials"] == 12
    assert 0 < payload["hypervolume"] <= 1
    for row in payload["pareto"]:
        assert row["key"].startswith("nb201:") and row["flops"] <= 60e6
        assert {"acc", "flops", "params", "rank", "acc_estimator"} <= set(row)
    assert [r["rank"] for r in payload["pareto"]] == list(range(1, len(payload["pareto"]) + 1))


def test_search_prints_the_pareto_table(tmp_path, capsys):
    code, out, err = run(capsys, "search", *SMALL_ARGV, "--trials", "4", "--no-anchors",
                         "--out", str(tmp_path / "r"))
    assert code == 0
    assert out.startswith("Pareto front of nb201") and "rank" in out and "hypervolume" in out
    assert f"results: {tmp_path / 'r'}" in out
    assert "search" in err  # the progress bar (stderr) without --quiet


def test_default_run_folder_is_under_results(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "search", *SMALL_ARGV, "--trials", "4", "--no-anchors",
                       "--json")
    assert code == 0
    run_dir = Path(json.loads(out)["run_dir"])
    assert run_dir.parent == Path("results") and run_dir.name.startswith("nb201-nsga2-s0-")


@pytest.mark.parametrize("argv, message", [
    (["--budget", "300X-flops"], "malformed budget"),
    (["--budget", "1K-flops"], "below the smallest architecture"),
    (["--objectives", "acc:up"], "malformed objective"),
    (["--option", "nonsense=1"], "unknown --option"),
    (["--time-limit", "soon"], "malformed time limit"),
    (["--space", "nope"], "unknown space"),
])
def test_search_mistakes_are_one_line_errors(tmp_path, capsys, argv, message):
    code, out, err = run(capsys, "search", *SMALL_ARGV, *argv, "--out", str(tmp_path / "x"))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_out_folder_holding_a_run_needs_resume(cli_run, capsys):
    _, out = cli_run
    code, _, err = run(capsys, "search", *SMALL_ARGV, "--out", str(out))
    assert code == 2 and "--resume" in err


def test_report_rerenders_and_compares_runs(cli_run, tmp_path, capsys):
    payload, out = cli_run
    (out / "pareto.md").unlink()
    code, text, _ = run(capsys, "search", *SMALL_ARGV, "--seed", "3", "--trials", "8",
                        "--no-anchors", "--out", str(tmp_path / "other"), "--quiet")
    assert code == 0
    code, text, _ = run(capsys, "report", str(out), str(tmp_path / "other"), "--json",
                        "--plot", str(tmp_path / "fronts.png"))
    assert code == 0
    report = json.loads(text)
    assert (out / "pareto.md").is_file()  # re-rendered
    assert json.loads((out / "summary.json").read_text())["runner"]["runner"] == "local"
    assert report["runs"][0]["hypervolume"] == pytest.approx(payload["hypervolume"])
    rows = report["comparison"]
    assert [r["trials"] for r in rows] == [12, 8] and all("hypervolume_common" in r for r in rows)
    assert (tmp_path / "fronts.png").read_bytes()[:4] == b"\x89PNG"
    code, text, _ = run(capsys, "report", str(out))
    assert code == 0 and "hypervolume" in text and "rank" in text
    code, _, err = run(capsys, "report", str(tmp_path / "missing"))
    assert code == 2 and "no run at" in err


def test_export_then_load_rebuilds_the_module(cli_run, tmp_path, capsys):
    payload, out = cli_run
    target = tmp_path / "model.pt"
    code, text, _ = run(capsys, "export", str(out), "--rank", "1", "--out", str(target),
                        "--json")
    assert code == 0
    written = json.loads(text)
    assert written["key"] == payload["pareto"][0]["key"] and written["weights"] == "init"
    model = load(target)
    assert model.arch_key == written["key"] and not model.training
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 8, 8))  # the digits' channels and classes
    assert logits.shape == (2, 10)
    saved = torch.load(target, weights_only=True)
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in model.state_dict().items())
    code, _, err = run(capsys, "export", str(out), "--rank", "99", "--out", str(target))
    assert code == 2 and "--rank must be in 1.." in err


def test_export_trains_standalone_when_asked(cli_run, tmp_path, capsys):
    _, out = cli_run
    code, text, _ = run(capsys, "export", str(out), "--rank", "1", "--epochs", "0.2",
                        "--out", str(tmp_path / "trained.pt"), "--json")
    assert code == 0
    written = json.loads(text)
    assert written["weights"] == "standalone" and 0 <= written["standalone_val_acc"] <= 100
    assert load(tmp_path / "trained.pt")(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


@pytest.mark.skipif(importlib.util.find_spec("onnx") is not None, reason="onnx is installed")
def test_onnx_without_onnx_says_how_to_get_it(cli_run, tmp_path, capsys):
    _, out = cli_run
    code, _, err = run(capsys, "export", str(out), "--out", str(tmp_path / "m.pt"), "--onnx")
    assert code == 2 and "pip install onnx" in err


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx is not installed")
def test_onnx_export_writes_a_graph(cli_run, tmp_path, capsys):
    _, out = cli_run
    code, text, _ = run(capsys, "export", str(out), "--out", str(tmp_path / "m.pt"), "--onnx",
                        "--json")
    assert code == 0 and Path(json.loads(text)["onnx"]).stat().st_size > 0


@pytest.mark.parametrize("changes", [
    {},
    {"strategy": "nsga2", "strategy_options": {"population": 8, "prior": 1.5}, "anchors": False},
    {"budget": "60M-flops,5M-params", "strategy": "tpe", "estimator": "proxy",
     "estimator_options": {"proxy": "synflow", "proxies": ["synflow", "jacov"],
                           "batch_size": 16},
     "objectives": "acc:max,params:min", "data": "digits", "data_dir": "/tmp", "val_fraction": 0.25,
     "device": "cpu", "trials": 7, "time_limit": 90.0, "workers": 2, "address": "auto",
     "seed": 3, "batch_size": 5, "threads": 2, "cost_classes": 10},
])
def test_settings_read_back_from_their_own_command_line(changes):
    """config.json's `command` (and `ray job submit -- nas search ...`) gives the same settings:
    the flags are written and read with one mapping."""
    from nas.cli import build_parser
    from nas.cli.search import _settings
    from nas.search_settings import SearchSettings, settings_to_argv

    settings = SearchSettings(space="nb201", **changes)
    argv = settings_to_argv(settings)
    assert argv[:2] == ["--space", "nb201"]
    assert _settings(build_parser().parse_args(["search", *argv])) == settings


def test_every_setting_is_a_flag_or_an_option():
    from dataclasses import fields

    from nas.search_settings import SearchSettings, setting_flags

    flags = {spec.name: spec for spec in setting_flags()}
    assert set(flags) | {"strategy_options", "estimator_options"} == \
        {f.name for f in fields(SearchSettings)}
    assert [s.flag for s in flags.values() if s.resumable] == \
        ["--trials", "--time-limit", "--workers", "--address"]
