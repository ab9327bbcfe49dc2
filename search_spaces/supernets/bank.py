"""The shared weights of a supernet: one tensor per bank key, at the largest shape any subnet
asks of it, initialised as the space's own op initialises it (by building the block that
asks for the largest shape), plus OFA kernel transform matrices for elastic depthwise kernels.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from search_spaces.arch import Arch
from search_spaces.ops import build_block
from search_spaces.space import BlockSpec, SearchSpace
from search_spaces.supernets.slots import TensorSlot, block_slots


@dataclass
class SlotInfo:
    """What the probes taught about one bank key."""

    shape: tuple[int, ...]
    kind: str
    is_param: bool
    kernels: set[int] = field(default_factory=set)
    source: tuple[BlockSpec, str] | None = None  # a block asking for the most elements
    source_numel: int = -1


def slot_names(specs: list[BlockSpec]) -> list[str]:
    """The position name of every block: its spec name, made unique where it repeats."""
    names, seen = [], set()
    for index, spec in enumerate(specs):
        name = spec.name or f"block{index}"
        if name in seen:
            name = f"{name}#{index}"
        seen.add(name)
        names.append(name)
    return names


def arch_slots(space: SearchSpace, arch: Arch, num_classes: int | None,
               in_channels: int | None) -> list[tuple[BlockSpec, str, tuple[TensorSlot, ...]]]:
    """(spec, slot name, tensor slots) of every block of `arch`, in network order."""
    specs = space.blocks(arch, num_classes, in_channels)
    return [(spec, slot, block_slots(spec, slot)) for spec, slot in zip(specs, slot_names(specs))]


def collect(space: SearchSpace, archs: Iterable[Arch], num_classes: int | None,
            in_channels: int | None) -> dict[str, SlotInfo]:
    """Every bank key the archs use, with the elementwise largest shape asked of it."""
    infos: dict[str, SlotInfo] = {}
    seen: set[tuple[BlockSpec, str]] = set()
    for arch in archs:
        for spec, slot, tensors in arch_slots(space, arch, num_classes, in_channels):
            if (spec, slot) in seen:  # most blocks repeat from one probe arch to the next
                continue
            seen.add((spec, slot))
            for t in tensors:
                if t.kind != "mask":
                    _merge(infos, t, spec, slot)
    return infos


def _merge(infos: dict[str, SlotInfo], t: TensorSlot, spec: BlockSpec, slot: str) -> None:
    info = infos.get(t.key)
    if info is None:
        info = infos[t.key] = SlotInfo(t.shape, t.kind, t.is_param)
    elif len(info.shape) != len(t.shape) or info.kind != t.kind or info.is_param != t.is_param:
        raise ValueError(f"weight-sharing slot {t.key} is asked for {t.kind} {t.shape} and "
                         f"{info.kind} {info.shape}: these candidates must not share")
    info.shape = tuple(max(a, b) for a, b in zip(info.shape, t.shape))
    if t.kind == "dwkernel":
        info.kernels.add(t.shape[2])
    numel = 1
    for s in t.shape:
        numel *= s
    if numel > info.source_numel:
        info.source, info.source_numel = (spec, slot), numel


def attr_name(key: str) -> str:
    """Module attribute names cannot hold '.'; bank keys hold many."""
    return key.replace(".", ":")


class WeightBank(nn.Module):
    """Shared parameters and buffers by bank key (state-dict names: the key with ':' for '.')."""

    def __init__(self, infos: dict[str, SlotInfo], kernel_transform: bool = False,
                 seed: int = 0):
        super().__init__()
        self.infos = dict(sorted(infos.items()))
        self.transforms: dict[str, dict[tuple[int, int], str]] = {}
        initial = _initial_tensors(self.infos, seed)
        for key, info in self.infos.items():
            tensor = initial[key]
            if info.is_param:
                self.register_parameter(attr_name(key), nn.Parameter(tensor))
            else:
                self.register_buffer(attr_name(key), tensor)
            if kernel_transform and info.kind == "dwkernel" and len(info.kernels) > 1:
                self._add_transforms(key, sorted(info.kernels, reverse=True))

    def _add_transforms(self, key: str, sizes: list[int]) -> None:
        steps: dict[tuple[int, int], str] = {}
        for big, small in zip(sizes, sizes[1:]):
            name = attr_name(f"{key}#T{big}to{small}")
            self.register_parameter(name, nn.Parameter(torch.eye(small * small)))
            steps[(big, small)] = name
        self.transforms[key] = steps

    def tensor(self, key: str) -> torch.Tensor:
        return getattr(self, attr_name(key))

    def matrices(self, key: str) -> dict[tuple[int, int], torch.Tensor]:
        return {step: getattr(self, name) for step, name in self.transforms.get(key, {}).items()}


def _initial_tensors(infos: dict[str, SlotInfo], seed: int) -> dict[str, torch.Tensor]:
    """Each key's tensor from a real, seeded build of the block that asks for the most of it,
    densified (a sparse build would zero the pruned weights of the shared tensor)."""
    built: dict[tuple[BlockSpec, str], dict[str, torch.Tensor]] = {}
    result = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for key, info in infos.items():
            assert info.source is not None
            spec, slot = info.source
            if (spec, slot) not in built:
                dense = BlockSpec(spec.op, spec.in_shape,
                                  tuple((k, v) for k, v in spec.args if k != "density"), slot)
                built[(spec, slot)] = dict(build_block(dense).state_dict())
            name = key.rsplit("/", 1)[-1]
            result[key] = _fit(built[(spec, slot)][name].detach(), info.shape)
    return result


def _fit(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """`tensor` in the leading corner of a `shape` tensor whose rest is drawn from a normal
    with the same mean and spread (shapes match in all spaces we know; this is the fallback)."""
    if tuple(tensor.shape) == shape:
        return tensor.clone()
    if tensor.is_floating_point() and tensor.numel() > 1:
        out = torch.randn(shape) * tensor.float().std() + tensor.float().mean()
    else:
        out = torch.full(shape, tensor.flatten()[0].item() if tensor.numel() else 0,
                         dtype=tensor.dtype)
    out = out.to(tensor.dtype)
    out[tuple(slice(0, s) for s in tensor.shape)] = tensor
    return out
