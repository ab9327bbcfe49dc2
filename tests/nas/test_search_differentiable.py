"""A differentiable search's cost-weight sweep: parallel Ray Tune trials give what the same
searches give one after another in this process."""
from __future__ import annotations

import pytest

from nas.evaluation import Evaluator
from nas.runners import LocalRunner
from nas.search import SearchJob
from nas.strategies import STRATEGIES

pytestmark = [pytest.mark.skipif("differentiable" not in STRATEGIES,
                                 reason="the differentiable strategy is not registered"),
              pytest.mark.slow]  # Tune trials start their own worker processes: ~30 s

TINY = {"steps": 2, "warmup_steps": 1, "batch_size": 16, "eval_images": 32,
        "cost_weights": [0.0, 4.0]}


def test_tune_sweep_gives_the_in_process_sweep(ray_session, tmp_path, small_settings,
                                               same_rows):
    from nas.differentiable import strategy as module

    settings = dict(strategy="differentiable", strategy_options=TINY, trials=2, batch_size=2,
                    anchors=False)
    module._CACHE.clear()
    local = SearchJob(small_settings(**settings), tmp_path / "local", quiet=True).run()
    module._CACHE.clear()  # the Tune run must search again, not reuse the cached sweep
    job = SearchJob(small_settings(**settings, workers=2), tmp_path / "tune", quiet=True)
    # The sweep runs on Tune (workers=2); the evaluations of its two archs need no actors.
    job._runner = LocalRunner(job.eval_config, evaluator=Evaluator(job.eval_config))
    on_tune = job.run()
    assert same_rows(on_tune.rows, local.rows)
    assert (tmp_path / "tune" / "tune" / "differentiable").is_dir()  # Tune's own records
    state = (tmp_path / "tune" / "checkpoint.json").read_text()
    assert '"cost_weight": 4.0' in state  # the sweep's results are in the checkpoint
