"""The two rejection protocols of the EvoNorm search (Liu et al. 2020, section 3.2), run on a
candidate before its full evaluation. Each returns a `Verdict`: (passed, measured value,
seconds, reason).

*Stability* (the paper rejects layers whose worst-case gradient norm is too large): the first
evaluation network with the candidate plugged in, in train mode, one fixed batch of training
images `x` (drawn from the seed). A perturbation `d` of the input, bounded by
|d|_inf <= eps (normalised input units; it starts uniform in [-eps, eps], drawn from the
seed), takes `steps` steps of projected signed gradient ascent (step 2.5 eps / steps) on

    G(d) = || d loss(f(x + d), y) / d params ||_2     (all parameters, cross-entropy loss)

and the measured value is the largest G met (start included). The layer is rejected when G
is NaN or inf, when the forward pass raises `NonFiniteLayerError`, or when G exceeds `bound`
times BN-ReLU's value, measured the same way on the same network, batch and seed once per
run. A relative bound, not the paper's absolute one: the gradient norm's scale depends on the
network, its width and the loss, and BN-ReLU is the layer every candidate must compete with.

*Quality* (the paper rejects layers that learn too little in a short training): the first
evaluation network with the candidate, trained for `quality_steps` steps by the fitness
recipe's rules (fewer images, its own batch), then scored on `quality_images` validation
images. Rejected when its accuracy is below chance + share * (BN-ReLU's accuracy after the
same training - chance), BN-ReLU's accuracy measured once per run; or when training fails
(NaN or inf in a layer, a diverged loss).

Without a baseline (BN-ReLU itself, and every reference layer: they are measured, never
rejected) a finite value passes.
"""
from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

from estimators.data import DataSplits
from estimators.train import TrainRecipe
from nas.evonorm.plug import plugged_network, train_plugged
from search_spaces import NasError, first_line

LAYER_FAILURES = (NasError, RuntimeError, FloatingPointError)  # a layer that breaks training


class Verdict(NamedTuple):
    """What a protocol found: passed or not, its measured value (NaN when none), its time
    and, when rejected, why."""

    passed: bool
    value: float
    seconds: float
    reason: str = ""


def gradient_norm_ascent(model: Any, inputs: Any, labels: Any, steps: int, eps: float,
                         seed: int) -> float:
    """The largest parameter-gradient norm G(d) met by `steps` steps of signed gradient ascent
    on an L-inf-bounded input perturbation d (see the module docstring); inf when G is not
    finite."""
    import torch
    import torch.nn.functional as F

    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)
    delta = (torch.rand(inputs.shape, generator=generator) * 2 - 1) * eps
    step_size = 2.5 * eps / max(steps, 1)
    worst = 0.0
    for step in range(steps + 1):
        last = step == steps
        delta.requires_grad_(not last)
        loss = F.cross_entropy(model(inputs + delta), labels)
        grads = torch.autograd.grad(loss, params, create_graph=not last, allow_unused=True)
        norm = torch.sqrt(sum((g * g).sum() for g in grads if g is not None))
        value = float(norm.detach())
        if not math.isfinite(value):
            return math.inf
        worst = max(worst, value)
        if last or not norm.requires_grad:  # nothing more to climb
            break
        (ascent,) = torch.autograd.grad(norm, delta, allow_unused=True)
        if ascent is None:  # the norm does not depend on the input
            break
        delta = (delta.detach() + step_size * ascent.sign()).clamp(-eps, eps)
    return worst


def stability(layer: Any, arch: str, data: DataSplits, *, steps: int, eps: float,
              batch: int, bound: float, baseline: float | None, seed: int) -> Verdict:
    """The stability protocol on evaluation network `arch` (see the module docstring);
    `baseline`: BN-ReLU's value (None: measure only)."""
    start = time.perf_counter()
    try:
        model = plugged_network(arch, layer, data.num_classes, data.in_channels, seed)
        inputs, labels = data.sample_batch(min(batch, len(data.train)), seed=seed)
        value = gradient_norm_ascent(model, inputs, labels, steps, eps, seed)
    except LAYER_FAILURES as exc:
        return Verdict(False, math.nan, time.perf_counter() - start,
                       f"stability: {first_line(exc, 160)}")
    seconds = time.perf_counter() - start
    if not math.isfinite(value):
        return Verdict(False, value, seconds, "stability: the gradient norm is not finite")
    if baseline is not None and value > bound * baseline:
        return Verdict(False, value, seconds,
                       f"stability: gradient norm {value:.3g} is {value / baseline:.3g} times "
                       f"BN-ReLU's (bound {bound:g})")
    return Verdict(True, value, seconds)


def quality_threshold(baseline: float, share: float, classes: int) -> float:
    """The least accuracy (%) that passes: chance + share of BN-ReLU's gain over chance."""
    chance = 100.0 / classes
    return chance + share * (baseline - chance)


def quality(layer: Any, arch: str, data: DataSplits, *, recipe: TrainRecipe, recal_images: int,
            share: float, baseline: float | None, seed: int) -> Verdict:
    """The quality protocol on evaluation network `arch` (see the module docstring);
    `baseline`: BN-ReLU's accuracy after the same training (None: measure only)."""
    start = time.perf_counter()
    try:
        model = plugged_network(arch, layer, data.num_classes, data.in_channels, seed)
        acc = train_plugged(model, data, recipe, seed, recal_images)
    except LAYER_FAILURES as exc:
        return Verdict(False, math.nan, time.perf_counter() - start,
                       f"quality: training failed ({first_line(exc, 160)})")
    seconds = time.perf_counter() - start
    if baseline is not None:
        least = quality_threshold(baseline, share, data.num_classes)
        if not acc >= least:
            return Verdict(False, acc, seconds,
                           f"quality: {acc:.2f} % after the short training, below "
                           f"{least:.2f} % (BN-ReLU {baseline:.2f} %)")
    return Verdict(True, acc, seconds)


__all__ = ["LAYER_FAILURES", "Verdict", "gradient_norm_ascent", "quality",
           "quality_threshold", "stability"]
