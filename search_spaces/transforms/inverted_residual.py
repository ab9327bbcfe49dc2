"""Function-preserving transformations of the inverted-residual family (`mobile`,
`mobilenetv2`, their sparse variants and space files based on them):

- `deepen`: append zero-initialised residual MBConv blocks to a stage (Net2Deeper);
- `widen_expand`: raise a block's expand ratio, replicating hidden units (Net2Wider);
- `enlarge_kernel`: raise a block's depthwise kernel, zero-padding it around the centre.

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
    block_index,
    check_stage,
    checked,
    copy_conv_bn,
    larger_options,
    next_option,
    of_family,
    rebuild,
    replicate,
    sparse_stage,
    unit_mapping,
)

if TYPE_CHECKING:
    from search_spaces.network import Network


def _check_space(space: SearchSpace) -> InvertedResidualSpace:
    return of_family(space, InvertedResidualSpace, "inverted-residual")


def _check(space: SearchSpace, arch: Arch, model: nn.Module) -> InvertedResidualSpace:
    return checked(space, arch, model, InvertedResidualSpace, "inverted-residual")


def _check_stage(space: InvertedResidualSpace, arch: Arch, stage: int,
                 block: int | None = None) -> None:
    check_stage(space, arch, space.num_stages, stage, block)


# --- deepen -----------------------------------------------------------------------------------
def deepened_arch(space: SearchSpace, arch: Arch, stage: int, kernel: int | None = None,
                  expand: float | None = None) -> Arch:
    """`arch` with `stage` at its next depth option, the new blocks at `kernel`/`expand`
    (default the smallest options)."""
    ir = _check_space(space)
    _check_stage(ir, arch, stage)
    depth = int(arch[f"d{stage}"])
    new_depth = int(next_option(ir, f"d{stage}", depth, "stage depth"))
    kernel = ir.config.kernels[0] if kernel is None else kernel
    expand = ir.config.expands[0] if expand is None else expand
    genes = arch.as_dict()
    genes[f"d{stage}"] = new_depth
    for j in range(depth + 1, new_depth + 1):
        genes[f"k{stage}_{j}"], genes[f"e{stage}_{j}"] = kernel, expand
    return ir.make(genes)


def deepen(space: SearchSpace, arch: Arch, model: Network, stage: int,
           kernel: int | None = None, expand: float | None = None) -> tuple[Arch, Network]:
    """Grow `stage` to its next depth option by appending blocks that compute zero.

    Every block after the first of a stage has stride 1 and as many input as output channels,
    so it is residual: `x + project(...)`. The new blocks' last BatchNorm (after the projection
    conv) gets weight (gamma) and bias (beta) 0, so in eval mode the branch outputs exactly 0
    and the block is the identity; its other weights keep their fresh initialisation (the
    gradient still reaches gamma/beta, so the block trains). New blocks use the smallest kernel
    and expand options unless `kernel`/`expand` are given. When the next depth option is more
    than one block deeper (options [2, 4]), that many blocks are appended."""
    ir = _check(space, arch, model)
    new_arch = deepened_arch(ir, arch, stage, kernel, expand)  # checks the stage first
    depth, new_depth = int(arch[f"d{stage}"]), int(new_arch[f"d{stage}"])
    new, _ = rebuild(ir, arch, new_arch, model, skip=set())
    index = block_index(ir, new_arch)
    with torch.no_grad():
        for j in range(depth, new_depth):
            block = new[index[f"stage{stage}.{j}"]]
            if not getattr(block, "residual", False):  # cannot happen in this family
                raise TransformError(f"{ir.name}: block {j + 1} of stage {stage} has no "
                                     f"residual connection; it cannot start as the identity")
            last_bn = block.project[1]
            last_bn.weight.zero_()
            last_bn.bias.zero_()
    return new_arch, new


# --- widen the expand ratio -------------------------------------------------------------------
def widened_expand_arch(space: SearchSpace, arch: Arch, stage: int, block: int) -> Arch:
    """`arch` with block `block` of `stage` at its next expand-ratio option (dense stages)."""
    ir = _check_space(space)
    _check_stage(ir, arch, stage, block)
    if sparse_stage(ir, arch, stage):
        raise UnsupportedTransformError(
            f"{ir.name}: widen_expand does not handle sparse stages (stage {stage} has density "
            f"{arch[f'density{stage}']}); only dense ones")
    gene = f"e{stage}_{block}"
    return ir.make({**arch.as_dict(), gene: next_option(ir, gene, arch[gene], "expand")})


def widen_expand(space: SearchSpace, arch: Arch, model: Network, stage: int, block: int,
                 rng: Rng = None) -> tuple[Arch, Network]:
    """Raise block `block` of `stage` to the next expand-ratio option (Net2Wider on its hidden
    channels).

    With `mid` hidden channels growing to `mid'`, hidden unit c of the new block copies unit
    g(c) of the old one: g(c) = c for c < mid, a random old unit (from `rng`) otherwise. The
    expansion 1x1 conv and its BN, and the depthwise conv and its BN, replicate per unit (so the
    new unit's activation equals the copied unit's). The consumers divide: the projection
    1x1 conv's input weights for every copy of unit u are divided by count(u), the number of
    copies of u, so sum_c W'[:, c] h'[c] = sum_u W[:, u] h[u]. Squeeze-excite: the reduce conv
    pools the hidden channels, so its input weights divide the same way; the expand conv's
    outputs (one gate per hidden channel) replicate like units. If the SE hidden width
    (make_divisible(mid / se_reduction, 8)) grows too, the new SE hidden units keep their fresh
    input weights and get zero outgoing weights (in the SE expand conv), so they add nothing:
    the function is still preserved exactly. Sparse blocks (density < 1) are refused: their
    masks keep a fixed fraction of each unit's inputs, which replication cannot preserve."""
    ir = _check(space, arch, model)
    new_arch = widened_expand_arch(ir, arch, stage, block)
    name = f"stage{stage}.{block - 1}"
    new, pairs = rebuild(ir, arch, new_arch, model, skip={name})
    old_b, new_b = pairs[name]
    mid, new_mid = old_b.depthwise[0].out_channels, new_b.depthwise[0].out_channels
    mapping, counts = unit_mapping(mid, new_mid, rng, old_b.depthwise[0].weight.device)
    with torch.no_grad():
        copy_conv_bn(old_b.expand, new_b.expand, mapping)
        copy_conv_bn(old_b.depthwise, new_b.depthwise, mapping)
        new_b.project[0].weight.copy_(replicate(old_b.project[0].weight, mapping, 1, counts))
        new_b.project[1].load_state_dict(old_b.project[1].state_dict())
        if old_b.se is not None:
            _widen_se(old_b.se, new_b.se, mapping, counts)
    return new_arch, new


def _widen_se(old: nn.Module, new: nn.Module, mapping: torch.Tensor,
              counts: torch.Tensor) -> None:
    hidden = old.reduce.out_channels
    if new.reduce.out_channels < hidden:  # cannot happen: SE width grows with mid
        raise TransformError("the squeeze-excite width shrank; cannot preserve the function")
    reduce_w = replicate(old.reduce.weight, mapping, 1, counts)
    new.reduce.weight[:hidden].copy_(reduce_w)
    new.reduce.bias[:hidden].copy_(old.reduce.bias)
    new.expand.weight.zero_()
    new.expand.weight[:, :hidden].copy_(replicate(old.expand.weight, mapping))
    new.expand.bias.copy_(replicate(old.expand.bias, mapping))


# --- enlarge the depthwise kernel -------------------------------------------------------------
def enlarged_kernel_arch(space: SearchSpace, arch: Arch, stage: int, block: int) -> Arch:
    """`arch` with block `block` of `stage` at its next depthwise kernel option."""
    ir = _check_space(space)
    _check_stage(ir, arch, stage, block)
    gene = f"k{stage}_{block}"
    return ir.make({**arch.as_dict(), gene: next_option(ir, gene, arch[gene], "kernel")})


def enlarge_kernel(space: SearchSpace, arch: Arch, model: Network, stage: int,
                   block: int) -> tuple[Arch, Network]:
    """Raise block `block` of `stage` to the next depthwise kernel option: the old k x k
    kernel sits in the centre of the new k' x k' one, the border is zero. With padding k // 2
    the output keeps its size and output pixel (i, j) still sees the same input pixels with the
    same weights (the extra taps multiply by zero, or fall on the zero padding), so the
    function is unchanged exactly."""
    ir = _check(space, arch, model)
    new_arch = enlarged_kernel_arch(ir, arch, stage, block)
    name = f"stage{stage}.{block - 1}"
    new, pairs = rebuild(ir, arch, new_arch, model, skip={name})
    old_b, new_b = pairs[name]
    with torch.no_grad():
        conv = old_b.depthwise[0]
        kept = {k: v for k, v in old_b.state_dict().items() if k != "depthwise.0.weight"}
        new_b.load_state_dict(kept, strict=False)
        k, new_k = conv.kernel_size[0], new_b.depthwise[0].kernel_size[0]
        pad = (new_k - k) // 2
        weight = new_b.depthwise[0].weight
        weight.zero_()
        weight[:, :, pad:pad + k, pad:pad + k].copy_(conv.weight)
    return new_arch, new


# --- the family's actions ----------------------------------------------------------------------
SPACE_TYPE = InvertedResidualSpace


def available(space: SearchSpace, arch: Arch) -> list[Transform]:
    """Every transformation that applies to `arch` (each has a larger option to move to)."""
    ir = _check_space(space)
    out = []
    for s in range(1, ir.num_stages + 1):
        if larger_options(ir, f"d{s}", arch[f"d{s}"]):
            out.append(Transform("deepen", s))
        sparse = sparse_stage(ir, arch, s)
        for b in range(1, int(arch[f"d{s}"]) + 1):
            if not sparse and larger_options(ir, f"e{s}_{b}", arch[f"e{s}_{b}"]):
                out.append(Transform("widen", s, b))
            if larger_options(ir, f"k{s}_{b}", arch[f"k{s}_{b}"]):
                out.append(Transform("kernel", s, b))
    return out


def _checked_kind(space: SearchSpace, transform: Transform) -> None:
    if transform.kind != "deepen" and transform.block is None:
        raise TransformError(f"{space.name}: {transform.kind} needs a block")


def arch_after(space: SearchSpace, arch: Arch, transform: Transform) -> Arch:
    """The arch `transform` leads to, without building or copying any weights."""
    _checked_kind(space, transform)
    if transform.kind == "deepen":
        return deepened_arch(space, arch, transform.stage)
    if transform.kind == "widen":
        return widened_expand_arch(space, arch, transform.stage, transform.block)
    return enlarged_kernel_arch(space, arch, transform.stage, transform.block)


def apply(space: SearchSpace, arch: Arch, model: Network, transform: Transform,
          rng: Rng = None) -> tuple[Arch, Network]:
    _checked_kind(space, transform)
    if transform.kind == "deepen":
        return deepen(space, arch, model, transform.stage)
    if transform.kind == "widen":
        return widen_expand(space, arch, model, transform.stage, transform.block, rng=rng)
    return enlarge_kernel(space, arch, model, transform.stage, transform.block)
