"""Evaluating candidate layers (protocols and fitness, `fitness.evaluate_layer`): in this
process (workers 0) or as Ray tasks, one per candidate and `threads` CPUs, each result handed
back as soon as it is done (as `nas.morph.workers` trains children)."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from estimators.data import DataSplits
from nas.evonorm.fitness import evaluate_layer
from nas.evonorm.settings import LayerSearchSettings

# (index, layer key, BN-ReLU's protocol values or None, measure: every stage runs)
Job = tuple[int, str, Mapping[str, float] | None, bool]
Save = Callable[[int, Mapping[str, Any]], None]


class LayerEvaluator:
    """`evaluator(jobs, save)` evaluates every job and calls `save(index, result)` for each,
    in the order they finish."""

    def __init__(self, settings: LayerSearchSettings, data: DataSplits):
        self.settings, self.data = settings, data
        self.settings_json = settings.to_json()
        self.started_ray = False
        self._remote: Any = None
        self._data_ref: Any = None

    def __call__(self, jobs: list[Job], save: Save) -> None:
        s = self.settings
        if not jobs:
            return
        if s.workers == 0:
            for index, key, baselines, measure in jobs:
                save(index, evaluate_layer(key, self.settings_json, baselines, self.data,
                                           measure))
            return
        import ray

        from nas.runners import init_ray, run_pool

        if self._remote is None:
            self.started_ray = init_ray(s.address)
            self._remote = ray.remote(num_cpus=s.threads)(evaluate_layer)
            self._data_ref = ray.put(self.data)
        def submit(job: Job) -> tuple[Any, int]:
            index, key, baselines, measure = job
            return self._remote.remote(key, self.settings_json, baselines, self._data_ref,
                                       measure), index

        run_pool(jobs, s.workers, submit, save)

    def close(self) -> None:
        if self.started_ray:
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()


__all__ = ["Job", "LayerEvaluator"]
