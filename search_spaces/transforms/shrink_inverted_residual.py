"""Reductions (N2N students) of the inverted-residual family (`mobile`, `mobilenetv2`, their
sparse variants and space files based on them); NOT function-preserving:

- `remove_block`: drop block b (2..d) of a stage; the later blocks move down one slot with
  their genes (k, e) and their trained weights;
- `narrow_expand`: lower a block's expand ratio to the next smaller option, keeping the most
  important hidden units (see `shrink.py` for the importance rule).

Genes: `d{stage}`, `k{stage}_{block}`, `e{stage}_{block}`. See docs/transform.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from search_spaces.arch import Arch
from search_spaces.space import Rng, SearchSpace
from search_spaces.spaces.inverted_residual import InvertedResidualSpace
from search_spaces.transforms.base import (
    Transform,
    TransformError,
    UnsupportedTransformError,
    check_model,
    check_stage,
    of_family,
    rebuild,
    sparse_stage,
)
from search_spaces.transforms.shrink import (
    conv_importance,
    keep_conv_bn,
    keep_layer,
    previous_option,
    removable,
    removed_depth,
    shifted_names,
    smaller_options,
    top_units,
)

if TYPE_CHECKING:
    from search_spaces.network import Network

SPACE_TYPE = InvertedResidualSpace


def _check_space(space: SearchSpace) -> InvertedResidualSpace:
    return of_family(space, InvertedResidualSpace, "inverted-residual")


# --- remove a block ---------------------------------------------------------------------------
def removed_arch(space: SearchSpace, arch: Arch, stage: int, block: int) -> Arch:
    """`arch` without block `block` of `stage`: the later blocks' k/e genes move down one."""
    ir = _check_space(space)
    check_stage(ir, arch, ir.num_stages, stage, block)
    new_depth = removed_depth(ir, arch, stage, block)
    genes = arch.as_dict()
    genes[f"d{stage}"] = new_depth
    for j in range(block, new_depth + 1):
        for gene in ("k", "e"):
            genes[f"{gene}{stage}_{j}"] = arch[f"{gene}{stage}_{j + 1}"]
    return ir.make(genes)


def remove_block(space: SearchSpace, arch: Arch, model: Network, stage: int,
                 block: int) -> tuple[Arch, Network]:
    """Drop block `block` (2..d) of `stage`. Blocks after the first of a stage have stride 1
    and as many input as output channels, so every other block keeps its shapes: each later
    block takes its own trained weights (and sparse masks) to its new slot, every other block
    is copied as it is. The output changes by the removed block's residual branch."""
    ir = _check_space(space)
    ir.check(arch)
    check_model(arch, model)
    new_arch = removed_arch(ir, arch, stage, block)
    renamed = shifted_names(stage, block, int(new_arch[f"d{stage}"]))
    new, _ = rebuild(ir, arch, new_arch, model, skip=set(), renamed=renamed)
    return new_arch, new


# --- narrow the expand ratio ------------------------------------------------------------------
def narrowed_arch(space: SearchSpace, arch: Arch, stage: int, block: int) -> Arch:
    ir = _check_space(space)
    check_stage(ir, arch, ir.num_stages, stage, block)
    if sparse_stage(ir, arch, stage):
        raise UnsupportedTransformError(
            f"{ir.name}: narrow does not handle sparse stages (stage {stage} has density "
            f"{arch[f'density{stage}']}): a sparse unit's mask would lose inputs unevenly")
    gene = f"e{stage}_{block}"
    return ir.make({**arch.as_dict(), gene: previous_option(ir, gene, arch[gene], "expand")})


def narrow_expand(space: SearchSpace, arch: Arch, model: Network, stage: int,
                  block: int) -> tuple[Arch, Network]:
    """Lower block `block` of `stage` to the next smaller expand-ratio option.

    The hidden units kept are the top mid' by importance of the expansion 1x1 conv + BN that
    produces them (||W_expand[c]||_1 * |gamma_expand[c]|). The same index set K is used
    wherever a hidden channel appears: the expansion conv's output rows and BN, the depthwise
    conv and its BN, the squeeze-excite reduce conv's input columns and expand conv's output
    rows, and the projection conv's input columns (no rescaling). If the SE hidden width
    shrinks as well, its kept units are the top ones by the L1 norm of their reduce-conv rows.
    Every other block, and the projection's BN, is copied unchanged."""
    ir = _check_space(space)
    ir.check(arch)
    check_model(arch, model)
    new_arch = narrowed_arch(ir, arch, stage, block)
    name = f"stage{stage}.{block - 1}"
    new, pairs = rebuild(ir, arch, new_arch, model, skip={name})
    old_b, new_b = pairs[name]
    if old_b.expand is None or old_b.shuffle is not None:  # cannot happen in this family
        raise UnsupportedTransformError(f"{ir.name}: {name} has no plain expansion conv")
    kept = hidden_units_kept(old_b, new_b.depthwise[0].out_channels)
    with torch.no_grad():
        keep_conv_bn(old_b.expand, new_b.expand, kept, None)
        keep_conv_bn(old_b.depthwise, new_b.depthwise, kept, None)
        if old_b.se is not None:
            _narrow_se(old_b.se, new_b.se, kept)
        keep_conv_bn(old_b.project, new_b.project, None, kept)
    return new_arch, new


def hidden_units_kept(block: nn.Module, count: int) -> torch.Tensor:
    """The hidden units `narrow_expand` keeps when a block's hidden width becomes `count`."""
    return top_units(conv_importance(*block.expand[:2]), count)


def _narrow_se(old: nn.Module, new: nn.Module, kept: torch.Tensor) -> None:
    se_kept = top_units(conv_importance(old.reduce), new.reduce.out_channels)
    keep_layer(old.reduce, new.reduce, se_kept, kept)
    keep_layer(old.expand, new.expand, kept, se_kept)


# --- the family's reductions -------------------------------------------------------------------
def reductions(space: SearchSpace, arch: Arch) -> list[Transform]:
    """Remove every block 2..d of a stage with a depth option one smaller; narrow every block
    of a dense stage with a smaller expand option."""
    ir = _check_space(space)
    out = []
    for s in range(1, ir.num_stages + 1):
        depth = int(arch[f"d{s}"])
        if removable(ir, arch, s):
            out += [Transform("remove", s, b) for b in range(2, depth + 1)]
        if not sparse_stage(ir, arch, s):
            out += [Transform("narrow", s, b) for b in range(1, depth + 1)
                    if smaller_options(ir, f"e{s}_{b}", arch[f"e{s}_{b}"])]
    return out


def _block(space: SearchSpace, transform: Transform) -> int:
    if transform.block is None:
        raise TransformError(f"{space.name}: {transform.kind} needs a block "
                             f"(Transform({transform.kind!r}, stage, block))")
    return transform.block


def arch_after(space: SearchSpace, arch: Arch, transform: Transform) -> Arch:
    block = _block(space, transform)
    if transform.kind == "remove":
        return removed_arch(space, arch, transform.stage, block)
    return narrowed_arch(space, arch, transform.stage, block)


def apply(space: SearchSpace, arch: Arch, model: Network, transform: Transform,
          rng: Rng = None) -> tuple[Arch, Network]:
    """`rng` is unused: reductions are deterministic."""
    block = _block(space, transform)
    if transform.kind == "remove":
        return remove_block(space, arch, model, transform.stage, block)
    return narrow_expand(space, arch, model, transform.stage, block)
