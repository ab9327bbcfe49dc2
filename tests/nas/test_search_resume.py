"""Resume: a run killed at any point continues with `--resume` to the result of an
uninterrupted run, losing and repeating no finished evaluation."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nas.cli import main
from nas.runners import LocalRunner
from nas.search import SearchJob
from nas.strategies import STRATEGIES

REPO = Path(__file__).resolve().parents[2]


class Crash(Exception):
    """Stands for the process dying (raised where a SIGKILL could land)."""


class CountingRunner(LocalRunner):
    """A local runner that records what it evaluates and can die after `crash_after`."""

    def __init__(self, job: SearchJob, crash_after: int | None = None):
        from nas.evaluation import Evaluator

        super().__init__(job.eval_config, evaluator=Evaluator(job.eval_config))
        self.evaluated: list[str] = []
        self.crash_after = crash_after

    def evaluate(self, keys: Sequence[str], on_result=None) -> list[dict[str, Any]]:
        def counted(index: int, metrics: dict[str, Any]) -> None:
            self.evaluated.append(keys[index])
            if on_result is not None:
                on_result(index, metrics)
            if self.crash_after is not None and len(self.evaluated) >= self.crash_after:
                raise Crash()

        return super().evaluate(keys, counted)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, small_settings):
    settings = small_settings(trials=10, batch_size=4, anchors=False)
    return SearchJob(settings, tmp_path_factory.mktemp("whole"), quiet=True).run()


def test_crash_mid_batch_resumes_without_losing_or_repeating(tmp_path, small_settings,
                                                             uninterrupted, same_rows):
    settings = small_settings(trials=10, batch_size=4, anchors=False)
    first = SearchJob(settings, tmp_path, quiet=True)
    first._runner = CountingRunner(first, crash_after=6)  # dies in the 2nd batch, 2 done
    with pytest.raises(Crash):
        first.run()
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert saved["batches"] == 1 and len(saved["trials"]) == 4
    assert len(json.loads((tmp_path / "batch.json").read_text())["done"]) == 2

    second = SearchJob(settings, tmp_path, quiet=True)
    second._runner = CountingRunner(second)
    result = second.run()
    evaluated = first._runner.evaluated + second._runner.evaluated
    assert len(evaluated) == len(set(evaluated)) == 10  # nothing repeated, nothing lost
    assert same_rows(result.rows, uninterrupted.rows)
    assert result.hypervolume == uninterrupted.hypervolume


def test_sigkilled_search_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted,
                                                              same_rows, capsys):
    """The search process SIGKILLs itself right after saving its 6th trial (the job's test
    hook): mid-way through the 2nd batch of 4, at the same point on any machine."""
    from nas.search import KILL_AFTER_TRIALS

    run_dir = tmp_path / "killed"
    argv = [sys.executable, "-m", "nas", "search", "--space", "nb201", "--budget", "60M-flops",
            "--estimator", "proxy", "--option", "proxies=[\"jacov\"]", "--option",
            "batch_size=16", "--data", "digits", "--trials", "10", "--batch-size", "4",
            "--workers", "0", "--no-anchors", "--quiet", "--out", str(run_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO), KILL_AFTER_TRIALS: "6"}
    proc = subprocess.run(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    checkpoint = run_dir / "checkpoint.json"
    saved = json.loads(checkpoint.read_text())
    assert saved["batches"] == 1 and not saved["finished"]
    assert [r["trial"] for r in saved["trials"]] == [0, 1, 2, 3]
    batch = json.loads((run_dir / "batch.json").read_text())
    assert batch["batch"] == 1 and len(batch["done"]) == 2

    code = main(["search", "--resume", str(run_dir), "--quiet", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["trials"] == 10 and payload["hypervolume"] == uninterrupted.hypervolume
    final = json.loads(checkpoint.read_text())
    assert final["finished"] and same_rows(final["trials"], _json_rows(uninterrupted.rows))
    # The two evaluations saved before the kill are the resumed run's, not evaluated again
    # (their own timings, to the digit).
    assert sorted(batch["done"]) == ["0", "1"]
    for index in (0, 1):
        row = final["trials"][4 + index]
        assert row["key"] == batch["keys"][index]
        assert row["eval_seconds"] == batch["done"][str(index)]["eval_seconds"]
    assert not (run_dir / "batch.json").exists()


def _json_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    from nas.results import clean_json

    return json.loads(json.dumps(clean_json(rows)))


def test_resume_keeps_the_run_settings(tmp_path, small_settings, capsys):
    SearchJob(small_settings(trials=4, anchors=False), tmp_path, quiet=True).run()
    code = main(["search", "--resume", str(tmp_path), "--space", "mobile"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume continues a run") and err.count("\n") == 1
    code = main(["search", "--resume", str(tmp_path), "--no-anchors", "--option", "population=3",
                 "--seed", "1", "--space", "mobile", "--trials", "8"])
    assert code == 2
    assert capsys.readouterr().err == (
        "error: --resume continues a run with its own settings; --space, --seed, --option, "
        "--no-anchors cannot change (only --trials, --time-limit, --workers, --address)\n")
    # More trials may be asked for: the run goes on from where it stopped.
    assert main(["search", "--resume", str(tmp_path), "--trials", "8", "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trials"] == 8


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "differentiable"])
def test_every_strategy_resumes_to_the_uninterrupted_run(strategy, tmp_path, small_settings,
                                                         same_rows):
    settings = dict(strategy=strategy, batch_size=2, anchors=False)
    whole = SearchJob(small_settings(trials=4, **settings), tmp_path / "whole", quiet=True).run()
    SearchJob(small_settings(trials=2, **settings), tmp_path / "parts", quiet=True).run()
    resumed = SearchJob(small_settings(trials=4, **settings), tmp_path / "parts",
                        quiet=True).run()
    assert same_rows(resumed.rows, whole.rows)
