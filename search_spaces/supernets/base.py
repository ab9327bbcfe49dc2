"""`Supernet`: every architecture of a space as a view of one set of shared weights.

`set_active(arch)` picks the subnet that `forward` runs; `extract(arch)` returns the plain
network `space.build(arch)` defines, holding copies of the shared weights, so that its output
equals the supernet's for the same input in eval mode. The subnet's forward is the space's own
block code run on tensors cut from the shared ones (`torch.func.functional_call` on a
meta-device template): the supernet and the extracted network cannot disagree about what the
network is. Resolution is elastic by input size: the weights do not depend on it (only ViT
position embeddings, which are resampled).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from search_spaces.arch import Arch, Gene
from search_spaces.errors import NasError
from search_spaces.network import Network
from search_spaces.space import BlockSpec, Rng, SearchSpace, as_rng
from search_spaces.supernets import elastic
from search_spaces.supernets.bank import WeightBank, arch_slots, collect
from search_spaces.supernets.dead_taps import dead_taps_trimmed
from search_spaces.supernets.masks import magnitude_mask
from search_spaces.supernets.probe import probe_archs
from search_spaces.supernets.slots import TensorSlot, block_template

RESOLUTION = "r"  # the resolution dimension's name in every space


class SupernetError(NasError):
    """A request a supernet cannot serve (an arch of another space, an unknown checkpoint)."""


class Supernet(nn.Module):
    """Shared weights for every arch of `space`, built for `num_classes` outputs and
    `in_channels` input channels (defaults: the space's). `style` names the sharing scheme
    (`elastic`: Once-for-All, `one-shot`: single-path one-shot); `kernel_transform` adds OFA's
    kernel transform matrices to elastic depthwise kernels."""

    style = "shared"

    def __init__(self, space: SearchSpace, num_classes: int | None = None,
                 in_channels: int | None = None, *, kernel_transform: bool = False,
                 probe_samples: int = 4, seed: int = 0, channels_last: bool = True,
                 trim_dead_taps: bool = True):
        super().__init__()
        self.space = space
        self.num_classes = num_classes or space.default_classes
        self.in_channels = in_channels or space.default_channels
        self.kernel_transform = kernel_transform
        self.seed = seed
        self.channels_last = channels_last
        self.trim_dead_taps = trim_dead_taps
        self._fixed = self._shape_free_resolution()
        infos = collect(space, probe_archs(space, probe_samples, seed, self._fixed),
                        self.num_classes, self.in_channels)
        self.bank = WeightBank(infos, kernel_transform, seed)
        self.active: Arch = self.max_arch()

    def _shape_free_resolution(self) -> dict[str, Gene]:
        """{"r": largest} when the resolution changes no weight shape (convolutional spaces:
        then a subnet's weights, templates and caches do not depend on it), else {}."""
        dims = {d.name: d for d in self.space.dimensions}
        if RESOLUTION not in dims or len(dims[RESOLUTION].options) < 2:
            return {}
        options = dims[RESOLUTION].options
        for base in (self.space.max_arch(), self.space.min_arch()):
            shapes = [self._shapes(self.space.make({**base.as_dict(), RESOLUTION: r}))
                      for r in (options[0], options[-1])]
            if shapes[0] != shapes[1]:
                return {}
        return {RESOLUTION: options[-1]}

    def _shapes(self, arch: Arch) -> list[tuple[str, str, tuple[int, ...]]]:
        return [(slot, t.name, t.shape) for _, slot, tensors in
                arch_slots(self.space, arch, self.num_classes, self.in_channels)
                for t in tensors]

    def structural(self, arch: Arch) -> Arch:
        """`arch` with the genes that change no weight (a free resolution) at a fixed value:
        the same network as far as weights, templates and caches go."""
        return arch.replace(**self._fixed) if self._fixed else arch

    # --- the subnets ----------------------------------------------------------------------
    def max_arch(self) -> Arch:
        return self.space.max_arch()

    def min_arch(self) -> Arch:
        return self.space.min_arch()

    def sample_arch(self, rng: Rng = None) -> Arch:
        return self.space.sample(as_rng(rng))

    def set_active(self, arch: Arch) -> None:
        self.active = self._check(arch)

    def _check(self, arch: Arch) -> Arch:
        if not self.space.contains(arch):
            raise SupernetError(f"{arch.key if arch.space == self.space.name else arch} is not "
                                f"an architecture of space {self.space.name!r}")
        return arch

    # --- forward --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, arch: Arch | None = None) -> torch.Tensor:
        """The output of `arch` (default: the active subnet) for input `x`."""
        arch = self.active if arch is None else self._check(arch)
        template, state = self.template(arch), self.materialize(arch)
        template.train(self.training)  # templates are shared: set their mode on every call
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.trim_dead_taps:
            return functional_call(template, state, (x,), strict=True)
        with dead_taps_trimmed():
            return functional_call(template, state, (x,), strict=True)

    def template(self, arch: Arch) -> Network:
        """The network of `arch` on the meta device, assembled from cached block templates."""
        blocks = [block_template(spec, slot) for spec, slot, _ in self._slots(arch)]
        size = self.space.input_size(arch)
        return Network(blocks, arch.key, (self.in_channels, size, size))

    def materialize(self, arch: Arch) -> dict[str, torch.Tensor]:
        """The state (parameters and buffers, by the built network's names) of `arch`, cut
        from the shared weights; differentiable, and BatchNorm running statistics are views,
        so training-mode statistics updates land in the shared buffers."""
        state: dict[str, torch.Tensor] = {}
        for index, (_, _, tensors) in enumerate(self._slots(arch)):
            local = {t.name: self._cut(t) for t in tensors if t.kind != "mask"}
            for t in tensors:
                if t.kind == "mask":
                    local[t.name] = magnitude_mask(local[t.source], t.density)
            state.update({f"{index}.{name}": value for name, value in local.items()})
        return state

    def _slots(self, arch: Arch) -> list[tuple[BlockSpec, str, tuple[TensorSlot, ...]]]:
        return _cached_slots(self.space, self.structural(arch), self.num_classes,
                             self.in_channels)

    def _cut(self, t: TensorSlot) -> torch.Tensor:
        if t.key not in self.bank.infos:
            raise SupernetError(f"{self.space.name}: no shared weight for {t.key} (the probe "
                                f"archs missed this candidate); raise probe_samples")
        shared = self.bank.tensor(t.key)
        if any(s > m for s, m in zip(t.shape, shared.shape)):
            raise SupernetError(f"{self.space.name}: {t.key} needs {t.shape}, the shared "
                                f"weight is {tuple(shared.shape)}; raise probe_samples")
        if t.kind == "kernel":
            out = elastic.centre(shared, t.shape)
        elif t.kind == "dwkernel":
            out = elastic.transformed_kernel(shared, t.shape, self.bank.matrices(t.key))
        elif t.kind == "qkv":
            out = elastic.qkv(shared, t.shape)
        elif t.kind in ("pos", "grid"):
            out = elastic.position_grid(shared, t.shape, cls=t.kind == "pos")
        else:
            out = elastic.leading(shared, t.shape)
        if self.channels_last and out.dim() == 4:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    # --- extraction -----------------------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Arch | None = None) -> Network:
        """`space.build(arch)` with the shared weights copied in (sparse layers: pruned
        weights zeroed, masks set), in the supernet's train/eval mode."""
        arch = self.active if arch is None else self._check(arch)
        state = self.materialize(arch)
        for name, value in state.items():
            if name.endswith(".mask"):
                weight = name[:-len("mask")] + "weight"
                state[weight] = state[weight] * value
        with torch.device("meta"):
            model = self.space.build(arch, self.num_classes, self.in_channels)
        model.load_state_dict({k: v.detach().clone() for k, v in state.items()}, assign=True)
        return model.train(self.training)

    # --- description ----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        params = sum(p.numel() for p in self.bank.parameters())
        return {"space": self.space.name, "style": self.style, "slots": len(self.bank.infos),
                "shared_params": params, "kernel_transform": self.kernel_transform,
                "num_classes": self.num_classes, "in_channels": self.in_channels}


@lru_cache(maxsize=4096)
def _cached_slots(space: SearchSpace, arch: Arch, num_classes: int,
                  in_channels: int) -> list[tuple[BlockSpec, str, tuple[TensorSlot, ...]]]:
    return arch_slots(space, arch, num_classes, in_channels)
