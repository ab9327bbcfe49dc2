"""A child network of a transformation search: made on the driver from its parent's trained
weights by function-preserving transformations (cheap), written as a model file, then
fine-tuned where the work runs (in this process or a Ray worker) with `nas train`'s code."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from estimators.checkpoints import arch_of, describe_space, load_model, write_checkpoint
from estimators.data import DataSplits
from estimators.train import TrainRecipe
from search_spaces import Arch, SearchSpace
from search_spaces.transforms import Transform, apply


def transformed(space: SearchSpace, arch: Arch, model: nn.Module,
                transforms: Sequence[Transform], seed: int) -> tuple[Arch, nn.Module]:
    """`transforms` applied in order to `model` (built from `arch`)."""
    for i, transform in enumerate(transforms):
        arch, model = apply(space, arch, model, transform, rng=seed * 7919 + i)
    return arch, model


def add_noise(model: nn.Module, ratio: float, seed: int) -> None:
    """Gaussian noise of `ratio` times each weight tensor's spread on conv and linear weights:
    replicated units (Net2Wider) otherwise get equal gradients and stay copies forever."""
    if ratio <= 0:
        return
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1 and param.numel() > 1:
                noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
                param.add_(noise.to(param.device) * (ratio * float(param.std())))


def save_inherited(path: Path, arch: Arch, model: nn.Module, parent: Mapping[str, Any],
                   record: Mapping[str, Any]) -> None:
    """The child before fine-tuning, as a model file `nas train --from` reads (0 epochs)."""
    write_checkpoint(path, {
        "space": describe_space(arch.search_space), "key": arch.key,
        "num_classes": parent["num_classes"], "in_channels": parent["in_channels"],
        "resolution": parent["resolution"],
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "epochs_done": 0, "epochs": 0, "complete": True, "history": [], "recipe": {},
        "data": parent.get("data") or {}, "seed": parent.get("seed", 0),
        "inherited": dict(record)})


def make_child(parent_path: Path, transforms: Sequence[Transform], out: Path, noise: float,
               seed: int, record: Mapping[str, Any]) -> Arch:
    """Load the parent, transform it, add symmetry-breaking noise and write the child's model
    file `out`; its arch."""
    model, info = load_model(parent_path)
    arch = arch_of(info, parent_path)
    arch, model = transformed(arch.search_space, arch, model, transforms, seed)
    add_noise(model, noise, seed)
    save_inherited(out, arch, model, info, record)
    return arch


def finetune(init: str, out: str, data: DataSplits, recipe: Mapping[str, Any], seed: int,
             threads: int, distill: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train the model file `init` into `out` (a `nas train` checkpoint), distilling from
    `distill` ({teacher, weight, temperature}) if given: its val and test accuracy (%) and
    training seconds. Runs in a worker as well as in the driver."""
    from estimators.standalone import DistillSpec, train_to_checkpoint
    from estimators.threads import torch_threads

    spec = DistillSpec(**distill) if distill else None
    with torch_threads(threads):
        trained = train_to_checkpoint(out, data, init=init, recipe=TrainRecipe(**recipe),
                                      distill=spec, seed=seed, force=True)
    info = trained.info
    return {"acc": float(info["val_acc"]), "test_acc": float(info["test_acc"]),
            "train_seconds": round(trained.seconds, 3)}


__all__ = ["add_noise", "finetune", "make_child", "save_inherited", "transformed"]
