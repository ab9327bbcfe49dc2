"""Data-parallel supernet training on Ray Train: `TorchTrainer` with the gloo backend, N CPU
workers, one process each.

Every worker builds the same supernet (its initialisation is seeded; rank 0's weights are
also broadcast), runs the same subnets each step (they are drawn from the recipe's seed),
takes its share of each batch (with `subnets_per_pass` > 1, each group of subnets splits
that share) and averages gradients with the others (`SandwichTrainer`), so
N workers follow the single-process run up to floating-point order and per-shard BatchNorm
statistics. Rank 0 writes the per-epoch checkpoint and reports it to Ray Train; the caller
gets the last one back at the cache path.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from estimators.data import DataSplits
from estimators.ray_local import ensure_ray
from estimators.supernet.cache import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from estimators.supernet.recipe import SupernetRecipe
from estimators.supernet.trainer import (
    SandwichTrainer,
    checkpoint_meta,
    restore,
    supernet_for,
)
from search_spaces import NasError, SearchSpace, register_space


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: the epochs from the resumed one to the last."""
    import ray.train
    import torch
    import torch.distributed as dist

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(1)  # one CPU per worker
    space: SearchSpace = register_space(config["space"])  # keys resolve in this process
    recipe: SupernetRecipe = config["recipe"]
    data: DataSplits = config["data"]
    trainer = SandwichTrainer(supernet_for(space, data, recipe), data, recipe, rank, world)
    done, history = restore(trainer, config["payload"])
    with torch.no_grad():
        for tensor in list(trainer.supernet.parameters()) + list(trainer.supernet.buffers()):
            dist.broadcast(tensor, src=0)
    progress = _progress(trainer, done, space.name) if rank == 0 and not config["quiet"] \
        else None
    for epoch in range(done, recipe.epochs):
        record = trainer.run_epoch(epoch, progress)
        history.append(record)
        checkpoint = None
        folder = tempfile.mkdtemp(prefix="supernet-")
        if rank == 0:
            payload = trainer.state(epoch + 1, config["key"], history, checkpoint_meta(trainer))
            save_checkpoint(Path(config["path"]), payload)
            shutil.copyfile(config["path"], Path(folder) / CHECKPOINT_FILE)
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report({"epoch": epoch + 1, "loss": record["loss"]}, checkpoint=checkpoint)
        shutil.rmtree(folder, ignore_errors=True)


def _progress(trainer: SandwichTrainer, done: int, name: str):
    """A progress bar drawn by the driver (Ray's tqdm), updated by rank 0."""
    from ray.experimental import tqdm_ray

    bar = tqdm_ray.tqdm(total=trainer.total_steps, desc=f"supernet {name} (rank 0)",
                        unit="step")
    bar.update(done * trainer.steps_per_epoch)

    def update(step: int, total: int, loss: float) -> None:
        bar.update(step - bar.n)
        if step >= total:
            bar.close()

    return update


def check_batch(recipe: SupernetRecipe, workers: int) -> None:
    """A one-line NasError when a batch cannot be shared by `workers` with every subnet of a
    pass (`subnets_per_pass`) still getting 2 images of each worker's share (BatchNorm)."""
    per_pass = recipe.subnets_per_pass
    if recipe.batch_size < 2 * workers * per_pass:
        raise NasError(f"batch size {recipe.batch_size} is too small for {workers} workers"
                       + (f" and {per_pass} subnets per pass" if per_pass > 1 else "")
                       + " (each needs at least 2 images per step"
                       + (" and subnet" if per_pass > 1 else "") + " for BatchNorm)")


def train_parallel(space: SearchSpace, data: DataSplits, recipe: SupernetRecipe, key: str,
                   path: Path, workers: int, *, payload: dict[str, Any] | None = None,
                   quiet: bool = False, address: str | None = None) -> None:
    """Train on `workers` Ray Train CPU workers; the last checkpoint ends up at `path`."""
    check_batch(recipe, workers)
    ensure_ray(address)
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    storage = tempfile.mkdtemp(prefix="nas-ray-train-")
    try:
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={"space": space, "recipe": recipe, "data": data, "key": key,
                               "path": str(path), "payload": payload, "quiet": quiet},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=False,
                                         resources_per_worker={"CPU": 1}),
            torch_config=TorchConfig(backend="gloo"),
            run_config=RunConfig(name=f"supernet-{key}", storage_path=storage))
        result = trainer.fit()
        if getattr(result, "error", None) is not None:
            raise NasError(f"data-parallel supernet training failed: {result.error}")
        if result.checkpoint is not None:
            with result.checkpoint.as_directory() as folder:
                reported = load_checkpoint(Path(folder) / CHECKPOINT_FILE, key)
            if not path.exists() or load_checkpoint(path, key)["epochs_done"] \
                    < reported["epochs_done"]:
                save_checkpoint(path, reported)  # rank 0 ran on another node
    finally:
        shutil.rmtree(storage, ignore_errors=True)


__all__ = ["check_batch", "train_parallel"]
