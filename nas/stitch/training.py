"""Making a stitched family useful: least-squares initialisation of its stitching layers, joint
training with one stitch drawn per step, each stitch's BatchNorm statistics, and scoring.

Sampling (which stitch a training step runs):
- `uniform`: every stitch, anchors included, equally often (SN-Net);
- `flops`: the FLOPs range from the cheapest to the dearest stitch is cut into `buckets`
  intervals of equal width; a step picks a non-empty interval uniformly, then a stitch in it
  uniformly (SN-Netv2's FLOPs-aware sampling), so crowded FLOPs regions (many stitches of
  nearly the same cost) do not take most of the training.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from estimators.data import DataSplits
from estimators.train import (
    Augment,
    Distill,
    TrainRecipe,
    evaluate,
    make_optimizer,
    plan_steps,
    resize_batch,
    train_epoch,
)
from nas.stitch.anchors import Anchor, block_outputs
from nas.stitch.layers import fit_least_squares
from nas.stitch.network import BN_BUFFERS, StitchedNetwork
from nas.stitch.progress import JointState

Log = Callable[[str], None]
# gradient norm cap of joint training (trained anchors: about 1-3 a step): a stitching layer
# that starts far off (random, or fitted on few positions) must not wreck the blocks every
# other stitch shares in one step (measured: losses of 10^3 without)
CLIP_NORM = 5.0


class StitchSampler:
    """Draws the stitch of each training step (`uniform` or `flops`; see the module
    docstring), from its own seeded generator."""

    def __init__(self, flops: list[float], kind: str = "flops", buckets: int = 10,
                 seed: int = 0):
        self.rng = np.random.default_rng(seed)
        if kind == "uniform":
            self.groups = [list(range(len(flops)))]
        else:
            low, high = min(flops), max(flops)
            width = (high - low) / buckets or 1.0
            found: dict[int, list[int]] = {}
            for index, value in enumerate(flops):
                found.setdefault(min(int((value - low) / width), buckets - 1), []).append(index)
            self.groups = [found[k] for k in sorted(found)]

    def __call__(self) -> int:
        group = self.groups[int(self.rng.integers(len(self.groups)))]
        return group[int(self.rng.integers(len(group)))]

    def shares(self, count: int) -> list[float]:
        """How often each of `count` stitches is drawn, in expectation."""
        share = [0.0] * count
        for group in self.groups:
            for index in group:
                share[index] += 1.0 / len(self.groups) / len(group)
        return share


@torch.no_grad()
def init_least_squares(network: StitchedNetwork, anchors: list[Anchor], data: DataSplits,
                       images: int, seed: int = 0) -> dict[int, float]:
    """Fit every stitching layer on `images` training images: the front anchor's output at the
    cut against the back anchor's own input at the resume block, on the same images. Returns
    each layer's relative residual by stitch index."""
    inputs = next(data.batches("train", images, shuffle=True, seed=seed, limit=images))[0]
    wanted: dict[int, set[int]] = {i: set() for i in range(len(anchors))}
    for s in network.plan:
        if not s.is_anchor:
            wanted[s.front].add(s.cut)
            wanted[s.back].add(s.resume - 1)
    outputs = {i: block_outputs(a, resize_batch(inputs, a.resolution), wanted[i])
               for i, a in enumerate(anchors) if wanted[i]}
    return {i: fit_least_squares(network.layers[str(i)], outputs[s.front][s.cut],
                                 outputs[s.back][s.resume - 1], seed)
            for i, s in enumerate(network.plan) if not s.is_anchor}


@torch.no_grad()
def calibrate_bn(network: StitchedNetwork, data: DataSplits, images: int, seed: int = 0,
                 batch_size: int = 250) -> None:
    """Measure each stitch's BatchNorm statistics on its own path (the plain average over
    `images` training images) and keep them in `network.bn_stats`; 0 images keeps the shared
    running statistics."""
    network.bn_stats.clear()
    if images <= 0:
        return
    batches = [x for x, _ in data.batches("train", batch_size, shuffle=True, seed=seed,
                                          limit=images)]
    was_training = network.training
    network.eval()  # dropout off; only the norms below gather statistics
    for index in range(len(network.plan)):
        norms = network.path_norms(index)
        if not norms:
            continue
        momenta = [(norm, norm.momentum) for norm in norms.values()]
        for norm in norms.values():
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average
            norm.train()
        for inputs in batches:
            network.run(index, inputs)
        for norm, momentum in momenta:
            norm.momentum = momentum
            norm.eval()
        network.bn_stats[index] = {f"{name}.{buffer}": getattr(norm, buffer).clone()
                                   for name, norm in norms.items() for buffer in BN_BUFFERS}
    network.train(was_training)
    network.set_stitch(network.active)


def train_joint(network: StitchedNetwork, data: DataSplits, recipe: TrainRecipe,
                sampler: StitchSampler, seed: int = 0, augment: Augment | None = None,
                distill: Distill | None = None, log: Log | None = None,
                state: JointState | None = None,
                on_epoch: Callable[[JointState], None] | None = None) -> dict[str, float]:
    """Train every anchor and stitching layer together, one drawn stitch per step (the
    engine's recipe and steps: `estimators.train.train_epoch`; gradients capped at
    `CLIP_NORM` unless the recipe caps them). From `state` (a killed run's) it continues
    where that stopped; `on_epoch` gets the state after every epoch."""
    say = log or (lambda _: None)
    _, steps_per_epoch, total = plan_steps(data, recipe)
    if recipe.clip_norm is None:
        recipe = replace(recipe, clip_norm=CLIP_NORM)
    optimizer = make_optimizer(network, recipe)
    state = state or JointState()
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    if state.sampler is not None:
        sampler.rng.bit_generator.state = state.sampler
    if state.torch_rng is not None:
        torch.set_rng_state(state.torch_rng)
    else:
        torch.manual_seed(seed)
    network.train()
    network.sampler = sampler
    start = time.perf_counter()
    try:
        for epoch in range(state.epochs_done, math.ceil(total / steps_per_epoch)):
            step, _, epoch_losses = train_epoch(
                network, optimizer, data, recipe, seed=seed, epoch=epoch, step=state.step,
                total_steps=total, augment=augment, distill=distill)
            state = JointState(epoch + 1, step, state.losses + epoch_losses,
                               state.seconds + time.perf_counter() - start,
                               optimizer.state_dict(), sampler.rng.bit_generator.state,
                               torch.get_rng_state())
            start = time.perf_counter()
            if on_epoch is not None:
                on_epoch(state)
            say(f"joint training epoch {epoch + 1}: loss {np.mean(epoch_losses):.4f}, "
                f"{step}/{total} steps, {state.seconds:.0f}s")
    finally:
        network.sampler = None
        network.eval()
    tail = state.losses[-max(1, len(state.losses) // 10):]
    return {"steps": state.step, "train_loss": float(np.mean(tail)) if tail else float("nan"),
            "train_seconds": state.seconds}


def score(network: StitchedNetwork, data: DataSplits, splits: tuple[str, ...] = ("val",),
          images: int | None = None, batch_size: int = 500,
          indices: list[int] | None = None) -> list[dict[str, float]]:
    """Top-1 accuracy (%) of every stitch (or those of `indices`) on each split (`acc` for
    val, `<split>_acc` otherwise), each with its own BatchNorm statistics."""
    rows = []
    for index in range(len(network.plan)) if indices is None else indices:
        network.set_stitch(index)
        rows.append({("acc" if split == "val" else f"{split}_acc"):
                     evaluate(network, data, split, batch_size, images) for split in splits})
    return rows


@torch.no_grad()
def time_stitches(network: StitchedNetwork, channels: int, device: str,
                  repeats: int = 20) -> list[float]:
    """Median milliseconds of one image through each stitch on `device`, measured here."""
    target = torch.device(device)
    network.to(target).eval()
    times = []
    try:
        for index, stitch in enumerate(network.plan):
            size = network.resolutions[stitch.front]
            x = torch.randn(1, channels, size, size, device=target)
            network.set_stitch(index)
            samples = []
            for attempt in range(repeats + 3):  # three warm-up runs
                _sync(target)
                begin = time.perf_counter()
                network(x)
                _sync(target)
                if attempt >= 3:
                    samples.append((time.perf_counter() - begin) * 1000)
            times.append(float(np.median(samples)))
    finally:
        network.to("cpu")
    return times


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def freeze(model: nn.Module) -> nn.Module:
    """`model` in eval mode without gradients (a distillation teacher)."""
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval()


__all__ = ["StitchSampler", "calibrate_bn", "freeze", "init_least_squares", "score",
           "time_stitches", "train_joint"]
