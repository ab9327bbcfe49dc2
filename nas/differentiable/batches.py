"""Endless, seeded streams of normalised batches from one split of a data set: the weight steps
draw from `train`, the architecture steps from `val` (DARTS's two halves of the training data;
the test split is never touched by a search)."""
from __future__ import annotations

import numpy as np
import torch

from estimators.data import DataSplits
from estimators.train import resize_batch


class BatchStream:
    """Batches of `batch_size` images drawn from a fresh seeded permutation at every pass."""

    def __init__(self, data: DataSplits, split: str, batch_size: int, seed: int | list[int],
                 limit: int | None = None, resolution: int | None = None):
        self.data = data
        images = data.split(split)
        count = len(images) if limit is None else min(limit, len(images))
        self.images, self.labels = images.images[:count], images.labels[:count]
        if count < 1:
            raise ValueError(f"the {split} split is empty")
        self.batch_size = min(batch_size, count)
        self.rng = np.random.default_rng(seed)
        self.resolution = resolution
        self._order = np.zeros(0, dtype=np.int64)
        self._at = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._at + self.batch_size > len(self._order):
            self._order = self.rng.permutation(len(self.labels))
            self._at = 0
        idx = torch.from_numpy(self._order[self._at:self._at + self.batch_size])
        self._at += self.batch_size
        inputs = resize_batch(self.data.normalize(self.images[idx]), self.resolution)
        return inputs, self.labels[idx]
