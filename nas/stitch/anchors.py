"""The anchors of a stitched family: trained networks of one space family (from `nas train` or
`nas export`), ordered by FLOPs, with what stitching needs to know about each block: its cost
(the engine's convention: the space's blocks at the architecture's own resolution and head),
the shape of its output as the network runs (at the resolution it was trained at), and which
block boundaries are in the body (between the stem and the head), where stitches may cut.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from estimators.checkpoints import build_model, read_model_file
from search_spaces import Arch, BlockSpec, SearchSpace
from search_spaces.ops import Cost, block_cost
from search_spaces.registry import space_spec

Shape = tuple[int, ...]
HEAD_OPS = ("global_pool", "classifier", "token_head")  # where a network's head begins


@dataclass
class Anchor:
    """One trained network, ready to be cut."""

    path: Path
    model: nn.Sequential  # a `search_spaces.network.Network`: its blocks in order
    arch: Arch
    info: dict[str, Any]  # the model file without its tensors
    specs: list[BlockSpec]  # with the space's own head, as costs are counted
    costs: list[Cost]  # of each block
    shapes: list[Shape]  # each block's output (no batch) at `resolution`
    resolution: int  # pixels per side it was trained at

    @property
    def flops(self) -> int:
        return sum(c.macs for c in self.costs)

    @property
    def params(self) -> int:
        return sum(c.params for c in self.costs)

    @property
    def body(self) -> list[int]:
        """Blocks a stitch may end its front with or start its back at: those after the first
        (the stem or patch embedding) and before the head (from the first pooling or
        classifying block on), reading and writing feature maps or token sequences."""
        end = next((i for i, s in enumerate(self.specs) if s.op in HEAD_OPS), len(self.specs))
        return [i for i in range(1, end)
                if len(self.shapes[i - 1]) >= 2 and len(self.shapes[i]) >= 2]

    def input_shape(self, block: int) -> Shape:
        """What block `block` reads, as the network runs."""
        return self.shapes[block - 1]

    def block_name(self, block: int) -> str:
        return self.specs[block].name or f"block {block}"

    def cost(self, first: int, last: int) -> Cost:
        """Blocks first..last (inclusive) together."""
        total = Cost()
        for cost in self.costs[first:last + 1]:
            total = total + cost
        return total


def family_of(space: SearchSpace) -> str:
    """The space family a network belongs to: networks of one family cut at compatible
    boundaries (a registry family, and its kind where one family makes two: vit, vit-hybrid)."""
    spec = space_spec(space)
    family = spec["family"] if spec else type(space).__name__
    kind = getattr(getattr(space, "config", None), "kind", None)
    return f"{family} ({kind})" if isinstance(kind, str) and kind != family else family


def load_anchors(paths: list[str] | tuple[str, ...]) -> list[Anchor]:
    """The trained networks in `paths`, checked to be finished trainings of one family with
    the same classes and input channels, ordered by FLOPs (then parameters, then as given)."""
    from nas.stitch.settings import StitchError

    anchors: list[Anchor] = []
    seen: dict[Path, str] = {}
    for given in paths:
        path = Path(given).expanduser()
        resolved = path.resolve()
        if resolved in seen:
            raise StitchError(f"{given} and {seen[resolved]} are the same file; give each "
                              f"anchor once")
        seen[resolved] = given
        payload = read_model_file(path)  # a missing or foreign file: one-line error
        if not payload.get("complete", True):
            raise StitchError(f"{path} is an interrupted training ({payload['epochs_done']}/"
                              f"{payload['epochs']} epochs); finish it with `nas train --out "
                              f"{path} --resume` first")
        model, arch = build_model(payload, path)
        anchors.append(_anchor(path, model.eval(), arch, payload))
    first = anchors[0]
    for anchor in anchors[1:]:
        family, want = family_of(anchor.arch.search_space), family_of(first.arch.search_space)
        if family != want:
            raise StitchError(f"anchors must be of one space family: {first.path} is "
                              f"{first.arch.space} ({want}), {anchor.path} is "
                              f"{anchor.arch.space} ({family})")
        for field in ("num_classes", "in_channels"):
            if anchor.info[field] != first.info[field]:
                raise StitchError(f"anchors must share their {field.replace('_', ' ')}: "
                                  f"{first.path} has {first.info[field]}, {anchor.path} has "
                                  f"{anchor.info[field]}")
    order = sorted(range(len(anchors)), key=lambda i: (anchors[i].flops, anchors[i].params, i))
    return [anchors[i] for i in order]


def _anchor(path: Path, model: nn.Module, arch: Arch, payload: dict[str, Any]) -> Anchor:
    specs = arch.search_space.blocks(arch)
    size = int(payload["resolution"])
    info = {k: v for k, v in payload.items() if k not in ("state_dict", "optimizer", "rng")}
    return Anchor(path, model, arch, info, specs, [block_cost(s) for s in specs],
                  _probe(model, int(payload["in_channels"]), size), size)


@torch.no_grad()
def _probe(model: nn.Module, channels: int, size: int) -> list[Shape]:
    """Each block's output shape on a `size` x `size` input (what its activations look like)."""
    x = torch.zeros(2, channels, size, size)
    shapes = []
    for block in model:
        x = block(x)
        shapes.append(tuple(int(s) for s in x.shape[1:]))
    return shapes


@torch.no_grad()
def block_outputs(anchor: Anchor, inputs: torch.Tensor,
                  wanted: set[int]) -> dict[int, torch.Tensor]:
    """The outputs of blocks `wanted` of `anchor` (in eval mode) on `inputs` (already at its
    resolution)."""
    outputs = {}
    x = inputs
    for index, block in enumerate(anchor.model):
        if index > max(wanted):
            break
        x = block(x)
        if index in wanted:
            outputs[index] = x
    return outputs


__all__ = ["Anchor", "block_outputs", "family_of", "load_anchors"]
