"""The cost-weight sweep of a differentiable search as parallel Ray Tune trials.

Each cost weight's search starts from the same seeded warm-up and does not depend on the other
weights, so one Tune trial per weight gives exactly what the sequential sweep
(`DifferentiableSearch.sweep`) gives in one process. The search job runs it through
`DifferentiableSearchStrategy.prepare` when it evaluates on Ray.
"""
from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from estimators.data import load_data
from nas.differentiable.config import SearchConfig
from nas.differentiable.search import DifferentiableSearch
from nas.evaluation import Evaluator, one_line, torch_threads
from nas.objectives import constraints_from_json
from nas.runners import RunnerError, init_ray
from search_spaces import get_space


def differentiable_result(params: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The differentiable search of one cost weight (`params["cost_weight"]`), from its own
    seeded warm-up (equal to the warm-up a sequential sweep shares): (the result as plain
    data, the relaxation's base arch key)."""
    space = get_space(params["space"])
    data = load_data(params["data"], params["data_dir"], val_fraction=params["val_fraction"],
                     seed=params["seed"])
    evaluator = Evaluator(params["eval_config"], shared={})  # costs only
    with torch_threads(int(params["threads"])), torch.random.fork_rng(devices=[]):
        search = DifferentiableSearch(space, data, SearchConfig.from_dict(params["config"]),
                                      constraints_from_json(params["constraints"]),
                                      evaluator.cost, seed=params["seed"])
        result = search.run(float(params["cost_weight"]))
    base = search.relaxation.arch({d.name: len(d.options) - 1 for d in search.relaxation.searched})
    return result.as_dict(space), f"{space.name}:{space.encode(base)}"


def _differentiable_trial(params: dict[str, Any]) -> None:
    """One Ray Tune trial: `differentiable_result` of its cost weight."""
    from ray import tune

    result, base = differentiable_result(params)
    tune.report({"result": json.dumps(result), "base": base})


def tune_sweep(params: Mapping[str, Any], cost_weights: Sequence[float], workers: int | None,
               storage: str, address: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """Run one differentiable search per cost weight as parallel Ray Tune trials (actors
    reused); (results in the order of `cost_weights`, the relaxation's base arch key).
    `params`: plain data for `_differentiable_trial` (space, data, data_dir, val_fraction,
    config, constraints, eval_config, seed, threads)."""
    started = init_ray(address)
    import ray
    from ray import tune

    try:
        capacity = int(ray.cluster_resources().get("CPU", 1))
        if ray.available_resources().get("CPU", 0.0) < 1.0:
            raise RunnerError("no free CPU in the Ray cluster for the differentiable search's "
                              "Tune trials (other work holds them all)")
        concurrent = max(1, min(workers or capacity, capacity, len(cost_weights)))
        tuner = tune.Tuner(
            tune.with_resources(_differentiable_trial, {"cpu": 1}),
            param_space={**params, "cost_weight": tune.grid_search(list(cost_weights))},
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, reuse_actors=True),
            run_config=tune.RunConfig(name="differentiable", storage_path=storage, verbose=0))
        # Tune prints a banner even when quiet; it must not mix into `--json` output.
        with contextlib.redirect_stdout(io.StringIO()):
            grid = tuner.fit()
        if grid.errors:
            raise RunnerError(f"a differentiable search trial failed: "
                              f"{one_line(grid.errors[0])}")
        by_weight = {float(r.config["cost_weight"]): json.loads(r.metrics["result"])
                     for r in grid}
        return [by_weight[float(w)] for w in cost_weights], str(grid[0].metrics["base"])
    finally:
        if started:
            ray.shutdown()
