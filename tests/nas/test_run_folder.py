"""The run folder: one search at a time, settings checked before anything is written, the
checkpoint as the source of truth for `nas report` / `nas export`, and output paths that are
one-line errors, never tracebacks."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main
from nas.run_lock import run_lock
from nas.search import SearchJob

REPO = Path(__file__).resolve().parents[2]
BASE = ["--space", "nb201", "--budget", "60M-flops", "--data", "digits", "--trials", "8",
        "--batch-size", "4", "--workers", "0", "--quiet"]
ARGV = BASE + ["--estimator", "proxy", "--option", 'proxies=["jacov"]', "--option",
               "batch_size=16"]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def one_error(err: str, *words: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory, small_settings):
    """A small finished run (with anchors): its folder, never changed by the tests (copy it)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    SearchJob(small_settings(trials=12), folder, quiet=True).run()
    return folder


@pytest.fixture
def copy(finished, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(finished, target)
    return target


# --- item 2: one search per run folder -----------------------------------------------------------
def test_a_new_search_on_a_locked_folder_fails_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    with run_lock(out):  # another search holds it
        before = snapshot(out)
        code, stdout, err = run(capsys, "search", *ARGV, "--out", str(out))
        assert snapshot(out) == before
    assert code == 2 and stdout == ""
    one_error(err, "in use by another nas search")
    assert not (out / "config.json").exists()


def test_resuming_a_locked_run_fails_and_writes_nothing(copy, capsys):
    with run_lock(copy):
        before = snapshot(copy)
        code, _, err = run(capsys, "search", "--resume", str(copy), "--trials", "16", "--quiet")
        assert snapshot(copy) == before
    assert code == 2
    one_error(err, "in use by another nas search")
    # The lock goes with its holder: the run continues once it is free.
    code, out, _ = run(capsys, "search", "--resume", str(copy), "--trials", "16", "--json")
    assert code == 0 and json.loads(out)["trials"] == 16


def test_two_searches_started_together_on_one_folder_one_runs(tmp_path):
    out = tmp_path / "shared"
    argv = [sys.executable, "-m", "nas", "search", *ARGV, "--trials", "4", "--no-anchors",
            "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    one_error(loser)
    assert "in use by another nas search" in loser or "already holds a run" in loser
    assert json.loads((out / "checkpoint.json").read_text())["finished"]
    assert len(json.loads((out / "checkpoint.json").read_text())["trials"]) == 4


# --- item 3: the checkpoint is the source of truth ------------------------------------------------
def _cut_rows(path: Path, keep: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:1 + keep]))


def test_report_rebuilds_a_cut_trials_csv_from_the_checkpoint(finished, copy, capsys):
    _cut_rows(copy / "trials.csv", 5)
    code, out, err = run(capsys, "report", str(copy), "--json")
    assert code == 0
    assert err.startswith("warning: ") and err.count("\n") == 1 and "trials.csv" in err
    assert "checkpoint.json" in err
    assert (copy / "trials.csv").read_bytes() == (finished / "trials.csv").read_bytes()
    assert (copy / "pareto.csv").read_bytes() == (finished / "pareto.csv").read_bytes()
    assert json.loads(out)["runs"][0]["trials"] == 12
    summary = json.loads((copy / "summary.json").read_text())
    assert summary["trials"] == 12
    # Agreeing files: no warning, nothing rewritten.
    code, _, err = run(capsys, "report", str(copy))
    assert code == 0 and err == ""


def test_a_half_written_last_row_is_not_read_as_a_trial(finished, copy, capsys):
    text = (finished / "trials.csv").read_text()
    (copy / "trials.csv").write_text(text[:len(text) - 40])
    code, _, err = run(capsys, "report", str(copy))
    assert code == 0 and err.startswith("warning: ") and "cut short" in err
    assert (copy / "trials.csv").read_bytes() == (finished / "trials.csv").read_bytes()
    (copy / "checkpoint.json").unlink()  # nothing to rebuild from: refused, in one line
    (copy / "trials.csv").write_text(text[:len(text) - 40])
    code, _, err = run(capsys, "report", str(copy))
    assert code == 2
    one_error(err, "trials.csv", "cut short")


def test_without_a_checkpoint_a_cut_trials_csv_is_refused(copy, capsys):
    (copy / "checkpoint.json").unlink()
    before = snapshot(copy)
    _cut_rows(copy / "trials.csv", 5)
    code, _, err = run(capsys, "report", str(copy))
    assert code == 2
    one_error(err, "holds 5 trials", "summary.json counts 12", "no checkpoint.json")
    assert snapshot(copy)["pareto.csv"] == before["pareto.csv"]  # the front was not shrunk


def test_export_picks_the_rank_that_pareto_csv_lists(finished, copy, tmp_path, capsys):
    from nas.results import read_csv

    listed = read_csv(finished / "pareto.csv")
    # trials.csv without the rank-1 row: re-deriving the front from it gives another rank 1.
    rows = (copy / "trials.csv").read_text().splitlines(keepends=True)
    best = listed[0]["key"]
    (copy / "trials.csv").write_text("".join(r for r in rows if f",{best}," not in r))
    code, out, err = run(capsys, "export", str(copy), "--rank", "1", "--out",
                         str(tmp_path / "m.pt"), "--json")
    assert code == 0 and json.loads(out)["key"] == best
    assert err.startswith("warning: ") and "trials.csv" in err
    for rank, row in enumerate(listed, 1):
        code, out, _ = run(capsys, "export", str(copy), "--rank", str(rank), "--out",
                           str(tmp_path / "m.pt"), "--json")
        assert code == 0 and json.loads(out)["key"] == row["key"]


def test_export_says_when_pareto_csv_disagrees(copy, tmp_path, capsys):
    from nas.results import read_csv, to_csv

    listed = read_csv(copy / "pareto.csv")
    assert len(listed) >= 2
    listed[0]["key"], listed[1]["key"] = listed[1]["key"], listed[0]["key"]  # a stale file
    (copy / "pareto.csv").write_text(to_csv(listed))
    code, out, err = run(capsys, "export", str(copy), "--out", str(tmp_path / "m.pt"),
                         "--json")
    assert code == 0 and json.loads(out)["key"] == listed[1]["key"]
    assert err.startswith("warning: ") and err.count("\n") == 1 and "pareto.csv" in err


def test_binary_trials_csv(copy, capsys, finished):
    (copy / "trials.csv").write_bytes(bytes(range(256)) * 8)
    code, _, err = run(capsys, "report", str(copy))
    assert code == 0 and err.startswith("warning: ") and "binary" in err
    assert (copy / "trials.csv").read_bytes() == (finished / "trials.csv").read_bytes()
    (copy / "checkpoint.json").unlink()
    for data in (bytes(range(256)) * 8, "acc,flops\n\u00e9,x\n".encode("latin-1"),
                 b"trial,batch,key,acc\n0,0,nb201:x,abc\n", b"garbage\n"):
        (copy / "trials.csv").write_bytes(data)
        code, _, err = run(capsys, "report", str(copy))
        assert code == 2
        one_error(err, "trials.csv")


@pytest.mark.parametrize("edit, words", [
    (lambda c: [1, 2], ["checkpoint.json", "expected an object"]),
    (lambda c: {**c, "trials": "abc"}, ["checkpoint.json", "'trials' must be a list"]),
    (lambda c: {**c, "trials": [{k: v for k, v in r.items() if k != "key"}
                                for r in c["trials"]]}, ["trial 0 has no 'key'"]),
    (lambda c: {**c, "trials": [{**r, "acc": "high"} for r in c["trials"]]},
     ["trial 0: acc is text"]),
    (lambda c: {**c, "anchors": {"x": 1}}, ["'anchors' must be a list"]),
    (lambda c: {**c, "trials": [7]}, ["trial 0 is a number"]),
])
def test_a_wrongly_typed_checkpoint_is_one_line(copy, capsys, tmp_path, edit, words):
    checkpoint = json.loads((copy / "checkpoint.json").read_text())
    (copy / "checkpoint.json").write_text(json.dumps(edit(checkpoint)))
    before = snapshot(copy)
    for argv in (["report", str(copy)], ["export", str(copy), "--out", str(tmp_path / "m.pt")],
                 ["search", "--resume", str(copy), "--trials", "16", "--quiet"]):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        one_error(err, *words)
    assert snapshot(copy) == before and not (tmp_path / "m.pt").exists()


def test_a_damaged_strategy_state_is_one_line_on_resume(copy, capsys):
    checkpoint = json.loads((copy / "checkpoint.json").read_text())
    checkpoint["strategy"]["trials"] = "abc"
    (copy / "checkpoint.json").write_text(json.dumps(checkpoint))
    code, _, err = run(capsys, "search", "--resume", str(copy), "--trials", "16", "--quiet")
    assert code == 2
    one_error(err, "checkpoint.json is damaged")


def test_unreadable_checkpoint_json_is_one_line(copy, capsys):
    (copy / "checkpoint.json").write_bytes(bytes(range(256)))
    for argv in (["report", str(copy)], ["search", "--resume", str(copy), "--quiet"]):
        code, _, err = run(capsys, *argv)
        assert code == 2
        one_error(err, "checkpoint.json")


@pytest.mark.parametrize("config", [[1], {"objectives": "acc"}, {"format": 1}])
def test_a_wrongly_typed_config_is_one_line(copy, capsys, tmp_path, config):
    (copy / "config.json").write_text(json.dumps(config))
    for argv in (["report", str(copy)], ["export", str(copy), "--out", str(tmp_path / "m.pt")],
                 ["search", "--resume", str(copy), "--quiet"]):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        one_error(err, "config.json")


# --- item 4: every setting checked before anything is written ---------------------------------------
BAD_SETTINGS = [
    (["--estimator", "train", "--epochs", "0"], "epochs"),
    (["--estimator", "train", "--epochs", "-1"], "epochs"),
    (["--estimator", "train", "--epochs", "nan"], "epochs"),
    (["--estimator", "supernet", "--epochs", "0"], "epochs"),
    (["--estimator", "supernet", "--option", "train_images=10"], "train_images"),
    (["--option", "population=-3"], "population"),
    (["--option", "population=abc"], "population"),
    (["--option", "crossover=abc"], "crossover"),
    (["--option", "crossover=[1]"], "crossover"),
    (["--option", "batch_size=abc"], "batch_size"),
    (["--option", "proxies=3"], "proxies"),
    (["--proxy", "nosuch"], "nosuch"),
    (["--estimator", "table"], "--table"),
    (["--estimator", "table", "--table", "missing.csv"], "does not exist"),
    (["--estimator", "table", "--table", "bad.csv"], "no 'arch' column"),
    (["--estimator", "table", "--table", "good.csv", "--column", "nosuch"], "nosuch"),
    (["--address", "127.0.0.1:1"], "--address"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "9" * 40], "--seed"),
    (["--cost-classes", "-3"], "--cost-classes"),
    (["--cost-classes", "0"], "--cost-classes"),
    (["--threads", "0"], "--threads"),
    (["--threads", "-2"], "--threads"),
    (["--threads", "9" * 23], "--threads"),
    (["--cost-classes", "9" * 23], "--cost-classes"),
    (["--trials", "9" * 23], "--trials"),
    (["--batch-size", "9" * 23], "--batch-size"),
    (["--workers", "9" * 23], "--workers"),
    (["--batch-size", "0"], "--batch-size"),
    (["--val-fraction", "0"], "--val-fraction"),
    (["--val-fraction", "1"], "--val-fraction"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--objectives", "nosuch"], "unknown objective 'nosuch'"),
    (["--objectives", "acc,train_loss"], "train_loss"),
    (["--budget", "1K-flops"], "below the smallest"),
    (["--device", "nosuchdevice"], "nosuchdevice"),
    (["--data-dir", "nowhere"], "--data-dir"),
    (["--data", "cifar10"], "--data-dir"),
    (["--strategy", "tpe", "--option", "startup=0"], "startup"),
    (["--strategy", "rl", "--objectives", "acc", "--option", "cost_metric=nosuch", "--option",
      "cost_target=100"], "cost_metric"),
    (["--strategy", "evolution", "--objectives", "acc", "--option", "proxy=nosuch"], "proxy"),
]


@pytest.fixture
def tables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.csv").write_text("name,acc\nx,1\n")
    (tmp_path / "good.csv").write_text("arch,acc\nnb201:c3+c3.c3+c3.c3.c3,90\n")
    return tmp_path


@pytest.mark.parametrize("argv, words", BAD_SETTINGS)
def test_bad_settings_fail_before_the_run_folder_is_made(tables, capsys, argv, words):
    argv = (BASE if "--estimator" in argv else ARGV) + argv
    code, out, err = run(capsys, "search", *argv, "--out", "run")
    assert code == 2 and out == ""
    one_error(err, words)
    assert not (tables / "run").exists()
    code, _, err = run(capsys, "search", *argv)  # the default folder under results/
    assert code == 2 and not (tables / "results").exists()


def test_data_that_cannot_be_read_leaves_no_run_behind(tmp_path, capsys, monkeypatch):
    """Found only when the data is loaded, after config.json was written: the run's files are
    removed again, so that the corrected command runs (not "already holds a run")."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "given").mkdir()
    for argv, out in ((["--out", "run"], tmp_path / "run"),
                      (["--out", "given"], tmp_path / "given"), ([], tmp_path / "results")):
        code, _, err = run(capsys, "search", *BASE, "--estimator", "proxy", "--data",
                           "fashion-mnist", "--data-dir", "empty", *argv)
        assert code == 2
        one_error(err, "empty")
        assert not out.exists() or not [p for p in out.rglob("*") if p.name != ".lock"]
    assert (tmp_path / "given").is_dir()  # a folder the user made stays


def test_unknown_objective_lists_the_metrics_and_aliases_still_work(small_settings, tmp_path,
                                                                   capsys):
    code, _, err = run(capsys, "search", *ARGV, "--objectives", "acc,nosuch", "--out",
                       str(tmp_path / "r"))
    assert code == 2
    one_error(err, "acc, jacov, flops, flops_sparse, params")
    for objectives in ("accuracy,macs", "acc:max,params", "jacov,flops_sparse:min"):
        SearchJob(small_settings(objectives=objectives), tmp_path / "unused", quiet=True)
    job = SearchJob(small_settings(estimator="train", estimator_options={},
                                   objectives="acc,train_loss"), tmp_path / "unused", quiet=True)
    assert [o.metric for o in job.objectives] == ["acc", "train_loss"]
    assert not (tmp_path / "unused").exists()


def test_settings_of_the_python_api_are_checked_when_the_job_is_made(small_settings, tmp_path):
    from search_spaces import NasError

    for changes in ({"threads": 0}, {"seed": -1}, {"workers": 0, "address": "auto"},
                    {"val_fraction": 1.0}, {"cost_classes": 0}, {"objectives": "nosuch"},
                    {"strategy_options": {"population": "abc"}},
                    {"estimator_options": {"proxy": "nosuch"}}):
        with pytest.raises(NasError):
            SearchJob(small_settings(**changes), tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


# --- item 5: output paths ----------------------------------------------------------------------
def test_search_out_that_is_a_file_or_below_one(tmp_path, capsys):
    (tmp_path / "afile").write_text("keep")
    for out, words in ((tmp_path / "afile", "is a file"),
                       (tmp_path / "afile" / "run", "is a file, not a folder")):
        code, _, err = run(capsys, "search", *ARGV, "--out", str(out))
        assert code == 2
        one_error(err, words)
    code, _, err = run(capsys, "search", *ARGV, "--results", str(tmp_path / "afile"))
    assert code == 2
    one_error(err, "--results")
    assert (tmp_path / "afile").read_text() == "keep"


def test_report_plot_and_export_out_paths(copy, tmp_path, capsys):
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "adir").mkdir()
    for flag, argv in (("--plot", ["report", str(copy)]), ("--out", ["export", str(copy)])):
        for target, words in ((tmp_path / "adir", "is a folder"),
                              (tmp_path / "afile" / "x.png", "is a file, not a folder")):
            code, _, err = run(capsys, *argv, flag, str(target))
            assert code == 2, (argv, target)
            one_error(err, flag, words)
    assert (tmp_path / "afile").read_text() == "keep"
    assert list((tmp_path / "adir").iterdir()) == []


def test_differentiable_out_is_checked_before_the_search(tmp_path, capsys):
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "adir").mkdir()
    for target, words in ((tmp_path / "adir", "is a folder"),
                          (tmp_path / "afile" / "r.json", "is a file, not a folder")):
        code, _, err = run(capsys, "differentiable", "--space", "nb201", "--data", "digits",
                           "--out", str(target))
        assert code == 2
        one_error(err, "--out", words)


@pytest.mark.skipif(AS_ROOT, reason="root writes into read-only folders (chmod does not stop "
                                    "it); the write-error path is covered by the monkeypatched "
                                    "PermissionError tests below")
def test_read_only_folders(copy, tmp_path, capsys):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for argv in (["search", *ARGV, "--out", str(locked / "run")],
                     ["report", str(copy), "--plot", str(locked / "p.png")],
                     ["export", str(copy), "--out", str(locked / "m.pt")],
                     ["differentiable", "--space", "nb201", "--out", str(locked / "d.json")]):
            code, _, err = run(capsys, *argv)
            assert code == 2, argv
            one_error(err, "ro")
        copy.chmod(0o500)
        code, _, err = run(capsys, "report", str(copy))
        assert code == 2
        one_error(err, "cannot write")
    finally:
        locked.chmod(0o700)
        copy.chmod(0o700)


def _denied(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


def test_write_errors_are_one_line(copy, tmp_path, capsys, monkeypatch):
    import nas.export
    import nas.report

    with monkeypatch.context() as patch:
        patch.setattr(nas.export, "atomic_write_bytes", _denied)
        code, _, err = run(capsys, "export", str(copy), "--out", str(tmp_path / "m.pt"))
        assert code == 2
        one_error(err, "cannot write", "m.pt", "Permission denied")
    with monkeypatch.context() as patch:
        patch.setattr(nas.report, "atomic_write_text", _denied)
        code, _, err = run(capsys, "report", str(copy))
        assert code == 2
        one_error(err, "cannot write", str(copy), "Permission denied")


def test_a_write_error_mid_run_keeps_the_checkpoint(tmp_path, capsys, monkeypatch, small_settings,
                                                   same_rows):
    """The second batch's checkpoint cannot be written: one line, the first batch's checkpoint
    is whole, and --resume finishes the run as if nothing had happened, re-evaluating
    nothing (the second batch's results were saved one by one)."""
    import nas.checkpoint
    from nas.results import read_csv

    out = tmp_path / "run"
    writes = []
    real = nas.checkpoint.atomic_write_json

    def flaky(path, payload):
        if Path(path).name == "checkpoint.json":
            writes.append(path)
            if len(writes) == 2:
                raise OSError(28, "No space left on device")
        real(path, payload)

    with monkeypatch.context() as patch:
        patch.setattr(nas.checkpoint, "atomic_write_json", flaky)
        code, _, err = run(capsys, "search", *ARGV, "--no-anchors", "--out", str(out))
    assert code == 2
    one_error(err, "cannot write", "No space left on device")
    checkpoint = json.loads((out / "checkpoint.json").read_text())
    assert checkpoint["batches"] == 1 and len(checkpoint["trials"]) == 4
    assert len(json.loads((out / "batch.json").read_text())["done"]) == 4
    code, _, err = run(capsys, "search", "--resume", str(out))
    assert code == 0
    whole = SearchJob(small_settings(trials=8, anchors=False), tmp_path / "whole",
                      quiet=True).run()
    assert same_rows(read_csv(out / "trials.csv"), read_csv(whole.run_dir / "trials.csv"))
