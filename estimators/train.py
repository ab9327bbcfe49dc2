"""Short standalone training from scratch: the reference accuracy for final evaluation and for
rank checks of cheaper estimators. Deterministic given a seed (same seed, same thread count,
same accuracy): the model is initialised, the data shuffled and dropout drawn from it.

Recipe: SGD with Nesterov momentum, a linear warm-up then cosine decay to zero, cross-entropy
with optional label smoothing, BatchNorm statistics re-estimated on training images at the
end; top-1 accuracy (%) on the validation split, or on the test split for a final report.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from estimators.data import DataSplits
from estimators.progress import StepProgress
from search_spaces import NasError


@dataclass(frozen=True)
class TrainRecipe:
    """How a network is trained. `epochs` may be fractional (a share of one pass);
    `train_images` caps the images per epoch and `eval_images` those scored (None: all)."""

    epochs: float = 1.0
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.05  # share of the steps with a linear warm-up
    label_smoothing: float = 0.0
    train_images: int | None = None
    eval_images: int | None = None
    eval_batch_size: int = 500
    # BatchNorm statistics are re-estimated on this many training images after training:
    # the running averages lag the weights of a short run (45% -> 77% top-1 measured on
    # Fashion-MNIST after 40 steps). 0 keeps the running averages.
    bn_images: int = 2000

    def __post_init__(self) -> None:
        if not 0 < self.epochs < math.inf:
            raise NasError(f"epochs must be a positive finite number, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise NasError("batch sizes must be at least 1")
        if not 0 < self.lr < math.inf or not 0 <= self.warmup < 1:
            raise NasError("lr must be positive and finite and warmup a fraction in [0, 1)")
        if self.bn_images < 0:
            raise NasError(f"bn_images must be 0 (off) or more, got {self.bn_images}")
        for name in ("train_images", "eval_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise NasError(f"{name} must be at least 1 (or None for all), got {value}")

    def describe(self) -> str:
        """Stable text form, e.g. for cache keys and reports."""
        return ",".join(f"{k}={v}" for k, v in asdict(self).items())


@dataclass(frozen=True)
class TrainResult:
    acc: float  # top-1 % on `split`
    split: str
    train_loss: float  # mean loss over the last 10% of steps
    steps: int
    images_seen: int
    train_seconds: float
    eval_seconds: float


def resize_batch(inputs: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Inputs resized to `resolution` pixels per side (unchanged when None or equal)."""
    if resolution is None or inputs.shape[-1] == inputs.shape[-2] == resolution:
        return inputs
    return F.interpolate(inputs, size=(resolution, resolution), mode="bilinear",
                         align_corners=False, antialias=resolution < inputs.shape[-1])


def lr_at(step: int, total: int, recipe: TrainRecipe) -> float:
    warm = int(total * recipe.warmup)
    if step < warm:
        return recipe.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * recipe.lr * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: DataSplits, images: int, batch_size: int = 250,
                   seed: int = 0, resolution: int | None = None) -> None:
    """Replace every BatchNorm's running mean and variance by their plain average over
    `images` shuffled training images (weights unchanged)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or images <= 0:
        return
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    was_training = model.training
    model.train()
    for inputs, _ in data.batches("train", batch_size, shuffle=True, seed=seed, limit=images):
        model(resize_batch(inputs, resolution))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, data: DataSplits, split: str = "val", batch_size: int = 500,
             limit: int | None = None, resolution: int | None = None) -> float:
    """Top-1 accuracy (%) of `model` in eval mode on (the first `limit` images of) a split."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for inputs, labels in data.batches(split, batch_size, limit=limit):
        logits = model(resize_batch(inputs, resolution))
        correct += int((logits.argmax(dim=1) == labels).sum())
        total += int(labels.shape[0])
    model.train(was_training)
    if total == 0:
        raise NasError(f"the {split} split of {data.name} is empty")
    return 100.0 * correct / total


def train_model(model: nn.Module, data: DataSplits, recipe: TrainRecipe = TrainRecipe(),
                seed: int = 0, split: str = "val", resolution: int | None = None,
                progress: StepProgress | None = None) -> TrainResult:
    """Train `model` in place on the train split, then score it on `split` (val or test)."""
    if split not in ("val", "test"):
        raise NasError(f"evaluate on 'val' or 'test', not {split!r}")
    per_epoch = len(data.train) if recipe.train_images is None else min(recipe.train_images,
                                                                        len(data.train))
    steps_per_epoch = max(1, math.ceil(per_epoch / recipe.batch_size))
    total_steps = max(1, round(recipe.epochs * steps_per_epoch))
    decay, no_decay = [], []
    for param in model.parameters():
        (decay if param.dim() > 1 else no_decay).append(param)  # no decay on norms and biases
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=recipe.lr, momentum=recipe.momentum,
                                nesterov=recipe.momentum > 0)
    torch.manual_seed(seed)
    model.train()
    losses: list[float] = []
    step = images = 0
    start = time.perf_counter()
    epoch = 0
    while step < total_steps:
        shuffle_seed = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
        for inputs, labels in data.batches("train", recipe.batch_size, shuffle=True,
                                           seed=shuffle_seed, limit=per_epoch):
            if step >= total_steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, recipe)
            logits = model(resize_batch(inputs, resolution))
            loss = F.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)
            if not torch.isfinite(loss):
                raise NasError(f"training diverged at step {step} (loss {float(loss)}); "
                               f"lower the learning rate (now {recipe.lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            images += int(labels.shape[0])
            if progress is not None:
                progress(step, total_steps, losses[-1])
        epoch += 1
    recalibrate_bn(model, data, recipe.bn_images, seed=seed, resolution=resolution)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    acc = evaluate(model, data, split, recipe.eval_batch_size, recipe.eval_images, resolution)
    tail = losses[-max(1, len(losses) // 10):]
    return TrainResult(acc=acc, split=split, train_loss=float(np.mean(tail)), steps=step,
                       images_seen=images, train_seconds=train_seconds,
                       eval_seconds=time.perf_counter() - start)
