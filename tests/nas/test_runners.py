"""Runners on a real local Ray: same results as in-process, shared weights put once, a worker
killed mid-run has its evaluation retried elsewhere and nothing finished is lost."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from nas.evaluation import Evaluator, evaluation_config, prepare, same_metrics
from nas.runners import LocalRunner, RayRunner, RunnerError, init_ray
from nas.search import SearchJob
from search_spaces import get_space


def supernet_options(cache_dir) -> dict:
    """A supernet trained for two steps: real weights to share, in a second."""
    return {"epochs": 1, "train_images": 64, "batch_size": 32, "eval_images": 200,
            "calibration_images": 64, "cache_dir": str(cache_dir)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The supernet estimator's config, its shared objects (data and supernet weights),
    8 keys and their metrics evaluated in this process."""
    options = supernet_options(tmp_path_factory.mktemp("supernets"))
    config = evaluation_config("nb201", "supernet", options, {"name": "digits"}, seed=0)
    shared = prepare(config)
    assert set(shared) == {"data", "supernet"} and shared["supernet"]["state"]
    space = get_space("nb201")
    rng = np.random.default_rng(7)
    keys = list(dict.fromkeys(space.sample(rng).key for _ in range(8)))
    local = LocalRunner(config, shared).evaluate(keys)
    assert all(r["acc_estimator"] == "supernet" and 0 <= r["acc"] <= 100 for r in local)
    return config, shared, keys, local


@pytest.fixture(scope="module")
def ray_runner(ray_session, setup):
    """Two actors shared by the tests below (starting actors costs seconds); `ray.put` is
    counted while they live."""
    config, shared, _, _ = setup
    puts = []
    real_put = ray_session.put
    ray_session.put = lambda value, **kw: puts.append(1) or real_put(value, **kw)
    try:
        runner = RayRunner(config, shared, workers=2)
        runner.puts = puts
        yield runner
        runner.close()
    finally:
        ray_session.put = real_put


def test_ray_runner_matches_local_and_puts_shared_objects_once(ray_runner, setup):
    _, _, keys, local = setup
    assert len(set(ray_runner.worker_pids())) == 2
    assert os.getpid() not in ray_runner.worker_pids()
    seen = []
    results = ray_runner.evaluate(keys, on_result=lambda i, m: seen.append(i))
    assert sorted(seen) == list(range(len(keys)))
    assert all(same_metrics(a, b) for a, b in zip(results, local))
    # The supernet's weights (and the data) went to the object store once, for both actors.
    assert len(ray_runner.puts) == 1


def test_worker_killed_mid_run_is_retried_elsewhere(ray_runner, setup):
    _, _, keys, local = setup
    runner = ray_runner
    killed: list[int] = []

    def kill_a_busy_worker(index: int, metrics: dict) -> None:
        if not killed:  # the other actor is evaluating now: kill it mid-evaluation
            busy = runner.busy_pids()
            assert busy
            os.kill(busy[0], signal.SIGKILL)
            killed.append(busy[0])

    first_pids = set(runner.worker_pids())
    puts_before = len(runner.puts)
    results = runner.evaluate(keys, on_result=kill_a_busy_worker)
    assert killed and runner.retries >= 1 and runner.replaced >= 1
    assert killed[0] not in runner.worker_pids() and len(runner.worker_pids()) == 2
    assert set(runner.worker_pids()) != first_pids
    assert len(runner.puts) == puts_before  # the replacement got the same reference
    # Every result is there, and equal to the in-process one: nothing lost or corrupted.
    assert all("error" not in r for r in results)
    assert all(same_metrics(a, b) for a, b in zip(results, local))


def test_search_on_ray_gives_the_local_search(ray_runner, setup, tmp_path, small_settings,
                                              same_rows, ray_session):
    config = setup[0]
    settings = dict(estimator="supernet", estimator_options=config["options"], trials=8,
                    anchors=False)
    local = SearchJob(small_settings(**settings), tmp_path / "local", quiet=True).run()
    job = SearchJob(small_settings(**settings, workers=2), tmp_path / "ray", quiet=True,
                    runner=ray_runner)
    assert job.eval_config == ray_runner.config
    on_ray = job.run()
    assert same_rows(on_ray.rows, local.rows)
    assert ray_session.is_initialized()


def test_too_many_workers_and_bad_address_are_one_line_errors(ray_session, setup):
    config, shared, _, _ = setup
    with pytest.raises(RunnerError, match="at most 2 workers"):
        RayRunner(config, shared, workers=3)
    with pytest.raises(RunnerError, match="--workers must be at least 1"):
        RayRunner(config, shared, workers=-1)
    assert init_ray("127.0.0.1:1") is False  # already connected: the running instance is kept


def test_local_runner_reports_each_result(setup):
    config, shared, keys, local = setup
    seen = []
    results = LocalRunner(config, evaluator=Evaluator(config, shared)).evaluate(
        keys[:3], on_result=lambda i, m: seen.append(i))
    assert seen == [0, 1, 2] and all(same_metrics(a, b) for a, b in zip(results, local))
