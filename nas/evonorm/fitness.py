"""A candidate layer's evaluation: the rejection protocols, then its fitness, the validation
accuracy of each evaluation network with the layer plugged in after a short training.

`evaluate_layer` is what a worker runs for one candidate (in this process or as a Ray task):
a pure function of the layer's key and the settings. Every candidate is trained from the same
seed (the same initial conv weights, the same data order): common random numbers, so two
layers differ by what the layer does, and a layer drawn again is not evaluated again.

Training is `estimators.train`'s (SGD with Nesterov momentum, linear warm-up then cosine decay,
weight decay on conv and linear weights only; the layer's vectors are not decayed). Before a
network is scored, the running estimates of its layers' batch statistics are re-estimated on
`recal_images` training images, as `nas train` re-estimates BatchNorm's.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from estimators.data import DataSplits
from estimators.train import TrainRecipe
from nas.evonorm import protocols
from nas.evonorm.plug import arch_label, plugged_network, train_plugged
from nas.evonorm.settings import LayerSearchSettings
from search_spaces import first_line


def fitness_recipe(s: LayerSearchSettings) -> TrainRecipe:
    """How each evaluation network is trained for the fitness."""
    return TrainRecipe(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, warmup=s.warmup,
                       train_images=s.train_images, eval_images=s.eval_images, bn_images=0)


def quality_recipe(s: LayerSearchSettings) -> TrainRecipe:
    """The quality protocol's short training: the fitness recipe's rules for
    `quality_steps` steps of `quality_batch` images."""
    return TrainRecipe(epochs=1.0, batch_size=s.quality_batch, lr=s.lr, warmup=s.warmup,
                       train_images=s.quality_steps * s.quality_batch,
                       eval_images=s.quality_images, bn_images=0)


def acc_columns(s: LayerSearchSettings) -> list[str]:
    """The accuracy column (objective) of each evaluation architecture, in order."""
    labels: list[str] = []
    for key in s.archs:
        labels.append(arch_label(key, labels))
    return labels


def network_accuracy(layer: Any, arch: str, data: DataSplits, s: LayerSearchSettings,
                     seed: int, split: str = "val") -> float:
    """The fitness of `layer` on one evaluation network (`seed`: weights and data order)."""
    model = plugged_network(arch, layer, data.num_classes, data.in_channels, seed)
    return train_plugged(model, data, fitness_recipe(s), seed, s.recal_images, split)


def _worker_settings(settings: Mapping[str, Any]) -> LayerSearchSettings:
    """The settings a worker gets as JSON, with its threads and evaluation spaces set up."""
    import torch

    from nas.evonorm.plug import register_eval_spaces

    s = LayerSearchSettings.from_json(dict(settings))
    torch.set_num_threads(s.threads)
    register_eval_spaces(s.space_files)
    return s


def retrain_layer(key: str, settings: Mapping[str, Any], data: DataSplits,
                  seed: int) -> dict[str, float]:
    """A finalist's accuracy on every evaluation network, trained from `seed` by the fitness
    recipe (NaN on a network whose training fails)."""
    s = _worker_settings(settings)
    out: dict[str, float] = {}
    for column, arch in zip(acc_columns(s), s.archs):
        try:
            out[column] = network_accuracy(key, arch, data, s, seed)
        except protocols.LAYER_FAILURES:
            out[column] = math.nan
    return out


def evaluate_layer(key: str, settings: Mapping[str, Any], baselines: Mapping[str, float] | None,
                   data: DataSplits, measure: bool = False) -> dict[str, Any]:
    """One candidate: the enabled protocols in order (stopping at the first that rejects it,
    unless `measure`: then every stage runs), then the fitness on every evaluation network.
    `baselines`: BN-ReLU's `stability` and `quality` values (None: measure only, as for
    BN-ReLU itself). Returns the measurements (`stability`, `stability_ratio`, `quality_acc`,
    the accuracy columns, each stage's seconds), `rejected_by` (`stability`, `quality`, or
    `fitness` for a layer whose training fails; None when it passed), `reason` (why) and
    `fitness_error` (why the fitness training failed, if it ran and did)."""
    s = _worker_settings(settings)
    base = dict(baselines or {})
    out: dict[str, Any] = {"stability": math.nan, "stability_ratio": math.nan,
                           "quality_acc": math.nan}
    first = s.archs[0]
    reasons: list[str] = []  # why a protocol rejects it, in the order they ran
    if "stability" in s.protocols:
        verdict = protocols.stability(
            key, first, data, steps=s.stability_steps, eps=s.stability_eps,
            batch=s.stability_batch, bound=s.stability_bound,
            baseline=base.get("stability"), seed=s.seed)
        out.update(stability=verdict.value, stability_seconds=round(verdict.seconds, 3))
        if base.get("stability") and math.isfinite(verdict.value):
            out["stability_ratio"] = verdict.value / base["stability"]
        reasons += [] if verdict.passed else [verdict.reason]
    if "quality" in s.protocols and (measure or not reasons):
        verdict = protocols.quality(
            key, first, data, recipe=quality_recipe(s), recal_images=s.recal_images,
            share=s.quality_share, baseline=base.get("quality"), seed=s.seed)
        out.update(quality_acc=verdict.value, quality_seconds=round(verdict.seconds, 3))
        reasons += [] if verdict.passed else [verdict.reason]
    columns = acc_columns(s)
    out.update({c: math.nan for c in columns})
    failure = None
    if measure or not reasons:
        start = time.perf_counter()
        try:
            for column, arch in zip(columns, s.archs):
                out[column] = network_accuracy(key, arch, data, s, s.seed)
        except protocols.LAYER_FAILURES as exc:
            out.update({c: math.nan for c in columns})
            failure = f"fitness: training failed ({first_line(exc, 160)})"
        out["fitness_seconds"] = round(time.perf_counter() - start, 3)
    reasons += [failure] if failure else []
    out["fitness_error"] = failure
    out["rejected_by"] = reasons[0].partition(":")[0] if reasons else None
    out["reason"] = reasons[0] if reasons else None
    return out


__all__ = ["acc_columns", "evaluate_layer", "fitness_recipe", "network_accuracy",
           "quality_recipe", "retrain_layer"]
