"""Training an episode's children: in this process (workers 0) or as Ray tasks, one per
`threads` CPUs, each result handed back as soon as it is done."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from estimators.data import DataSplits
from estimators.train import TrainRecipe
from nas.morph.children import finetune
from nas.morph.settings import EditSettings

Job = tuple[int, str, str]  # (trial, model file before training, checkpoint after)


class ChildTrainer:
    """`trainer(jobs, save)` trains every job and calls `save(trial, metrics)` for each."""

    def __init__(self, settings: EditSettings, data: DataSplits, recipe: TrainRecipe,
                 distill: Mapping[str, Any] | None = None):
        self.settings, self.data = settings, data
        self.recipe, self.distill = asdict(recipe), dict(distill) if distill else None
        self.started_ray = False
        self._remote: Any = None
        self._data_ref: Any = None

    def __call__(self, jobs: list[Job], save: Callable[[int, Mapping[str, Any]], None]) -> None:
        s = self.settings
        if not jobs:
            return
        if s.workers == 0:
            for trial, init, out in jobs:
                save(trial, finetune(init, out, self.data, self.recipe, s.seed + trial,
                                     s.threads, self.distill))
            return
        import ray

        from nas.runners import init_ray, run_pool

        if self._remote is None:
            self.started_ray = init_ray(s.address)
            self._remote = ray.remote(num_cpus=s.threads)(finetune)
            self._data_ref = ray.put(self.data)
        limit = s.workers or max(1, int(ray.available_resources().get("CPU", 1)) // s.threads)

        def submit(job: Job) -> tuple[Any, int]:
            trial, init, out = job
            return self._remote.remote(init, out, self._data_ref, self.recipe, s.seed + trial,
                                       s.threads, self.distill), trial

        run_pool(jobs, limit, submit, save)

    def close(self) -> None:
        if self.started_ray:
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()


__all__ = ["ChildTrainer", "Job"]
