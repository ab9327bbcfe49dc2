"""Function-preserving transformations of the ResNet family (`resnet`, `resnet-sparse` and space
files based on them), for `basic`, `bottleneck` and `plain` blocks:

- `deepen`: append blocks that start as the identity (Net2Deeper);
- `widen`: raise a stage's width multiplier `w{stage}`, replicating units (Net2Wider);
- `widen_expansion`: raise the bottleneck `expansion` (every stage's output width; a named
  function only: `Transform` has no place for a global gene).

Kernels are fixed (3x3), so there is no kernel transformation. Genes: `d{stage}`, `w{stage}`,
`expansion`. See docs/transform.md.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from search_spaces.arch import Arch
from search_spaces.ops.residual import ResidualBlock, needs_projection
from search_spaces.space import Rng, SearchSpace, as_rng
from search_spaces.spaces.resnet import ResNetSpace
from search_spaces.transforms.base import (
    Transform,
    TransformError,
    UnsupportedTransformError,
    block_index,
    check_stage,
    checked,
    copy_bn,
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

Units = tuple[torch.Tensor, torch.Tensor]  # Net2Wider mapping g and per-unit copy counts


def _check_space(space: SearchSpace) -> ResNetSpace:
    return of_family(space, ResNetSpace, "ResNet")


def _check(space: SearchSpace, arch: Arch, model: nn.Module) -> ResNetSpace:
    return checked(space, arch, model, ResNetSpace, "ResNet")




def set_identity_bn(bn: nn.BatchNorm2d) -> None:
    """Eval-mode identity: mean 0, var 1, gamma sqrt(1 + eps), beta 0."""
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0)
    bn.weight.fill_(math.sqrt(1.0 + bn.eps))
    bn.bias.zero_()


# --- deepen -----------------------------------------------------------------------------------
def deepened_arch(space: SearchSpace, arch: Arch, stage: int) -> Arch:
    rn = _check_space(space)
    check_stage(rn, arch, rn.num_stages, stage)
    depth = int(arch[f"d{stage}"])
    return rn.make({**arch.as_dict(),
                    f"d{stage}": next_option(rn, f"d{stage}", depth, "stage depth")})


def deepen(space: SearchSpace, arch: Arch, model: Network, stage: int) -> tuple[Arch, Network]:
    """Grow `stage` to its next depth option by appending blocks that start as the identity.

    Appended blocks have stride 1 and as many input as output channels. Their input is the
    previous block's output, which ends with a ReLU, so it is non-negative: ReLU(x) = x.
    Residual blocks (basic, bottleneck) keep an identity shortcut; their branch's last BN gets
    gamma = beta = 0, so the branch outputs 0 and relu(x + 0) = x. Plain blocks have no
    shortcut: both convs become dirac (identity) kernels and both BNs the eval-mode identity,
    so the block computes relu(relu(x)) = x (sparse convs keep the centre taps in their mask).
    """
    rn = _check(space, arch, model)
    new_arch = deepened_arch(rn, arch, stage)
    new, _ = rebuild(rn, arch, new_arch, model, skip=set())
    index = block_index(rn, new_arch)
    with torch.no_grad():
        for j in range(int(arch[f"d{stage}"]), int(new_arch[f"d{stage}"])):
            block = new[index[f"stage{stage}.{j}"]]
            if isinstance(block, ResidualBlock):
                if not isinstance(block.shortcut, nn.Identity):  # cannot happen: stride 1
                    raise TransformError(f"{rn.name}: appended block {j + 1} of stage {stage} "
                                         f"has a projection shortcut; it cannot be the identity")
                last_bn = block.body[-1][1]
                last_bn.weight.zero_()
                last_bn.bias.zero_()
            else:
                _make_plain_identity(block)
    return new_arch, new


def _make_plain_identity(block: nn.Module) -> None:
    for conv, bn in (block.body[0], block.body[2]):
        nn.init.dirac_(conv.weight)
        if hasattr(conv, "reset_mask"):  # keeps each unit's largest weight: the dirac tap
            conv.reset_mask()
        set_identity_bn(bn)


# --- widen ------------------------------------------------------------------------------------
def sparse_width_stage(rn: ResNetSpace, arch: Arch, stage: int) -> int | None:
    """The sparse stage among `stage` and the one whose first block reads it (a width change
    touches the units of the first and the inputs of the second), None if both are dense."""
    return next((s for s in (stage, stage + 1) if sparse_stage(rn, arch, s)), None)


def widened_arch(space: SearchSpace, arch: Arch, stage: int) -> Arch:
    rn = _check_space(space)
    check_stage(rn, arch, rn.num_stages, stage)
    s = sparse_width_stage(rn, arch, stage)
    if s is not None:
        raise UnsupportedTransformError(
            f"{rn.name}: widen does not handle sparse stages (stage {s} has density "
            f"{arch[f'density{s}']}); only dense stages and dense consumers")
    gene = f"w{stage}"
    new_arch = rn.make({**arch.as_dict(), gene: next_option(rn, gene, arch[gene], "width")})
    _check_shortcuts(rn, arch, new_arch)
    return new_arch


def widen(space: SearchSpace, arch: Arch, model: Network, stage: int,
          rng: Rng = None) -> tuple[Arch, Network]:
    """Raise `w{stage}` to the next option (Net2Wider on every block of the stage).

    The stage's blocks add their outputs to their shortcuts, so ONE random mapping g of the
    stage's output channels serves all of them: every block's last conv + BN, and the first
    block's projection shortcut conv + BN, replicate output unit g(c); the identity shortcuts
    then pass x[g(c)] as well. The consumers of the stage output divide their input weights by
    the copy counts: the first conv of every later block of the stage, the next stage's first
    block (first conv and projection shortcut) or, after the last stage, the classifier (the
    global pool keeps channels apart). Each block's inner width gets its own mapping, its
    consumer conv dividing. A first block whose identity shortcut must become a projection
    (the width leaves the input width) gets a 1x1 conv + BN equal to the old identity;
    the reverse (a projection becoming an identity) is refused, as are sparse stages."""
    rn = _check(space, arch, model)
    new_arch = widened_arch(rn, arch, stage)
    return new_arch, _replicate_stages(rn, arch, new_arch, model, {stage}, rng)


def widened_expansion_arch(space: SearchSpace, arch: Arch) -> Arch:
    rn = _check_space(space)
    if arch["block"] != "bottleneck":
        raise TransformError(f"{rn.name}: only bottleneck blocks have an expansion, not "
                             f"{arch['block']!r} blocks")
    if any(sparse_stage(rn, arch, s) for s in range(1, rn.num_stages + 1)):
        raise UnsupportedTransformError(f"{rn.name}: widen_expansion does not handle sparse "
                                        f"stages; every stage must have density 1.0")
    expansion = next_option(rn, "expansion", arch["expansion"], "expansion")
    new_arch = rn.make({**arch.as_dict(), "expansion": expansion})
    _check_shortcuts(rn, arch, new_arch)
    return new_arch


def widen_expansion(space: SearchSpace, arch: Arch, model: Network,
                    rng: Rng = None) -> tuple[Arch, Network]:
    """Raise the bottleneck expansion to the next option: every stage's output width
    (planes * expansion) grows, one mapping per stage, replicated and divided as in `widen`;
    inner widths (planes) do not change."""
    rn = _check(space, arch, model)
    new_arch = widened_expansion_arch(rn, arch)
    stages = set(range(1, rn.num_stages + 1))
    return new_arch, _replicate_stages(rn, arch, new_arch, model, stages, rng)


def _check_shortcuts(rn: ResNetSpace, arch: Arch, new_arch: Arch) -> None:
    """Refuse a learned projection shortcut that would become an identity: no width mapping
    turns a learned 1x1 conv + BN into x."""
    old = {s.name: s for s in rn.blocks(arch)}
    for spec in rn.blocks(new_arch):
        before = old.get(spec.name)
        if spec.op not in ("basic", "bottleneck") or before is None:
            continue
        if _projects(before) and not _projects(spec):
            raise UnsupportedTransformError(
                f"{rn.name}: {spec.name} would go from {before.kwargs['out']} to "
                f"{spec.kwargs['out']} channels, its input width, losing its learned projection "
                f"shortcut; this cannot preserve the function")


def _projects(spec) -> bool:
    return needs_projection(spec.in_shape[0], spec.kwargs["out"], spec.kwargs.get("stride", 1))


def _stage_of(name: str) -> int | None:
    return int(name[len("stage"):].split(".")[0]) if name.startswith("stage") else None


def _identity_units(n: int, device: torch.device) -> Units:
    return torch.arange(n, device=device), torch.ones(n, dtype=torch.long, device=device)


def _replicate_stages(rn: ResNetSpace, arch: Arch, new_arch: Arch, model: Network,
                      stages: set[int], rng: Rng) -> Network:
    """`new_arch`'s network, whose `stages` are wider, carrying `model`'s function."""
    rng = as_rng(rng)
    changed = {f"stage{s}.{j}" for s in stages for j in range(int(arch[f"d{s}"]))}
    changed |= {f"stage{s + 1}.0" if s < rn.num_stages else "classifier" for s in stages}
    new, pairs = rebuild(rn, arch, new_arch, model, skip=changed)
    device = next(model.parameters()).device
    stage_units: dict[int, Units] = {}
    flowing: Units | None = None  # mapping of the tensor between blocks (None: unchanged)
    with torch.no_grad():
        for name, (old_b, new_b) in pairs.items():
            stage = _stage_of(name)
            if name == "classifier" and name in changed:
                old_fc, new_fc = _linear(old_b), _linear(new_b)
                new_fc.weight.copy_(replicate(old_fc.weight, flowing[0], 1, flowing[1]))
                new_fc.bias.copy_(old_fc.bias)
            if stage is None:
                continue
            old_out = old_b.body[-1][0].out_channels
            new_out = new_b.body[-1][0].out_channels
            if stage in stages and stage not in stage_units:
                stage_units[stage] = _mapping(old_out, new_out, rng, device, name)
            if name in changed:
                cin = old_b.body[0][0].in_channels
                units_in = flowing or _identity_units(cin, device)
                units_out = stage_units.get(stage) or _identity_units(old_out, device)
                _replicate_block(old_b, new_b, units_in, units_out, rng, device, name)
            flowing = stage_units.get(stage)
    return new


def _mapping(old: int, new: int, rng: Rng, device: torch.device, where: str) -> Units:
    if new < old:  # cannot happen: round8 and the sorted options only grow
        raise TransformError(f"{where}: the width would shrink from {old} to {new} channels")
    return unit_mapping(old, new, rng, device)


def _linear(block: nn.Module) -> nn.Linear:
    return [m for m in block.modules() if isinstance(m, nn.Linear)][-1]


def _replicate_block(old: nn.Module, new: nn.Module, units_in: Units, units_out: Units,
                     rng: Rng, device: torch.device, name: str) -> None:
    """Body convs (at even indices) chained through fresh inner mappings, then the shortcut."""
    old_pairs, new_pairs = list(old.body[0::2]), list(new.body[0::2])
    chain = [units_in]
    for o, n in zip(old_pairs[:-1], new_pairs[:-1]):
        chain.append(_mapping(o[0].out_channels, n[0].out_channels, rng, device, name))
    chain.append(units_out)
    for k, (o, n) in enumerate(zip(old_pairs, new_pairs)):
        _replicate_conv_bn(o, n, chain[k], chain[k + 1])
    if not isinstance(new, ResidualBlock):
        return
    if isinstance(new.shortcut, nn.Identity):
        if not isinstance(old.shortcut, nn.Identity):  # refused by _check_shortcuts
            raise TransformError(f"{name}: a projection shortcut cannot become an identity")
        if not torch.equal(units_in[0], units_out[0]):  # cannot happen: same tensor in and out
            raise TransformError(f"{name}: an identity shortcut between different mappings")
        return
    shortcut = old.shortcut
    if isinstance(shortcut, nn.Identity):  # the identity as a 1x1 conv + BN, then replicated
        shortcut = _identity_projection(old.body[0][0].in_channels, new.shortcut, device)
    _replicate_conv_bn(shortcut, new.shortcut, units_in, units_out)


def _identity_projection(channels: int, like: nn.Sequential, device: torch.device
                         ) -> nn.Sequential:
    conv = nn.Conv2d(channels, channels, 1, bias=False).to(device, like[0].weight.dtype)
    bn = nn.BatchNorm2d(channels, eps=like[1].eps).to(device, like[1].weight.dtype)
    nn.init.dirac_(conv.weight)
    set_identity_bn(bn)
    return nn.Sequential(conv, bn)


def _replicate_conv_bn(old: nn.Sequential, new: nn.Sequential, units_in: Units,
                       units_out: Units) -> None:
    """Output unit c copies old unit g_out(c); input column k divides by its unit's copies."""
    weight = replicate(old[0].weight, units_out[0], 0)
    new[0].weight.copy_(replicate(weight, units_in[0], 1, units_in[1]))
    copy_bn(old[1], new[1], units_out[0])


# --- the family's actions ----------------------------------------------------------------------
SPACE_TYPE = ResNetSpace


def available(space: SearchSpace, arch: Arch) -> list[Transform]:
    """Deepen a stage with a larger depth option; widen a dense stage (with a dense consumer)
    with a larger width option that keeps every projection shortcut."""
    rn = _check_space(space)
    out = []
    for s in range(1, rn.num_stages + 1):
        if larger_options(rn, f"d{s}", arch[f"d{s}"]):
            out.append(Transform("deepen", s))
        if larger_options(rn, f"w{s}", arch[f"w{s}"]):
            try:
                widened_arch(rn, arch, s)
                out.append(Transform("widen", s))
            except UnsupportedTransformError:
                pass
    return out


def _checked_kind(space: SearchSpace, transform: Transform) -> None:
    if transform.kind == "kernel":
        raise TransformError(f"{space.name}: ResNet blocks have fixed 3x3 kernels; there is no "
                             f"kernel transformation")
    if transform.block is not None:
        raise TransformError(f"{space.name}: {transform.kind} acts on a whole stage; give no "
                             f"block (got block {transform.block})")


def arch_after(space: SearchSpace, arch: Arch, transform: Transform) -> Arch:
    """The arch `transform` leads to, without building or copying any weights."""
    _checked_kind(space, transform)
    if transform.kind == "deepen":
        return deepened_arch(space, arch, transform.stage)
    return widened_arch(space, arch, transform.stage)


def apply(space: SearchSpace, arch: Arch, model: Network, transform: Transform,
          rng: Rng = None) -> tuple[Arch, Network]:
    _checked_kind(space, transform)
    if transform.kind == "deepen":
        return deepen(space, arch, model, transform.stage)
    return widen(space, arch, model, transform.stage, rng=rng)
