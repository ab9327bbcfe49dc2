"""Function-preserving transformations of the DenseNet family (`densenet`, `densenet-sparse` and
space files based on them), for `dense` and `osa` blocks:

- `deepen`: raise a block's layer count `b{block}` (more dense layers, or a larger OSA module);
- `widen` (as `Transform("widen", 1)`): raise the growth rate, one global gene;
- `widen_compression`: raise the compression (a named function only: `Transform` has no place
  for a second global gene).

All of them grow some tensors by new channels and are made exact the same way (zero-weight
embedding): every old unit keeps its weights, BN parameters and statistics at its new
position; every new channel gets fresh weights where it is produced, and every old unit's
weights that read a new channel are zero. So each old unit, hence the classifier, computes
what it did. The new channels carry signal, so those zero weights get gradients: the new
units train (zeroing the new channels instead would leave them dead: ReLU'(0) = 0).
Genes: `growth`, `compression`, `b{block}`. See docs/transform.md.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from search_spaces.arch import Arch
from search_spaces.ops import block_out_shape
from search_spaces.space import Rng, SearchSpace
from search_spaces.spaces.densenet import DenseNetSpace
from search_spaces.transforms.base import (
    Transform,
    TransformError,
    UnsupportedTransformError,
    check_stage,
    checked,
    larger_options,
    next_option,
    of_family,
    rebuild,
)

if TYPE_CHECKING:
    from search_spaces.network import Network

# Positions, in a new tensor, of the old tensor's channels (in order); the others are new.
Keep = torch.Tensor


def _check_space(space: SearchSpace) -> DenseNetSpace:
    return of_family(space, DenseNetSpace, "DenseNet")


def _check(space: SearchSpace, arch: Arch, model: nn.Module) -> DenseNetSpace:
    return checked(space, arch, model, DenseNetSpace, "DenseNet")


# --- the new archs ----------------------------------------------------------------------------
def deepened_arch(space: SearchSpace, arch: Arch, block: int) -> Arch:
    dn = _check_space(space)
    check_stage(dn, arch, dn.num_blocks, block)
    gene = f"b{block}"
    return dn.make({**arch.as_dict(), gene: next_option(dn, gene, arch[gene], "layer count")})


def widened_arch(space: SearchSpace, arch: Arch) -> Arch:
    dn = _check_space(space)
    return dn.make({**arch.as_dict(),
                    "growth": next_option(dn, "growth", arch["growth"], "growth rate")})


def compressed_less_arch(space: SearchSpace, arch: Arch) -> Arch:
    dn = _check_space(space)
    return dn.make({**arch.as_dict(), "compression": next_option(
        dn, "compression", arch["compression"], "compression")})


# --- the transformations ----------------------------------------------------------------------
def deepen(space: SearchSpace, arch: Arch, model: Network, block: int) -> tuple[Arch, Network]:
    """Raise `b{block}` to the next option. A dense block gets fresh dense layers appended;
    their outputs are new channels at the end of the block's output, which the transition
    after it (or the head BN and classifier) reads with zero weights. The transition's output
    grows with its input (floor(C * compression)); its new channels, fresh, pass through every
    later block and are read with zero weights everywhere. An OSA block's module grows (more
    conv layers and/or a wider output); its old output units read the new channels with zero
    weights."""
    dn = _check(space, arch, model)
    new_arch = deepened_arch(dn, arch, block)
    return new_arch, _embed(dn, arch, new_arch, model)


def widen(space: SearchSpace, arch: Arch, model: Network) -> tuple[Arch, Network]:
    """Raise the growth rate to the next option: the stem (2 * growth), every dense layer's
    bottleneck (bn_size * growth) and output (growth), every OSA layer (4 * growth) and hence
    every transition grow; the old units keep their weights and read new channels with zero
    weights."""
    dn = _check(space, arch, model)
    new_arch = widened_arch(dn, arch)
    return new_arch, _embed(dn, arch, new_arch, model)


def widen_compression(space: SearchSpace, arch: Arch, model: Network) -> tuple[Arch, Network]:
    """Raise the compression to the next option: every transition outputs more channels (fresh
    ones), read with zero weights downstream."""
    dn = _check(space, arch, model)
    new_arch = compressed_less_arch(dn, arch)
    return new_arch, _embed(dn, arch, new_arch, model)


def _embed(dn: DenseNetSpace, arch: Arch, new_arch: Arch, model: Network) -> Network:
    """`new_arch`'s network with `model`'s units embedded (see the module docstring)."""
    old_specs = {s.name: s for s in dn.blocks(arch)}
    new_specs = dn.blocks(new_arch)
    changed = {s.name for s in new_specs if s.name in old_specs and s != old_specs[s.name]}
    new, pairs = rebuild(dn, arch, new_arch, model, skip=changed)
    device = next(model.parameters()).device
    keep = torch.arange(int(model.input_shape[0]), device=device)
    with torch.no_grad():
        for spec in new_specs:
            if spec.name not in pairs:  # an appended dense layer: its channels go at the end
                continue
            if spec.name not in changed:  # same input width, so an unmoved input
                keep = torch.arange(block_out_shape(spec)[0], device=device)
                continue
            embed = EMBED.get(spec.op)
            if embed is None:
                raise UnsupportedTransformError(f"{dn.name}: cannot embed a {spec.op!r} block "
                                                f"({spec.name})")
            keep = embed(*pairs[spec.name], keep)
    return new


# --- embedding one block: (old, new, keep of its input) -> keep of its output -----------------
def _embed_weight(old: nn.Module, new: nn.Module, cols: Keep) -> None:
    """Old output unit i stays at row i, reading its old inputs at columns `cols` and the new
    ones with weight 0; the new rows keep their fresh initialisation. Sparse layers: the old
    weights are taken masked and the mask is recomputed (each unit keeps its largest weights:
    all its old non-zero ones, since the kept count only grows with the fan-in)."""
    weight = old.weight * old.mask if hasattr(old, "mask") else old.weight
    rows = torch.arange(weight.shape[0], device=cols.device)
    new.weight[:weight.shape[0]] = 0
    new.weight[rows[:, None], cols[None, :]] = weight
    if getattr(old, "bias", None) is not None:
        new.bias[:weight.shape[0]] = old.bias
    if hasattr(new, "reset_mask"):
        new.reset_mask()


def _embed_bn(old: nn.BatchNorm2d, new: nn.BatchNorm2d, keep: Keep) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name)[keep] = getattr(old, name)
    new.num_batches_tracked.copy_(old.num_batches_tracked)


def _leading(count: int, like: Keep) -> Keep:
    return torch.arange(count, device=like.device)


def _embed_conv_bn(old: nn.Sequential, new: nn.Sequential, keep: Keep) -> Keep:
    """Conv - BN - act (stem, OSA layers): returns where the old output units are."""
    _embed_weight(old[0], new[0], keep)
    out = _leading(old[0].out_channels, keep)
    _embed_bn(old[1], new[1], out)
    return out


def _embed_dense_layer(old: nn.Module, new: nn.Module, keep: Keep) -> Keep:
    """BN - ReLU - conv1x1 - BN - ReLU - conv3x3, concatenated after its input."""
    o, n = old.body, new.body
    _embed_bn(o[0], n[0], keep)
    _embed_weight(o[2], n[2], keep)
    mid = _leading(o[2].out_channels, keep)
    _embed_bn(o[3], n[3], mid)
    _embed_weight(o[5], n[5], mid)
    grown = _leading(o[5].out_channels, keep) + n[0].num_features
    return torch.cat([keep, grown])


def _embed_transition(old: nn.Sequential, new: nn.Sequential, keep: Keep) -> Keep:
    """BN - ReLU - conv1x1 - AvgPool."""
    _embed_bn(old[0], new[0], keep)
    _embed_weight(old[2], new[2], keep)
    return _leading(old[2].out_channels, keep)


def _embed_osa(old: nn.Module, new: nn.Module, keep: Keep) -> Keep:
    """Conv layers in sequence, then a 1x1 conv over the concat of the input and every layer's
    output; layers the new module adds are fresh, their outputs read with zero weights."""
    cin, stage = new.layers[0][0].in_channels, new.layers[0][0].out_channels
    concat_cols, inputs = [keep], keep
    for k, (o, n) in enumerate(zip(old.layers, new.layers)):
        inputs = _embed_conv_bn(o, n, inputs)
        concat_cols.append(inputs + cin + k * stage)
    return _embed_conv_bn(old.concat, new.concat, torch.cat(concat_cols))


def _embed_norm(old: nn.Sequential, new: nn.Sequential, keep: Keep) -> Keep:
    _embed_bn(old[0], new[0], keep)
    return keep


def _embed_classifier(old: nn.Module, new: nn.Module, keep: Keep) -> Keep:
    old_fc = [m for m in old.modules() if isinstance(m, nn.Linear)][-1]
    new_fc = [m for m in new.modules() if isinstance(m, nn.Linear)][-1]
    _embed_weight(old_fc, new_fc, keep)
    return _leading(old_fc.out_features, keep)


def _pass(old: nn.Module, new: nn.Module, keep: Keep) -> Keep:
    return keep  # pooling keeps channels apart


EMBED: dict[str, Callable[[nn.Module, nn.Module, Keep], Keep]] = {
    "conv_bn_act": _embed_conv_bn, "pool": _pass, "global_pool": _pass,
    "dense_layer": _embed_dense_layer, "transition": _embed_transition, "osa": _embed_osa,
    "bn_act": _embed_norm, "classifier": _embed_classifier,
}


# --- the family's actions ----------------------------------------------------------------------
SPACE_TYPE = DenseNetSpace
NO_REDUCTIONS = ("every dense layer's output is concatenated into the input of every later "
                 "layer and of the transition, so removing or narrowing one re-indexes all of "
                 "them; not done")


def available(space: SearchSpace, arch: Arch) -> list[Transform]:
    """Deepen every block with a larger layer-count option; widen (stage 1: the global growth
    rate) when a larger growth option exists."""
    dn = _check_space(space)
    out = [Transform("deepen", b) for b in range(1, dn.num_blocks + 1)
           if larger_options(dn, f"b{b}", arch[f"b{b}"])]
    if larger_options(dn, "growth", arch["growth"]):
        out.append(Transform("widen", 1))
    return out


def _checked_kind(space: SearchSpace, transform: Transform) -> None:
    if transform.kind == "kernel":
        raise TransformError(f"{space.name}: DenseNet layers have fixed kernels; there is no "
                             f"kernel transformation")
    if transform.block is not None:
        raise TransformError(f"{space.name}: {transform.kind} acts on a whole block; give no "
                             f"layer (got block {transform.block})")
    if transform.kind == "widen" and transform.stage != 1:
        raise TransformError(f"{space.name}: the growth rate is one global gene; widen it as "
                             f"Transform('widen', 1), not stage {transform.stage}")


def arch_after(space: SearchSpace, arch: Arch, transform: Transform) -> Arch:
    """The arch `transform` leads to, without building or copying any weights."""
    _checked_kind(space, transform)
    if transform.kind == "deepen":
        return deepened_arch(space, arch, transform.stage)
    return widened_arch(space, arch)


def apply(space: SearchSpace, arch: Arch, model: Network, transform: Transform,
          rng: Rng = None) -> tuple[Arch, Network]:
    """`rng` is unused: the embedding is deterministic (new units keep their fresh init)."""
    _checked_kind(space, transform)
    if transform.kind == "deepen":
        return deepen(space, arch, model, transform.stage)
    return widen(space, arch, model)
