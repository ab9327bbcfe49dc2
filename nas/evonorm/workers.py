"""Evaluating candidate layers (protocols and fitness, `fitness.evaluate_layer`) and retraining
finalists (`fitness.retrain_layer`): in this process (workers 0) or as Ray tasks, one per job
and `threads` CPUs, each result handed back as soon as it is done (as `nas.morph.workers`
trains children)."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from estimators.data import DataSplits
from nas.evonorm.fitness import evaluate_layer, retrain_layer
from nas.evonorm.settings import LayerSearchSettings

# (index, layer key, BN-ReLU's protocol values or None, measure: every stage runs)
Job = tuple[int, str, Mapping[str, float] | None, bool]
# (index, layer key, seed)
Retrain = tuple[int, str, int]
Save = Callable[[int, Mapping[str, Any]], None]


class LayerEvaluator:
    """`evaluator(jobs, save)` evaluates every job and `evaluator.retrain(jobs, save)`
    retrains every finalist; each calls `save(index, result)` in the order they finish."""

    def __init__(self, settings: LayerSearchSettings, data: DataSplits):
        self.settings, self.data = settings, data
        self.settings_json = settings.to_json()
        self.started_ray = False
        self._remotes: dict[Callable[..., Any], Any] = {}
        self._data_ref: Any = None

    def __call__(self, jobs: list[Job], save: Save) -> None:
        self._map(evaluate_layer, [(index, {"key": key, "baselines": baselines,
                                            "measure": measure})
                                   for index, key, baselines, measure in jobs], save)

    def retrain(self, jobs: list[Retrain], save: Save) -> None:
        self._map(retrain_layer, [(index, {"key": key, "seed": seed})
                                  for index, key, seed in jobs], save)

    def _map(self, fn: Callable[..., dict[str, Any]],
             calls: list[tuple[int, dict[str, Any]]], save: Save) -> None:
        """`fn(**arguments, settings=..., data=...)` for each (index, arguments)."""
        s = self.settings
        if not calls:
            return
        if s.workers == 0:
            for index, arguments in calls:
                save(index, fn(**arguments, settings=self.settings_json, data=self.data))
            return
        import ray

        from nas.runners import init_ray, run_pool

        if not self._remotes:
            self.started_ray = init_ray(s.address)
            self._data_ref = ray.put(self.data)
        if fn not in self._remotes:
            self._remotes[fn] = ray.remote(num_cpus=s.threads)(fn)
        remote = self._remotes[fn]

        def submit(call: tuple[int, dict[str, Any]]) -> tuple[Any, int]:
            index, arguments = call
            return remote.remote(**arguments, settings=self.settings_json,
                                 data=self._data_ref), index

        run_pool(calls, s.workers, submit, save)

    def close(self) -> None:
        if self.started_ray:
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()


__all__ = ["Job", "LayerEvaluator", "Retrain"]
