"""Reductions (N2N students) of the ResNet family (`resnet`, `resnet-sparse` and space files
based on them), for `basic`, `bottleneck` and `plain` blocks; NOT function-preserving:

- `remove_block`: drop block b (2..d) of a stage; the later blocks move down one slot with
  their trained weights;
- `narrow`: lower a stage's width multiplier `w{stage}` to the next smaller option, keeping the
  most important units of every layer it narrows (see `shrink.py` for the importance rule).

Genes: `d{stage}`, `w{stage}`. See docs/transform.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from search_spaces.arch import Arch
from search_spaces.ops.residual import ResidualBlock
from search_spaces.space import Rng, SearchSpace
from search_spaces.spaces.resnet import ResNetSpace
from search_spaces.transforms.base import (
    Transform,
    TransformError,
    UnsupportedTransformError,
    check_stage,
    checked,
    of_family,
    rebuild,
)
from search_spaces.transforms.resnet import set_identity_bn, sparse_width_stage
from search_spaces.transforms.shrink import (
    conv_importance,
    keep_conv_bn,
    keep_layer,
    previous_option,
    removable,
    removed_depth,
    shifted_names,
    smaller_options,
    take,
    top_units,
)

if TYPE_CHECKING:
    from search_spaces.network import Network

SPACE_TYPE = ResNetSpace


def _check_space(space: SearchSpace) -> ResNetSpace:
    return of_family(space, ResNetSpace, "ResNet")


def _check(space: SearchSpace, arch: Arch, model: nn.Module) -> ResNetSpace:
    return checked(space, arch, model, ResNetSpace, "ResNet")




# --- remove a block ---------------------------------------------------------------------------
def removed_arch(space: SearchSpace, arch: Arch, stage: int, block: int) -> Arch:
    rn = _check_space(space)
    check_stage(rn, arch, rn.num_stages, stage, block)
    return rn.make({**arch.as_dict(), f"d{stage}": removed_depth(rn, arch, stage, block)})


def remove_block(space: SearchSpace, arch: Arch, model: Network, stage: int,
                 block: int) -> tuple[Arch, Network]:
    """Drop block `block` (2..d) of `stage`. Blocks after the first of a stage have stride 1
    and as many input as output channels, so every other block keeps its shapes: each later
    block takes its own trained weights (and sparse masks) to its new slot, every other block
    is copied as it is. The output changes by the removed block's contribution."""
    rn = _check(space, arch, model)
    new_arch = removed_arch(rn, arch, stage, block)
    renamed = shifted_names(stage, block, int(new_arch[f"d{stage}"]))
    new, _ = rebuild(rn, arch, new_arch, model, skip=set(), renamed=renamed)
    return new_arch, new


# --- narrow a stage ---------------------------------------------------------------------------
def narrowed_arch(space: SearchSpace, arch: Arch, stage: int) -> Arch:
    rn = _check_space(space)
    check_stage(rn, arch, rn.num_stages, stage)
    s = sparse_width_stage(rn, arch, stage)
    if s is not None:
        raise UnsupportedTransformError(
            f"{rn.name}: narrow does not handle sparse stages (stage {s} has density "
            f"{arch[f'density{s}']}): a sparse unit's mask would lose inputs unevenly")
    gene = f"w{stage}"
    return rn.make({**arch.as_dict(), gene: previous_option(rn, gene, arch[gene], "width")})


def narrow(space: SearchSpace, arch: Arch, model: Network, stage: int) -> tuple[Arch, Network]:
    """Lower `w{stage}` to the next smaller option.

    Residual blocks (basic, bottleneck) add their outputs to their shortcuts, so the stage's
    output channels are ONE set, kept once for all of them: the top ones by importance summed
    over every producer (each block's last conv + BN, and a projection shortcut's conv + BN).
    That set selects the output rows of every block's last conv + BN and of the projection
    shortcut, and the input columns of every consumer: the first conv of the stage's later
    blocks, the next stage's first block (first conv and projection shortcut) or, after the
    last stage, the classifier (no rescaling: this is not Net2Wider). Each inner width
    (bottleneck convs 1-2, basic conv 1) keeps its own top units; a plain block's output too
    (no shortcut ties it to the others). A first block whose identity shortcut must become a
    projection gets a 1x1 conv + BN that passes the kept channels; a learned projection whose
    block's output width becomes its input width is dropped (ResNet uses the identity there).
    """
    rn = _check(space, arch, model)
    new_arch = narrowed_arch(rn, arch, stage)
    names = [f"stage{stage}.{j}" for j in range(int(arch[f"d{stage}"]))]
    consumer = f"stage{stage + 1}.0" if stage < rn.num_stages else "classifier"
    new, pairs = rebuild(rn, arch, new_arch, model, skip={*names, consumer})
    first_old, first_new = pairs[names[0]]
    shared = None
    if isinstance(first_new, ResidualBlock):
        shared = stage_units_kept([pairs[n][0] for n in names],
                                  first_new.body[-1][0].out_channels)
    flowing = torch.arange(first_old.body[0][0].in_channels, device=_device(model))
    with torch.no_grad():
        for name in names:
            flowing = _narrow_block(*pairs[name], flowing, shared)
        old_c, new_c = pairs[consumer]
        if consumer == "classifier":
            keep_layer(_linear(old_c), _linear(new_c), None, flowing)
        else:
            _narrow_block(old_c, new_c, flowing, None)
    return new_arch, new


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def stage_units_kept(blocks: list[nn.Module], count: int) -> torch.Tensor:
    """The output channels a residual stage keeps: the top `count` by importance summed over
    every block's last conv + BN and every projection shortcut."""
    score = sum(conv_importance(*b.body[-1][:2]) for b in blocks)
    for b in blocks:
        if not isinstance(b.shortcut, nn.Identity):
            score = score + conv_importance(*b.shortcut[:2])
    return top_units(score, count)


def _narrow_block(old: nn.Module, new: nn.Module, cols: torch.Tensor,
                  shared: torch.Tensor | None) -> torch.Tensor:
    """Body conv + BN pairs (at even indices) chained through their kept units, reading input
    channels `cols`; the last pair keeps `shared` when given. Returns the block's kept
    output channels. A layer whose width does not change keeps every unit, in order."""
    old_pairs, new_pairs = list(old.body[0::2]), list(new.body[0::2])
    rows_in = cols
    for k, (o, n) in enumerate(zip(old_pairs, new_pairs)):
        last = k == len(old_pairs) - 1
        rows = shared if last and shared is not None else top_units(
            conv_importance(*o[:2]), n[0].out_channels)
        keep_conv_bn(o, n, rows, rows_in)
        rows_in = rows
    if isinstance(new, ResidualBlock):
        _narrow_shortcut(old, new, cols, rows_in)
    return rows_in


def _narrow_shortcut(old: ResidualBlock, new: ResidualBlock, cols: torch.Tensor,
                     rows: torch.Tensor) -> None:
    if isinstance(new.shortcut, nn.Identity):  # the same channels in and out, or a dropped
        if isinstance(old.shortcut, nn.Identity) and not torch.equal(cols, rows):  # projection
            raise TransformError("an identity shortcut between different channel sets")
        return
    if isinstance(old.shortcut, nn.Identity):  # out channel rows[i] was input channel rows[i]
        eye = torch.eye(old.body[0][0].in_channels, dtype=new.shortcut[0].weight.dtype,
                        device=cols.device)
        new.shortcut[0].weight.copy_(take(eye, rows, cols)[:, :, None, None])
        set_identity_bn(new.shortcut[1])
        return
    keep_conv_bn(old.shortcut, new.shortcut, rows, cols)


def _linear(block: nn.Module) -> nn.Linear:
    return [m for m in block.modules() if isinstance(m, nn.Linear)][-1]


# --- the family's reductions -------------------------------------------------------------------
def reductions(space: SearchSpace, arch: Arch) -> list[Transform]:
    """Remove every block 2..d of a stage with a depth option one smaller; narrow every stage
    with a smaller width option (the stage and its consumer dense)."""
    rn = _check_space(space)
    out = []
    for s in range(1, rn.num_stages + 1):
        if removable(rn, arch, s):
            out += [Transform("remove", s, b) for b in range(2, int(arch[f"d{s}"]) + 1)]
        if smaller_options(rn, f"w{s}", arch[f"w{s}"]) and sparse_width_stage(rn, arch, s) is None:
            out.append(Transform("narrow", s))
    return out


def _checked_kind(space: SearchSpace, transform: Transform) -> None:
    if transform.kind == "remove" and transform.block is None:
        raise TransformError(f"{space.name}: remove needs a block "
                             f"(Transform('remove', stage, block))")
    if transform.kind == "narrow" and transform.block is not None:
        raise TransformError(f"{space.name}: narrow acts on a whole stage (its width "
                             f"multiplier); give no block (got block {transform.block})")


def arch_after(space: SearchSpace, arch: Arch, transform: Transform) -> Arch:
    _checked_kind(space, transform)
    if transform.kind == "remove":
        return removed_arch(space, arch, transform.stage, transform.block)
    return narrowed_arch(space, arch, transform.stage)


def apply(space: SearchSpace, arch: Arch, model: Network, transform: Transform,
          rng: Rng = None) -> tuple[Arch, Network]:
    """`rng` is unused: reductions are deterministic."""
    _checked_kind(space, transform)
    if transform.kind == "remove":
        return remove_block(space, arch, model, transform.stage, transform.block)
    return narrow(space, arch, model, transform.stage)
