"""The supernet trainer: the sampling rules, one step and one epoch, and the checkpoint
payload (the recipe lives in `recipe`). `training` (one process, the cache) and `parallel`
(Ray Train workers) both drive a `SandwichTrainer`.

Each step trains several subnets on one batch and adds their gradients in the shared weights
before one optimiser step. The recipe's `sampling` picks them: `sandwich` (the largest with the
labels, the smallest and `random_subnets` random ones learning from its predictions: BigNAS's
in-place distillation; ViT-ResNAS's several random subnets per step), `fair` (FairNAS: every
option of every gene once per step), `uniform` (single-path one-shot), or `auto` (sandwich on
elastic supernets, fair on one-shot ones). `subnets_per_pass` > 1 is ViT-ResNAS's
multi-architectural sampling: the step's subnets share one backward per group, each on its
own slice of the batch (labels only: no in-place distillation). Every random choice (data
order, subnets) comes from the recipe's seed, the epoch and the step, so a resumed run and a
data-parallel run (`workers` > 1, Ray Train) see the same subnets as a plain run.

Training runs at the data set's resolution (Fashion-MNIST: 28x28, one channel): an arch's
own resolution `r` drives its FLOPs and latency, not what the supernet is trained on.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from estimators.data import DataSplits
from estimators.flops import analytical_cost
from estimators.progress import StepProgress
from estimators.supernet.cache import FORMAT, load_weights
from estimators.supernet.recipe import SupernetRecipe
from estimators.train import resize_batch
from search_spaces import Arch, NasError, SearchSpace, first_line, get_space
from search_spaces.supernets import Supernet, build_supernet


@dataclass
class TrainedSupernet:
    """A supernet with where it is cached and how it was trained."""

    supernet: Supernet
    recipe: SupernetRecipe
    path: Path
    key: str
    epochs_done: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0  # training time of this call (0 when reused from the cache)
    reused: bool = False  # loaded complete from the cache
    resumed_from: int = 0  # epochs already done when this call started

    @property
    def complete(self) -> bool:
        return self.epochs_done >= self.recipe.epochs

    def summary(self) -> dict[str, Any]:
        return {**self.supernet.summary(), "path": str(self.path), "key": self.key,
                "epochs_done": self.epochs_done, "epochs": self.recipe.epochs,
                "reused": self.reused, "resumed_from": self.resumed_from,
                "seconds": round(self.seconds, 2), "history": self.history}


# --- one step, one epoch ----------------------------------------------------------------------
def step_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, step])


def sampling_rule(supernet: Supernet, recipe: SupernetRecipe) -> str:
    if recipe.sampling != "auto":
        return recipe.sampling
    return "sandwich" if supernet.style == "elastic" else "fair"


def step_archs(supernet: Supernet, recipe: SupernetRecipe, epoch: int,
               step: int) -> tuple[list[Arch], bool]:
    """The subnets one step trains (seeded) and whether the first teaches the others."""
    rng = step_rng(recipe.seed, epoch, step)
    rule = sampling_rule(supernet, recipe)
    if rule == "sandwich":
        archs = [supernet.max_arch(), supernet.min_arch()]
        return archs + [supernet.sample_arch(rng) for _ in range(recipe.random_subnets)], True
    if rule == "uniform":
        return [supernet.sample_arch(rng) for _ in range(2 + recipe.random_subnets)], False
    return fair_archs(supernet.space, rng), False


def fair_archs(space: SearchSpace, rng: np.random.Generator) -> list[Arch]:
    """FairNAS strict fairness (Chu et al. 2021): as many subnets as the widest gene has
    options, each gene taking each of its options once across them (in a random order;
    genes with fewer options repeat a random few)."""
    width = max(len(d.options) for d in space.dimensions)
    columns = {}
    for dim in space.dimensions:
        order = list(rng.permutation(len(dim.options)))
        order += list(rng.integers(0, len(dim.options), width - len(order)))
        columns[dim.name] = [dim.options[i] for i in order]
    return [space.make({name: options[i] for name, options in columns.items()})
            for i in range(width)]


def batch_slices(size: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous (start, stop) slices of a batch of `size`, as equal as possible (the
    first `size % parts` one image longer)."""
    base, extra = divmod(size, parts)
    bounds, start = [], 0
    for index in range(parts):
        stop = start + base + (1 if index < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def lr_at(step: int, total: int, recipe: SupernetRecipe) -> float:
    """Linear warm-up, then cosine decay to zero."""
    warm = int(total * recipe.warmup)
    if step < warm:
        return recipe.lr * (step + 1) / warm
    return 0.5 * recipe.lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def hold_norm_affine(supernet: Supernet) -> int:
    """BatchNorm without affine parameters (recipe `norm_affine=False`): the scale and shift of
    every BatchNorm (the parameters kept beside a `running_mean` buffer) set to 1 and 0 and
    taken out of training. Returns how many tensors were held."""
    norms = {name[:-len("running_mean")] for name, _ in supernet.named_buffers()
             if name.endswith("running_mean")}
    held = 0
    with torch.no_grad():
        for name, param in supernet.named_parameters():
            for leaf, value in (("weight", 1.0), ("bias", 0.0)):
                if name.endswith(leaf) and name[:-len(leaf)] in norms:
                    param.fill_(value)
                    param.requires_grad_(False)
                    held += 1
    return held


def make_optimizer(supernet: Supernet, recipe: SupernetRecipe) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum; weight decay on conv/linear weights only (not on norms,
    biases or the kernel transform matrices, which start as the identity)."""
    decay, plain = [], []
    for name, param in supernet.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.dim() > 1 and "#T" not in name else plain).append(param)
    return torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay},
                            {"params": plain, "weight_decay": 0.0}], lr=recipe.lr,
                           momentum=recipe.momentum, nesterov=recipe.momentum > 0)


def input_size(supernet: Supernet, data: DataSplits, recipe: SupernetRecipe,
               arch: Arch) -> int:
    if recipe.resolution is None:
        return data.resolution
    if recipe.resolution == "arch":
        return supernet.space.input_size(arch)
    return int(recipe.resolution)


class SandwichTrainer:
    """Trains `supernet` on `data`'s train split; with `world` > 1 this process is the
    `rank`-th of a data-parallel group (torch.distributed initialised by the caller): it
    takes its share of every batch and gradients are averaged across the group."""

    def __init__(self, supernet: Supernet, data: DataSplits, recipe: SupernetRecipe,
                 rank: int = 0, world: int = 1):
        self.supernet, self.data, self.recipe = supernet, data, recipe
        self.rank, self.world = rank, world
        if not recipe.norm_affine:
            hold_norm_affine(supernet)
        self.optimizer = make_optimizer(supernet, recipe)
        self.steps_per_epoch = recipe.steps_per_epoch(len(data.train))
        self.total_steps = self.steps_per_epoch * recipe.epochs

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """This process's share of each batch of `epoch` (a seeded draw of the split)."""
        order = np.random.default_rng([self.recipe.seed, epoch, 1 << 20]).permutation(
            len(self.data.train))
        size = self.recipe.batch_size
        return [order[i * size:(i + 1) * size][self.rank::self.world]
                for i in range(self.steps_per_epoch)]

    def run_epoch(self, epoch: int, progress: StepProgress | None = None) -> dict[str, float]:
        self.supernet.train()
        start, losses = time.perf_counter(), []
        for step, idx in enumerate(self.batch_indices(epoch)):
            index = torch.from_numpy(idx)
            inputs = self.data.normalize(self.data.train.images[index])
            labels = self.data.train.labels[index]
            global_step = epoch * self.steps_per_epoch + step
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(global_step, self.total_steps, self.recipe)
            archs, distill = step_archs(self.supernet, self.recipe, epoch, step)
            # dropout draws from torch's generator: seeded per step, so a resumed run and a
            # straight one draw the same masks
            torch.manual_seed(int(np.random.default_rng(
                [self.recipe.seed, epoch, step, 2]).integers(2 ** 62)))
            losses.append(self.train_step(inputs, labels, archs, distill))
            if progress is not None:
                progress(global_step + 1, self.total_steps, losses[-1])
        return {"epoch": epoch + 1, "loss": float(np.mean(losses)),
                "seconds": time.perf_counter() - start}

    def train_step(self, inputs: torch.Tensor, labels: torch.Tensor, archs: list[Arch],
                   distill: bool = True) -> float:
        """One step over `archs`; returns the first subnet's loss. The subnets go in groups
        of the recipe's `subnets_per_pass` (K): each group is one backward, its subnets on
        contiguous slices of the batch (`batch_slices`), its loss their slice-size-weighted
        mean. With K = 1 each subnet sees the whole batch and, with `distill`, the first one's
        predictions teach the others (in-place distillation); with K > 1 the first subnet has
        predictions for its own slice only, so every subnet learns from the labels."""
        recipe = self.recipe
        per_pass = recipe.subnets_per_pass
        distill = distill and per_pass == 1
        self.optimizer.zero_grad(set_to_none=True)
        teacher: torch.Tensor | None = None
        first_loss: float | None = None
        ranked: list[torch.Tensor] = []  # with rank_loss: every subnet's loss, one backward
        for start in range(0, len(archs), per_pass):
            group = archs[start:start + per_pass]
            slices = batch_slices(labels.shape[0], len(group))
            total: torch.Tensor | None = None
            for arch, (low, high) in zip(group, slices):
                # the whole batch when the group is one subnet: the sequential step unchanged
                x, y = (inputs, labels) if len(group) == 1 else \
                    (inputs[low:high], labels[low:high])
                size = input_size(self.supernet, self.data, recipe, arch)
                logits = self.supernet(resize_batch(x, size), arch)
                hard = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
                if teacher is None or not distill:
                    loss = hard
                    if teacher is None and distill:
                        teacher = F.softmax(logits.detach() / recipe.temperature, dim=1)
                else:
                    log_probs = F.log_softmax(logits / recipe.temperature, dim=1)
                    soft = -(teacher * log_probs).sum(dim=1).mean() * recipe.temperature ** 2
                    loss = recipe.distill * soft + (1 - recipe.distill) * hard
                if first_loss is None:
                    first_loss = float(loss.detach())
                if len(group) > 1:
                    loss = loss * ((high - low) / labels.shape[0])
                total = loss if total is None else total + loss
            assert total is not None
            if recipe.rank_loss > 0:
                ranked.append(total)
                continue
            self._backward(total)
        if ranked:
            self._backward(sum(ranked) + recipe.rank_loss * self._rank_hinge(archs, ranked))
        if self.world > 1:
            self._average_gradients()
        self.optimizer.step()
        return 0.0 if first_loss is None else first_loss

    def _backward(self, total: torch.Tensor) -> None:
        if not torch.isfinite(total):
            raise NasError(f"supernet training diverged (loss {float(total)}); lower the "
                           f"learning rate (now {self.recipe.lr})")
        total.backward()

    def _rank_hinge(self, archs: list[Arch], losses: list[torch.Tensor]) -> torch.Tensor:
        """RD-NAS's pairwise ranking loss with FLOPs as the prior: over every pair of the
        step's subnets whose FLOPs differ, how far the larger one's loss exceeds the smaller
        one's (held fixed), averaged over the pairs. It trains the larger subnets harder
        where the shared weights favour the smaller ones (on NB201: pooling over 3x3 convs)."""
        flops = [analytical_cost(arch, self.supernet.num_classes,
                                 self.supernet.in_channels).macs for arch in archs]
        terms = [F.relu(losses[i] - losses[j].detach())
                 for i in range(len(archs)) for j in range(len(archs)) if flops[i] > flops[j]]
        return torch.stack(terms).mean() if terms else losses[0].new_zeros(())

    def _average_gradients(self) -> None:
        """All-reduce the gradients that exist (every process ran the same subnets, so the
        same parameters have one) as one flat tensor."""
        import torch.distributed as dist

        params = [p for p in self.supernet.parameters() if p.grad is not None]
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            count = p.grad.numel()
            p.grad.copy_(flat[offset:offset + count].view_as(p.grad))
            offset += count

    def state(self, epochs_done: int, key: str, history: list[dict[str, float]],
              meta: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint payload after `epochs_done` epochs."""
        return {"format": FORMAT, "key": key, "epochs_done": epochs_done,
                "complete": epochs_done >= self.recipe.epochs, "history": history,
                "recipe": self.recipe.as_dict(), "supernet": self.supernet.state_dict(),
                "optimizer": self.optimizer.state_dict(), **meta}


# --- building, checking, restoring -----------------------------------------------------------
def check_runs(supernet: Supernet, data: DataSplits, recipe: SupernetRecipe) -> None:
    """Raise a NasError, naming the fix, when the smallest or largest subnet cannot run at the
    training resolution (a DenseNet's pooling on 28x28, a ViT's fixed patch grid)."""
    was_training = supernet.training
    supernet.eval()
    try:
        for arch in (supernet.min_arch(), supernet.max_arch()):
            size = input_size(supernet, data, recipe, arch)
            with torch.no_grad():
                supernet(torch.zeros(1, data.in_channels, size, size), arch)
    except (RuntimeError, ValueError) as exc:
        raise NasError(f"space {supernet.space.name} cannot run at {size}x{size} "
                       f"({first_line(exc, 100)}); train at another resolution "
                       f"(--resolution PIXELS, e.g. 32 or 64, or 'arch' for ViT)") from None
    finally:
        supernet.train(was_training)


def supernet_for(space: SearchSpace | str, data: DataSplits,
                 recipe: SupernetRecipe) -> Supernet:
    """A fresh (untrained) supernet of `space` for `data`'s classes and channels."""
    resolved = get_space(space) if isinstance(space, str) else space
    return build_supernet(resolved, data.num_classes, data.in_channels,
                          kernel_transform=recipe.kernel_transform, seed=recipe.seed)



def restore(trainer: SandwichTrainer, payload: dict[str, Any] | None,
            path: Path | None = None) -> tuple[int, list]:
    """Load a checkpoint into the trainer; (epochs done, history). Tensors that do not fit
    (a checkpoint of another space or shape) are a one-line CheckpointError."""
    if payload is None:
        return 0, []
    where = path if path is not None else Path("checkpoint")
    load_weights(trainer.supernet, payload["supernet"], where)
    load_weights(trainer.optimizer, payload.get("optimizer"), where, "optimizer state")
    return int(payload["epochs_done"]), list(payload["history"])


def checkpoint_meta(trainer: SandwichTrainer) -> dict[str, Any]:
    supernet = trainer.supernet
    return {"space": supernet.space.name, "num_classes": supernet.num_classes,
            "in_channels": supernet.in_channels, "data": trainer.data.name}


__all__ = ["SandwichTrainer", "TrainedSupernet", "batch_slices", "check_runs",
           "checkpoint_meta", "input_size", "restore", "sampling_rule",
           "step_archs", "supernet_for"]
