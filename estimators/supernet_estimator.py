"""The `supernet` accuracy estimator: a subnet's top-1 % with weights inherited from a trained
supernet. For each arch: extract the subnet (`space.build(arch)` holding the shared weights),
recalibrate its BatchNorm statistics on training images (always: the shared running
statistics belong to no subnet in particular), then score it on the validation split.

The images are normalised (and resized) once, when the estimator is made; a subnet then
costs one extraction and two forward passes (calibration, validation), run in channels-last
layout with dead kernel taps trimmed (see `search_spaces.supernets.dead_taps`).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from estimators.accuracy import AccuracyEstimator
from estimators.batchnorm import fold_batchnorm, recalibrate_batchnorm
from estimators.data import DataSplits
from estimators.supernet_training import (Progress, SupernetRecipe, TrainedSupernet,
                                          input_size, load_trained, train_supernet)
from estimators.train import resize_batch
from search_spaces import Arch, NasError, SearchSpace, get_space
from search_spaces.supernets import Supernet
from search_spaces.supernets.dead_taps import dead_taps_trimmed

CALIBRATION_IMAGES = 500  # OFA uses 2,000 ImageNet images; 500 of 28x28 settle the means
EVAL_IMAGES = 2000


@torch.inference_mode()
def top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
         batch_size: int = 250) -> float:
    """Top-1 accuracy (%) of `model` (in eval mode) on `images` (batches of 250: faster on a
    CPU than larger ones, whose activations fall out of cache)."""
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start:start + batch_size])
        correct += int((logits.argmax(dim=1) == labels[start:start + batch_size]).sum())
    return 100.0 * correct / max(1, images.shape[0])


class SupernetEstimator(AccuracyEstimator):
    """`acc`: top-1 % on the first `eval_images` of `split` (None: the whole split) after
    BatchNorm recalibration on `calibration_images` seeded training images."""

    name = "supernet"

    def __init__(self, trained: TrainedSupernet | Supernet, data: DataSplits, *,
                 recipe: SupernetRecipe | None = None,
                 calibration_images: int = CALIBRATION_IMAGES,
                 eval_images: int | None = EVAL_IMAGES, split: str = "val", seed: int = 0):
        super().__init__()
        if split not in ("val", "test"):
            raise NasError(f"split must be 'val' or 'test' (final reports), got {split!r}")
        if calibration_images < 2:
            raise NasError(f"BatchNorm calibration needs at least 2 images, got "
                           f"{calibration_images}")
        if isinstance(trained, TrainedSupernet):
            self.supernet, self.recipe = trained.supernet, trained.recipe
        else:
            self.supernet, self.recipe = trained, recipe or SupernetRecipe()
        self.data, self.split, self.seed = data, split, seed
        count = min(calibration_images, len(data.train))
        self.calibration = data.sample_batch(count, seed, "train")[0]
        held = data.split(split)
        limit = len(held) if eval_images is None else min(eval_images, len(held))
        self.images = data.normalize(held.images[:limit])
        self.labels = held.labels[:limit]
        self._resized: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def label(self) -> str:
        return "supernet" if self.split == "val" else "supernet:test"

    def _inputs(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibration and evaluation images at `size` pixels, channels last (cached)."""
        if size not in self._resized:
            layout = torch.channels_last
            self._resized[size] = (
                resize_batch(self.calibration, size).contiguous(memory_format=layout),
                resize_batch(self.images, size).contiguous(memory_format=layout))
        return self._resized[size]

    def extract(self, arch: Arch) -> nn.Module:
        """The subnet of `arch` with inherited weights and recalibrated BatchNorm."""
        model = self.supernet.extract(arch).to(memory_format=torch.channels_last)
        calibration, _ = self._inputs(input_size(self.supernet, self.data, self.recipe, arch))
        with dead_taps_trimmed():
            recalibrate_batchnorm(model, calibration)
        return model

    def estimate(self, arch: Arch) -> dict[str, float]:
        start = time.perf_counter()
        size = input_size(self.supernet, self.data, self.recipe, arch)
        model = self.extract(arch)
        fold_batchnorm(model)  # scoring only: the statistics are final
        _, images = self._inputs(size)
        with dead_taps_trimmed():
            acc = top1(model, images, self.labels)
        return {"acc": acc, "eval_images": float(images.shape[0]),
                "supernet_seconds": time.perf_counter() - start}

    # --- construction from a space ------------------------------------------------------------
    @classmethod
    def for_space(cls, space: SearchSpace | str, data: DataSplits, *,
                  recipe: SupernetRecipe = SupernetRecipe(), train: bool = True,
                  workers: int = 1, quiet: bool = True, cache_dir: str | Path | None = None,
                  progress: Progress | None = None, **kwargs) -> "SupernetEstimator":
        """The estimator on the cached supernet of (space, data, recipe); trained first when
        `train` (else a NasError says how to train it)."""
        resolved = get_space(space) if isinstance(space, str) else space
        if train:
            trained = train_supernet(resolved, data, recipe, workers=workers, quiet=quiet,
                                     cache_dir=cache_dir, progress=progress)
        else:
            found = load_trained(resolved, data, recipe, cache_dir)
            if found is None:
                raise NasError(f"no trained supernet of {resolved.name} on {data.name} with "
                               f"this recipe in the cache; run `nas supernet train --space "
                               f"{resolved.name} --data {data.name}` first")
            trained = found
        return cls(trained, data, **kwargs)


__all__ = ["SupernetEstimator", "recalibrate_batchnorm", "top1"]
