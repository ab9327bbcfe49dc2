"""Function-preserving network transformations (Net2Net, EAS) for the inverted-residual family.

Each transformation takes a space, an arch of it and a model built from that arch, and returns a
larger arch of the same space with a model built by `space.build(new_arch, ...)` whose weights
are transferred so that, in eval mode, it computes the same function:

- `deepen`: append zero-initialised residual MBConv blocks to a stage (Net2Deeper);
- `widen_expand`: raise a block's expand ratio, replicating hidden units (Net2Wider);
- `enlarge_kernel`: raise a block's depthwise kernel, zero-padding it around the centre.

Supported so far: spaces of the inverted-residual family (`mobile`, `mobilenetv2`, their sparse
variants and space files based on them). Stages and blocks are numbered from 1, as in the genes
(`k{stage}_{block}`, `e{stage}_{block}`, `d{stage}`). See docs/transform.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from search_spaces.arch import Arch, Gene
from search_spaces.errors import NasError
from search_spaces.space import Rng, SearchSpace, as_rng
from search_spaces.spaces.inverted_residual import InvertedResidualSpace

if TYPE_CHECKING:
    from search_spaces.network import Network


class TransformError(NasError):
    """A transformation that cannot be applied (bad stage/block, nothing larger, bad model)."""


class UnsupportedTransformError(TransformError):
    """A space family (or a layer kind) the transformations do not handle yet."""


# --- common checks and weight transfer --------------------------------------------------------
def _check(space: SearchSpace, arch: Arch, model: nn.Module) -> InvertedResidualSpace:
    if not isinstance(space, InvertedResidualSpace):
        raise UnsupportedTransformError(
            f"function-preserving transforms support only the inverted-residual family "
            f"(mobile, mobilenetv2 and spaces based on them), not space {space.name!r}")
    space.check(arch)
    if getattr(model, "arch_key", None) != arch.key:
        raise TransformError(f"the model was built for {getattr(model, 'arch_key', None)!r}, "
                             f"not {arch.key!r}")
    return space


def _check_stage(space: InvertedResidualSpace, arch: Arch, stage: int,
                 block: int | None = None) -> None:
    if not isinstance(stage, int) or not 1 <= stage <= space.num_stages:
        raise TransformError(f"{space.name}: stage {stage!r} is out of range "
                             f"(1..{space.num_stages})")
    if block is None:
        return
    depth = int(arch[f"d{stage}"])
    if not isinstance(block, int) or not 1 <= block <= depth:
        raise TransformError(f"{space.name}: block {block!r} of stage {stage} is out of range "
                             f"(1..{depth}: the stage has {depth} blocks)")


def _next_option(space: SearchSpace, gene: str, value: Gene, what: str) -> Gene:
    larger = [o for o in space.dimension(gene).options if o > value]  # type: ignore[operator]
    if not larger:
        raise TransformError(f"{space.name}: {what} {gene}={value!r} is already the largest "
                             f"option {list(space.dimension(gene).options)}")
    return min(larger)  # type: ignore[type-var]


def _block_index(space: SearchSpace, arch: Arch) -> dict[str, int]:
    """Block name (`stem`, `stage2.0`, `head.conv`...) -> its index in the built Network."""
    return {spec.name: i for i, spec in enumerate(space.blocks(arch))}


def _rebuild(space: SearchSpace, arch: Arch, new_arch: Arch, model: Network,
             skip: set[str]) -> tuple[Network, dict[str, tuple[nn.Module, nn.Module]]]:
    """Build `new_arch` like `model` (classes, input channels, dtype, device, train/eval mode) and
    copy every block's state (parameters and buffers: BN running stats, sparse masks) by block
    name, except the blocks in `skip`. Returns the model and {name: (old block, new block)} for
    every block present in both, skipped ones included."""
    space.check(new_arch)
    classifier = [m for m in model[-1].modules() if isinstance(m, nn.Linear)][-1]
    new = space.build(new_arch, num_classes=classifier.out_features,
                      in_channels=int(model.input_shape[0]))
    first = next(model.parameters())
    new = new.to(dtype=first.dtype, device=first.device).train(model.training)
    old_index, new_index = _block_index(space, arch), _block_index(space, new_arch)
    pairs = {}
    with torch.no_grad():
        for name, i in new_index.items():
            if name not in old_index:
                continue
            pairs[name] = (model[old_index[name]], new[i])
            if name not in skip:
                new[i].load_state_dict(model[old_index[name]].state_dict())
    return new, pairs


# --- deepen -----------------------------------------------------------------------------------
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
    _check_stage(ir, arch, stage)
    depth = int(arch[f"d{stage}"])
    new_depth = int(_next_option(ir, f"d{stage}", depth, "stage depth"))
    kernel = ir.config.kernels[0] if kernel is None else kernel
    expand = ir.config.expands[0] if expand is None else expand
    genes = arch.as_dict()
    genes[f"d{stage}"] = new_depth
    for j in range(depth + 1, new_depth + 1):
        genes[f"k{stage}_{j}"], genes[f"e{stage}_{j}"] = kernel, expand
    new_arch = ir.make(genes)
    new, _ = _rebuild(ir, arch, new_arch, model, skip=set())
    index = _block_index(ir, new_arch)
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
def _replicate(tensor: torch.Tensor, mapping: torch.Tensor, dim: int = 0,
               divide: torch.Tensor | None = None) -> torch.Tensor:
    """`tensor` indexed by `mapping` along `dim`; each slice divided by `divide` (its unit's
    number of copies) when given."""
    out = tensor.index_select(dim, mapping)
    if divide is not None:
        shape = [1] * out.dim()
        shape[dim] = -1
        out = out / divide.to(out.dtype).view(shape)
    return out


def _copy_conv_bn(old: nn.Sequential, new: nn.Sequential, mapping: torch.Tensor) -> None:
    """Replicate the output units of a conv (no bias) + BatchNorm pair."""
    new[0].weight.copy_(_replicate(old[0].weight, mapping))
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new[1], name).copy_(_replicate(getattr(old[1], name), mapping))
    new[1].num_batches_tracked.copy_(old[1].num_batches_tracked)


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
    _check_stage(ir, arch, stage, block)
    if ir.sparse and arch[f"density{stage}"] < 1.0:
        raise UnsupportedTransformError(
            f"{ir.name}: widen_expand does not handle sparse stages (stage {stage} has density "
            f"{arch[f'density{stage}']}); only dense ones")
    gene = f"e{stage}_{block}"
    new_arch = ir.make({**arch.as_dict(), gene: _next_option(ir, gene, arch[gene], "expand")})
    name = f"stage{stage}.{block - 1}"
    new, pairs = _rebuild(ir, arch, new_arch, model, skip={name})
    old_b, new_b = pairs[name]
    mid, new_mid = old_b.depthwise[0].out_channels, new_b.depthwise[0].out_channels
    generator = as_rng(rng)
    extra = generator.integers(mid, size=new_mid - mid) if new_mid > mid else np.zeros(0, int)
    device = old_b.depthwise[0].weight.device
    mapping = torch.as_tensor(np.concatenate([np.arange(mid), extra]), device=device)
    counts = torch.bincount(mapping, minlength=mid)[mapping]
    with torch.no_grad():
        _copy_conv_bn(old_b.expand, new_b.expand, mapping)
        _copy_conv_bn(old_b.depthwise, new_b.depthwise, mapping)
        new_b.project[0].weight.copy_(_replicate(old_b.project[0].weight, mapping, 1, counts))
        new_b.project[1].load_state_dict(old_b.project[1].state_dict())
        if old_b.se is not None:
            _widen_se(old_b.se, new_b.se, mapping, counts)
    return new_arch, new


def _widen_se(old: nn.Module, new: nn.Module, mapping: torch.Tensor,
              counts: torch.Tensor) -> None:
    hidden = old.reduce.out_channels
    if new.reduce.out_channels < hidden:  # cannot happen: SE width grows with mid
        raise TransformError("the squeeze-excite width shrank; cannot preserve the function")
    reduce_w = _replicate(old.reduce.weight, mapping, 1, counts)
    new.reduce.weight[:hidden].copy_(reduce_w)
    new.reduce.bias[:hidden].copy_(old.reduce.bias)
    new.expand.weight.zero_()
    new.expand.weight[:, :hidden].copy_(_replicate(old.expand.weight, mapping))
    new.expand.bias.copy_(_replicate(old.expand.bias, mapping))


# --- enlarge the depthwise kernel -------------------------------------------------------------
def enlarge_kernel(space: SearchSpace, arch: Arch, model: Network, stage: int,
                   block: int) -> tuple[Arch, Network]:
    """Raise block `block` of `stage` to the next depthwise kernel option: the old k x k
    kernel sits in the centre of the new k' x k' one, the border is zero. With padding k // 2
    the output keeps its size and output pixel (i, j) still sees the same input pixels with the
    same weights (the extra taps multiply by zero, or fall on the zero padding), so the
    function is unchanged exactly."""
    ir = _check(space, arch, model)
    _check_stage(ir, arch, stage, block)
    gene = f"k{stage}_{block}"
    new_arch = ir.make({**arch.as_dict(), gene: _next_option(ir, gene, arch[gene], "kernel")})
    name = f"stage{stage}.{block - 1}"
    new, pairs = _rebuild(ir, arch, new_arch, model, skip={name})
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


__all__ = ["TransformError", "UnsupportedTransformError", "deepen", "enlarge_kernel",
           "widen_expand"]
