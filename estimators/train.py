"""Short standalone training from scratch: the reference accuracy for final evaluation and for
rank checks of cheaper estimators. Deterministic given a seed (same seed, same thread count,
same accuracy): the model is initialised, the data shuffled and dropout drawn from it.

Recipe: SGD with Nesterov momentum (or AdamW, the usual choice for attention models), a linear
warm-up then cosine decay to zero, cross-entropy
with optional label smoothing, BatchNorm statistics re-estimated on training images at the
end; top-1 accuracy (%) on the validation split, or on the test split for a final report.
Optional, off by default: seeded crop-and-flip augmentation (`Augment`) and knowledge
distillation from a teacher (`Distill`). `train_epoch` is one pass, for loops that checkpoint
between epochs (`estimators.standalone`, `nas train`).
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

OPTIMIZERS = ("sgd", "adamw")
# Defaults that differ by optimizer (for batch 128): AdamW wants a far smaller step and a far
# larger (decoupled) weight decay than SGD. `nas train` and `nas stitch` start from these.
DEFAULT_LR = {"sgd": 0.1, "adamw": 1e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05}


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
    # sgd: Nesterov momentum `momentum`; adamw: AdamW with betas (0.9, 0.999), `momentum` unused.
    # A ViT on Fashion-MNIST (6 blocks, width 96, 5 epochs of 10,000 images) reached 82.3 %
    # with AdamW at lr 2e-3 against 74.0 % with SGD at lr 0.1.
    optimizer: str = "sgd"
    # cap on the gradients' global norm before each step (None: no cap). Inverted-residual
    # networks at lr 0.1 take spikes of 10-40x the median norm that wreck a short run: one
    # `mobile_tiny` subnet, 5 epochs of 5,000 images, read 64.8 % test without a cap, 78.0 %
    # at 5 and 82.9 % at 2 (median norm about 1.3; docs/train.md)
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise NasError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                           f"{self.optimizer!r}")
        if not 0 <= self.weight_decay < math.inf:
            raise NasError(f"weight decay must be 0 or more and finite, got {self.weight_decay}")
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
        if self.clip_norm is not None and not 0 < self.clip_norm < math.inf:
            raise NasError(f"clip_norm must be positive and finite (or None: no cap), got "
                           f"{self.clip_norm}")

    def describe(self) -> str:
        """Stable text form, e.g. for cache keys and reports. The optimizer is named only when
        it is not SGD and the gradient cap only when set, so recipes keep the form (and keys)
        they had before those were fields."""
        return ",".join(f"{k}={v}" for k, v in asdict(self).items()
                        if not (k == "optimizer" and v == "sgd")
                        and not (k == "clip_norm" and v is None))


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


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation of each batch: a random crop of the image padded by
    `padding` pixels on each side (given at 28 px; scaled with the resolution trained at, and
    padded with black) and, with `flip`, a horizontal flip of half the images. Drawn from its
    own generator, seeded per epoch: the same seed gives the same crops and flips."""

    padding: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise NasError(f"crop padding must be 0 (none) or more pixels, got {self.padding}")

    def pixels(self, resolution: int) -> int:
        """The padding at `resolution` pixels per side (4 at 28 px: 5 at 32, 1 at 8)."""
        return 0 if self.padding == 0 else max(1, round(self.padding * resolution / 28))

    def __call__(self, inputs: torch.Tensor, fill: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        """`inputs` (N, C, H, W) cropped and flipped; `fill` (C,) is black, normalised."""
        n, c, h, w = inputs.shape
        pad = self.pixels(h)
        if pad:
            padded = fill.view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
            padded[:, :, pad:pad + h, pad:pad + w] = inputs
            dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
            dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
            rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
            cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (n, 1, w)
            inputs = padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
        if self.flip:
            flipped = torch.rand(n, generator=generator) < 0.5
            inputs = torch.where(flipped.view(n, 1, 1, 1), inputs.flip(-1), inputs)
        return inputs.contiguous()


DISTILL_WEIGHT = 0.9  # the soft-target share of the loss (CRD's KD baseline: 0.9, T = 4)
DISTILL_TEMPERATURE = 4.0


def check_distill(weight: float, temperature: float) -> None:
    """A soft-target share in [0, 1] and a positive, finite temperature."""
    if not 0 <= weight <= 1:
        raise NasError(f"the distillation weight must be in [0, 1], got {weight}")
    if not 0 < temperature < math.inf:
        raise NasError(f"the distillation temperature must be positive and finite, got "
                       f"{temperature}")


@dataclass(frozen=True)
class Distill:
    """Knowledge distillation (Hinton et al., 2015) from a trained `teacher` (kept in eval
    mode, fed the same augmented batch at its own `resolution`): the loss is
    (1 - weight) * cross-entropy with the labels + weight * T^2 * KL(teacher || student) of
    the logits softened by the temperature T."""

    teacher: nn.Module
    weight: float = DISTILL_WEIGHT
    temperature: float = DISTILL_TEMPERATURE
    resolution: int | None = None

    def __post_init__(self) -> None:
        check_distill(self.weight, self.temperature)

    def loss(self, logits: torch.Tensor, inputs: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.teacher.eval()(resize_batch(inputs, self.resolution))
        t = self.temperature
        soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(target / t, dim=1),
                        reduction="batchmean", log_target=True) * (t * t)
        return (1 - self.weight) * hard + self.weight * soft


def make_optimizer(model: nn.Module, recipe: TrainRecipe) -> torch.optim.Optimizer:
    """The recipe's optimizer (SGD with Nesterov momentum, or AdamW), weight decay on weights
    only."""
    decay, no_decay = [], []
    for param in model.parameters():
        (decay if param.dim() > 1 else no_decay).append(param)  # no decay on norms and biases
    groups = [{"params": decay, "weight_decay": recipe.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum,
                           nesterov=recipe.momentum > 0)


def plan_steps(data: DataSplits, recipe: TrainRecipe) -> tuple[int, int, int]:
    """(images per epoch, steps per epoch, total steps) of `recipe` on `data`."""
    per_epoch = len(data.train) if recipe.train_images is None else min(recipe.train_images,
                                                                        len(data.train))
    steps_per_epoch = max(1, math.ceil(per_epoch / recipe.batch_size))
    return per_epoch, steps_per_epoch, max(1, round(recipe.epochs * steps_per_epoch))


def _stream(seed: int, epoch: int, *more: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, *more]).generate_state(1)[0])


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: DataSplits,
                recipe: TrainRecipe, *, seed: int, epoch: int, step: int, total_steps: int,
                resolution: int | None = None, progress: StepProgress | None = None,
                augment: Augment | None = None,
                distill: Distill | None = None) -> tuple[int, int, list[float]]:
    """One pass over the (shuffled, capped) train split from global step `step`, stopping at
    `total_steps`: (the step reached, images seen, the loss of each step). The data order
    and the augmentation depend only on (seed, epoch); dropout draws from torch's generator."""
    per_epoch = plan_steps(data, recipe)[0]
    generator = fill = None
    if augment is not None:
        generator = torch.Generator().manual_seed(_stream(seed, epoch, 1))
        fill = -torch.tensor(data.mean) / torch.tensor(data.std)  # black, normalised
    losses: list[float] = []
    images = 0
    for inputs, labels in data.batches("train", recipe.batch_size, shuffle=True,
                                       seed=_stream(seed, epoch), limit=per_epoch):
        if step >= total_steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps, recipe)
        inputs = resize_batch(inputs, resolution)
        if augment is not None:
            inputs = augment(inputs, fill, generator)
        logits = model(inputs)
        loss = F.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)
        if distill is not None:
            loss = distill.loss(logits, inputs, loss)
        if not torch.isfinite(loss):
            raise NasError(f"training diverged at step {step} (loss {float(loss)}); "
                           f"lower the learning rate (now {recipe.lr})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
        step += 1
        images += int(labels.shape[0])
        if progress is not None:
            progress(step, total_steps, losses[-1])
    return step, images, losses


def train_model(model: nn.Module, data: DataSplits, recipe: TrainRecipe = TrainRecipe(),
                seed: int = 0, split: str = "val", resolution: int | None = None,
                progress: StepProgress | None = None, *, augment: Augment | None = None,
                distill: Distill | None = None) -> TrainResult:
    """Train `model` in place on the train split, then score it on `split` (val or test).
    `augment` and `distill` (default none) add augmentation and a teacher's soft targets."""
    if split not in ("val", "test"):
        raise NasError(f"evaluate on 'val' or 'test', not {split!r}")
    total_steps = plan_steps(data, recipe)[2]
    optimizer = make_optimizer(model, recipe)
    torch.manual_seed(seed)
    model.train()
    losses: list[float] = []
    step = images = 0
    start = time.perf_counter()
    epoch = 0
    while step < total_steps:
        step, seen, epoch_losses = train_epoch(
            model, optimizer, data, recipe, seed=seed, epoch=epoch, step=step,
            total_steps=total_steps, resolution=resolution, progress=progress, augment=augment,
            distill=distill)
        images += seen
        losses += epoch_losses
        epoch += 1
    recalibrate_bn(model, data, recipe.bn_images, seed=seed, resolution=resolution)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    acc = evaluate(model, data, split, recipe.eval_batch_size, recipe.eval_images, resolution)
    tail = losses[-max(1, len(losses) // 10):]
    return TrainResult(acc=acc, split=split, train_loss=float(np.mean(tail)), steps=step,
                       images_seen=images, train_seconds=train_seconds,
                       eval_seconds=time.perf_counter() - start)
