"""What each tensor of a block is, for weight sharing: its bank key, its shape in this block
and how it is cut from the shared tensor (`kind`).

Kinds: `slice` (leading part of every dimension: widths, expand ratios, MLP widths), `kernel`
(channels sliced, spatial dims centre-cropped), `dwkernel` (a depthwise kernel: centre crop,
optionally through OFA's kernel transform matrices), `qkv` (a fused q/k/v projection: each of
the three parts sliced on its own), `pos` (ViT position embeddings: the grid is resampled to
the token count), `grid` (the same without a class token row: ViT-ResNAS's reductions) and
`mask` (a sparse layer's mask: not stored, recomputed from the weight).
Block templates are built on the meta device (no memory, no initialisation) and cached.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache

import torch
from torch import nn

from search_spaces.ops import build_block
from search_spaces.ops.sparse import SparseConv2d, SparseLinear
from search_spaces.space import BlockSpec
from search_spaces.supernets.sharing import bank_key

KINDS = ("slice", "kernel", "dwkernel", "qkv", "pos", "grid", "mask")


@dataclass(frozen=True)
class TensorSlot:
    """One parameter or buffer of a block: `name` inside the block, `key` in the bank."""

    name: str
    key: str
    shape: tuple[int, ...]
    kind: str
    is_param: bool
    source: str = ""  # masks: the state name of the weight they mask
    density: float = 1.0  # masks: the share of each output unit's weights kept


@lru_cache(maxsize=20_000)
def block_template(spec: BlockSpec, slot: str) -> nn.Module:
    """The block of `spec` on the meta device. Cached per (spec, slot): a network never holds
    one template twice, since its slots are distinct."""
    del slot  # part of the cache key only
    with torch.device("meta"):
        return build_block(spec)


@lru_cache(maxsize=20_000)
def block_tensors(spec: BlockSpec) -> tuple[TensorSlot, ...]:
    """The tensors of the block built from `spec`, without bank keys (they depend on the
    position; this does not, so blocks repeated at several positions are inspected once)."""
    module = block_template(spec, "")
    masked = {f"{n}.mask": (f"{n}.weight", float(m.density)) for n, m in module.named_modules()
              if isinstance(m, (SparseConv2d, SparseLinear))}
    depthwise = {f"{n}.weight" for n, m in module.named_modules()
                 if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels}
    found = []
    for name, tensor, is_param in _tensors(module):
        shape = tuple(tensor.shape)
        if name in masked:
            source, density = masked[name]
            found.append(TensorSlot(name, "", shape, "mask", False, source, density))
        else:
            found.append(TensorSlot(name, "", shape, _kind(name, shape, name in depthwise),
                                    is_param))
    return tuple(found)


@lru_cache(maxsize=20_000)
def block_slots(spec: BlockSpec, slot: str) -> tuple[TensorSlot, ...]:
    """Every parameter and buffer of the block built from `spec` at position `slot`."""
    named = BlockSpec(spec.op, spec.in_shape, spec.args, slot)
    return tuple(t if t.kind == "mask" else replace(t, key=bank_key(named, t.name))
                 for t in block_tensors(spec))


def _tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor, bool]]:
    for name, param in module.named_parameters():
        yield name, param, True
    for name, buffer in module.named_buffers():
        yield name, buffer, False


def _kind(name: str, shape: tuple[int, ...], depthwise: bool) -> str:
    leaf = name.rsplit(".", 1)[-1]
    if name.endswith(("qkv.weight", "qkv.bias")):
        return "qkv"
    if leaf == "pos_embed" and len(shape) == 3:
        return "pos"
    if leaf == "grid_pos_embed" and len(shape) == 3:
        return "grid"
    if len(shape) == 4 and leaf == "weight":
        return "dwkernel" if depthwise else "kernel"
    return "slice"
