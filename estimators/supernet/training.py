"""Supernet training, the public entry point: a checkpoint per epoch, resume, and a cache of
trained supernets by (space, data, recipe). The trainer itself is `estimators.supernet.trainer`;
`workers` > 1 trains data-parallel on Ray Train (`estimators.supernet.parallel`).
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

from estimators.data import DataSplits
from estimators.progress import Log, StepProgress
from estimators.supernet.cache import (
    CheckpointError,
    SupernetCacheWarning,
    cache_key,
    checkpoint_path,
    data_fingerprint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    space_signature,
)
from estimators.supernet.recipe import SupernetRecipe, default_recipe
from estimators.supernet.trainer import (
    SandwichTrainer,
    TrainedSupernet,
    check_runs,
    checkpoint_meta,
    restore,
    supernet_for,
)
from search_spaces import NasError, SearchSpace, get_space


def locate(space: SearchSpace, data: DataSplits, recipe: SupernetRecipe,
           cache_dir: str | Path | None = None) -> tuple[str, Path]:
    """(cache key, checkpoint path) of the supernet of `space` trained on `data` by `recipe`."""
    key = cache_key(space_signature(space, data.num_classes, data.in_channels),
                    data_fingerprint(data), recipe.describe())
    return key, checkpoint_path(space.name, data.name, key, cache_dir)


def load_trained(space: SearchSpace | str, data: DataSplits,
                 recipe: SupernetRecipe | None = None,
                 cache_dir: str | Path | None = None) -> TrainedSupernet | None:
    """The cached, completely trained supernet for (space, data, recipe: default the space's
    `default_recipe`), or None when there is none (or only an interrupted run's checkpoint).
    A cache file that cannot be read or does not fit the supernet (empty, truncated,
    foreign) is a one-line CheckpointError."""
    resolved = get_space(space) if isinstance(space, str) else space
    recipe = recipe or default_recipe(resolved)
    try:
        return _load_cached(resolved, data, recipe, cache_dir)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; train it again with `nas supernet train --space "
                              f"{resolved.name} --data {data.name} --retrain`") from None


def _load_cached(space: SearchSpace, data: DataSplits, recipe: SupernetRecipe,
                 cache_dir: str | Path | None) -> TrainedSupernet | None:
    key, path = locate(space, data, recipe, cache_dir)
    if not path.exists():
        return None
    payload = load_checkpoint(path, key)
    if not payload.get("complete"):
        return None
    supernet = supernet_for(space, data, recipe)
    load_weights(supernet, payload["supernet"], path)
    return TrainedSupernet(supernet, recipe, path, key, int(payload["epochs_done"]),
                           list(payload.get("history", [])), 0.0, True,
                           int(payload["epochs_done"]))


def train_supernet(space: SearchSpace | str, data: DataSplits,
                   recipe: SupernetRecipe | None = None, *, workers: int = 1,
                   resume: bool = False, quiet: bool = False,
                   cache_dir: str | Path | None = None, reuse: bool = True,
                   progress: StepProgress | None = None, log: Log | None = None) -> TrainedSupernet:
    """Train the supernet of `space` on `data` with `recipe` (default: the space's
    `default_recipe`), or reuse the cached one for the same space, data and recipe. `resume`
    continues an interrupted run from its last checkpoint; without it an incomplete checkpoint
    is started over. `workers` > 1 trains data-parallel with Ray Train (gloo, CPU). A tqdm bar
    shows progress unless `quiet` (or pass `progress`); `log` receives one line per event
    (reuse, resume, epoch)."""
    if workers < 1:
        raise NasError(f"workers must be at least 1, got {workers}")
    resolved = get_space(space) if isinstance(space, str) else space
    recipe = recipe or default_recipe(resolved)
    say = log or (lambda _: None)
    key, path = locate(resolved, data, recipe, cache_dir)
    if reuse:
        try:
            cached = _load_cached(resolved, data, recipe, cache_dir)
        except CheckpointError as exc:
            warnings.warn(f"the cached supernet is damaged and is discarded ({exc}); training "
                          f"it again (minutes)", SupernetCacheWarning, stacklevel=2)
            cached = None
        if cached is not None:
            say(f"reusing trained supernet {path}")
            return cached
    if workers > 1:
        from estimators.supernet.parallel import check_batch

        check_batch(recipe, workers)  # before Ray starts
    supernet = supernet_for(resolved, data, recipe)
    check_runs(supernet, data, recipe)
    payload = _resume_payload(path, key, say) if resume else None
    if workers > 1:
        from estimators.supernet.parallel import train_parallel

        start = time.perf_counter()
        done_before = int(payload["epochs_done"]) if payload else 0
        train_parallel(resolved, data, recipe, key, path, workers, payload=payload, quiet=quiet)
        final = load_checkpoint(path, key)
        load_weights(supernet, final["supernet"], path)
        return TrainedSupernet(supernet, recipe, path, key, int(final["epochs_done"]),
                               list(final["history"]), time.perf_counter() - start, False,
                               done_before)
    trainer = SandwichTrainer(supernet, data, recipe)
    return _train_local(trainer, payload, key, path, quiet, progress, say)


def _resume_payload(path: Path, key: str, say: Log) -> dict[str, Any] | None:
    if not path.exists():
        say("nothing to resume: training from the start")
        return None
    try:
        payload = load_checkpoint(path, key)
    except CheckpointError as exc:
        warnings.warn(f"cannot resume: the checkpoint is damaged and is discarded ({exc}); "
                      f"training from the start", SupernetCacheWarning, stacklevel=3)
        return None
    say(f"resuming {path} after epoch {payload['epochs_done']}")
    return payload



def _train_local(trainer: SandwichTrainer, payload: dict[str, Any] | None, key: str, path: Path,
                 quiet: bool, progress: StepProgress | None, say: Log) -> TrainedSupernet:
    done, history = restore(trainer, payload, path)
    bar = None
    if progress is None and not quiet:
        bar = progress_bar(trainer.total_steps, done * trainer.steps_per_epoch,
                           f"supernet {trainer.supernet.space.name}")
        progress = bar.update_to
    start = time.perf_counter()
    try:
        for epoch in range(done, trainer.recipe.epochs):
            record = trainer.run_epoch(epoch, progress)
            history.append(record)
            save_checkpoint(path, trainer.state(epoch + 1, key, history,
                                                checkpoint_meta(trainer)))
            say(f"epoch {epoch + 1}/{trainer.recipe.epochs}: loss {record['loss']:.4f}, "
                f"{record['seconds']:.1f}s, checkpoint {path}")
    finally:
        if bar is not None:
            bar.close()
    return TrainedSupernet(trainer.supernet, trainer.recipe, path, key, trainer.recipe.epochs,
                           history, time.perf_counter() - start, False, done)


class _Bar:
    """A tqdm bar driven by (step, total, loss) callbacks."""

    def __init__(self, total: int, initial: int, desc: str):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr,
                        dynamic_ncols=True)

    def update_to(self, step: int, total: int, loss: float) -> None:
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int, initial: int, desc: str) -> _Bar:
    return _Bar(total, initial, desc)


__all__ = ["load_trained", "locate", "progress_bar", "train_supernet"]
