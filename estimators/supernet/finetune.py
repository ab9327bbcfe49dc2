"""A few steps of each subnet on its own before it is scored (`finetune_steps`).

Inherited weights were trained for every subnet at once. An op deep in a one-shot cell was
trained on whatever the ops before it produced, one choice at a time, so a chain of
convolutions never trained as one: the supernet under-rates such cells (docs/ranking.md).
A few SGD steps of the extracted subnet alone, from its inherited weights, let the chain
adapt to itself before BatchNorm is recalibrated and the subnet is scored. Every subnet takes
the same seeded batches, so two subnets' scores do not differ by the images they saw.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from estimators.data import DataSplits
from estimators.train import resize_batch
from search_spaces.supernets.dead_taps import dead_taps_trimmed


class SubnetFinetune:
    """`steps` SGD steps (momentum 0.9, constant `lr`, batches of `batch_size` seeded
    training images, the same for every subnet) applied to an extracted subnet."""

    def __init__(self, data: DataSplits, steps: int, lr: float, batch_size: int = 64,
                 seed: int = 0):
        self.steps, self.lr, self.seed = steps, lr, seed
        # normalised; seed + 1: other images than BatchNorm's calibration draw
        images, labels = data.sample_batch(steps * batch_size, seed + 1, "train") \
            if steps else (None, None)
        self.images, self.batch_size = images, batch_size
        self.labels = () if labels is None else labels.split(batch_size)
        self._resized: dict[int, tuple[torch.Tensor, ...]] = {}

    def describe(self) -> str:
        """A part of file names that differs between settings ("" when off)."""
        return f"-f{self.steps}x{self.lr:g}" if self.steps else ""

    def batches(self, size: int) -> tuple[torch.Tensor, ...]:
        """The training images of every step at `size` pixels (cached per size)."""
        assert self.images is not None
        if size not in self._resized:
            self._resized[size] = resize_batch(self.images, size).split(self.batch_size)
        return self._resized[size]

    def __call__(self, model: nn.Module, size: int) -> nn.Module:
        """Train `model` (in place) for the steps; returns it in train mode."""
        if not self.steps:
            return model
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=self.lr, momentum=0.9)
        # dropout draws from torch's generator: seeded, so every subnet and every repeat of one
        # draws the same masks, and the caller's generator is left where it was
        with torch.inference_mode(False), torch.enable_grad(), dead_taps_trimmed(), \
                torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for images, labels in zip(self.batches(size), self.labels):
                loss = F.cross_entropy(model(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return model


__all__ = ["SubnetFinetune"]
