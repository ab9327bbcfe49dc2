"""What every family's transformations share: the action type, errors, checks, and the weight
transfer by block name. The growth kinds (deepen, widen, kernel) preserve the function; the
reduction kinds (remove, narrow: N2N students, see `shrink.py`) do not."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from torch import nn

from search_spaces.arch import Arch, Gene
from search_spaces.errors import NasError
from search_spaces.space import Rng, SearchSpace, as_rng

if TYPE_CHECKING:
    from search_spaces.network import Network

GROWTHS = ("deepen", "widen", "kernel")  # function-preserving
REDUCTIONS = ("remove", "narrow")  # N2N students: smaller, NOT function-preserving
KINDS = GROWTHS + REDUCTIONS


class TransformError(NasError):
    """A transformation that cannot be applied (bad stage/block, nothing larger, bad model)."""


class UnsupportedTransformError(TransformError):
    """A space family (or a layer kind) the transformations do not handle yet."""


@dataclass(frozen=True)
class Transform:
    """One edit: `kind` (a growth: deepen | widen | kernel, or a reduction: remove | narrow) of
    `stage` (from 1), of one `block` of it (from 1) or of the whole stage (`block` None)."""

    kind: str
    stage: int
    block: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TransformError(f"unknown transformation {self.kind!r}; known: {list(KINDS)}")

    def __str__(self) -> str:
        where = f"stage {self.stage}" + ("" if self.block is None else f" block {self.block}")
        return f"{self.kind} {where}"


FamilySpace = TypeVar("FamilySpace", bound=SearchSpace)


def of_family(space: SearchSpace, kind: type[FamilySpace], family: str) -> FamilySpace:
    """`space` as a space of `kind`; UnsupportedTransformError naming the family otherwise."""
    if not isinstance(space, kind):
        raise UnsupportedTransformError(f"space {space.name!r} is not of the {family} family")
    return space


def checked(space: SearchSpace, arch: Arch, model: nn.Module, kind: type[FamilySpace],
            family: str) -> FamilySpace:
    """`of_family`, with `arch` valid in the space and `model` built from it."""
    typed = of_family(space, kind, family)
    typed.check(arch)
    check_model(arch, model)
    return typed


def sparse_stage(space: SearchSpace, arch: Arch, stage: int) -> bool:
    """The stage (or dense block) has a weight density below 1 (a `-sparse` space)."""
    return bool(getattr(space, "sparse", False)) and f"density{stage}" in arch.as_dict() \
        and arch[f"density{stage}"] < 1.0


def check_model(arch: Arch, model: nn.Module) -> None:
    if getattr(model, "arch_key", None) != arch.key:
        raise TransformError(f"the model was built for {getattr(model, 'arch_key', None)!r}, "
                             f"not {arch.key!r}")


def check_stage(space: SearchSpace, arch: Arch, stages: int, stage: int,
                block: int | None = None, depth_gene: str = "d") -> None:
    """`stage` in 1..stages and `block` (if given) in 1..arch[f'{depth_gene}{stage}']."""
    if not isinstance(stage, int) or not 1 <= stage <= stages:
        raise TransformError(f"{space.name}: stage {stage!r} is out of range (1..{stages})")
    if block is None:
        return
    depth = int(arch[f"{depth_gene}{stage}"])
    if not isinstance(block, int) or not 1 <= block <= depth:
        raise TransformError(f"{space.name}: block {block!r} of stage {stage} is out of range "
                             f"(1..{depth}: the stage has {depth} blocks)")


def larger_options(space: SearchSpace, gene: str, value: Gene) -> list[Gene]:
    return sorted(o for o in space.dimension(gene).options if o > value)  # type: ignore[operator]


def next_option(space: SearchSpace, gene: str, value: Gene, what: str) -> Gene:
    larger = larger_options(space, gene, value)
    if not larger:
        raise TransformError(f"{space.name}: {what} {gene}={value!r} is already the largest "
                             f"option {list(space.dimension(gene).options)}")
    return larger[0]


def block_index(space: SearchSpace, arch: Arch) -> dict[str, int]:
    """Block name (`stem`, `stage2.0`, `head.conv`...) -> its index in the built Network."""
    return {spec.name: i for i, spec in enumerate(space.blocks(arch))}


def rebuild(space: SearchSpace, arch: Arch, new_arch: Arch, model: Network,
            skip: set[str], renamed: dict[str, str] | None = None
            ) -> tuple[Network, dict[str, tuple[nn.Module, nn.Module]]]:
    """Build `new_arch` like `model` (classes, input channels, dtype, device, train/eval mode) and
    copy every block's state (parameters and buffers: BN running stats, sparse masks) by block
    name, except the blocks in `skip`. `renamed` maps a new block name to the old block it
    comes from where they differ (blocks shifted down by a removal). Returns the model and
    {new name: (old block, new block)} for every block present in both, skipped ones
    included."""
    space.check(new_arch)
    classifier = [m for m in model[-1].modules() if isinstance(m, nn.Linear)][-1]
    new = space.build(new_arch, num_classes=classifier.out_features,
                      in_channels=int(model.input_shape[0]))
    first = next(model.parameters())
    new = new.to(dtype=first.dtype, device=first.device).train(model.training)
    old_index, new_index = block_index(space, arch), block_index(space, new_arch)
    renamed = renamed or {}
    pairs = {}
    with torch.no_grad():
        for name, i in new_index.items():
            old_name = renamed.get(name, name)
            if old_name not in old_index:
                continue
            pairs[name] = (model[old_index[old_name]], new[i])
            if name not in skip:
                new[i].load_state_dict(model[old_index[old_name]].state_dict())
    return new, pairs


def replicate(tensor: torch.Tensor, mapping: torch.Tensor, dim: int = 0,
              divide: torch.Tensor | None = None) -> torch.Tensor:
    """`tensor` indexed by `mapping` along `dim`; each slice divided by `divide` (its unit's
    number of copies) when given."""
    out = tensor.index_select(dim, mapping)
    if divide is not None:
        shape = [1] * out.dim()
        shape[dim] = -1
        out = out / divide.to(out.dtype).view(shape)
    return out


def unit_mapping(old: int, new: int, rng: Rng, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Net2Wider's random mapping g of `new` units onto `old` ones (g(c) = c for c < old, a
    random old unit otherwise) and, per new unit, its old unit's number of copies."""
    extra = as_rng(rng).integers(old, size=new - old) if new > old else np.zeros(0, int)
    mapping = torch.as_tensor(np.concatenate([np.arange(old), extra]), device=device)
    counts = torch.bincount(mapping, minlength=old)[mapping]
    return mapping, counts


def copy_conv_bn(old: nn.Sequential, new: nn.Sequential, mapping: torch.Tensor) -> None:
    """Replicate the output units of a conv (no bias) + BatchNorm pair."""
    new[0].weight.copy_(replicate(old[0].weight, mapping))
    copy_bn(old[1], new[1], mapping)


def copy_bn(old: nn.Module, new: nn.Module, mapping: torch.Tensor) -> None:
    """Replicate a BatchNorm's per-channel parameters and running statistics."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).copy_(replicate(getattr(old, name), mapping))
    new.num_batches_tracked.copy_(old.num_batches_tracked)
