"""`StitchedNetwork`: the anchors and every stitching layer of a family in one module, running
one stitch at a time (`set_stitch(i)`), saved as `stitched.pt` (loads with
`torch.load(path, weights_only=True)`: tensors and plain data only) and rebuilt by
`load_stitched(path)`.

Each stitch may carry its own BatchNorm statistics (`bn_stats`, measured on its own path after
training): the blocks of an anchor see other activations behind a stitching layer than in the
anchor itself, and `set_stitch` puts the statistics of the chosen stitch in place.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from estimators.checkpoints import arch_of, describe_space, load_weights
from estimators.files import atomic_write_bytes
from estimators.train import resize_batch
from nas.stitch.anchors import Anchor
from nas.stitch.cuts import Stitch
from nas.stitch.layers import StitchLayer, make_layer
from nas.stitch.settings import StitchError
from search_spaces import first_line
from search_spaces.ops import Cost, block_out_shape

FORMAT = "nas.stitch"
VERSION = 1
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class StitchedNetwork(nn.Module):
    """Anchors (nn.Sequential networks of blocks) joined by stitching layers; `forward` runs
    the active stitch, or, in training mode with a `sampler`, the stitch it draws."""

    def __init__(self, anchors: list[nn.Module], resolutions: list[int], plan: list[Stitch],
                 layers: dict[int, StitchLayer], names: list[str],
                 costs: list[dict[str, float]]):
        super().__init__()
        self.anchors = nn.ModuleList(anchors)
        self.layers = nn.ModuleDict({str(i): layer for i, layer in layers.items()})
        self.resolutions = list(resolutions)  # each anchor's input size
        self.plan, self.names, self.costs = list(plan), list(names), list(costs)
        self.active = 0
        self.sampler: Callable[[], int] | None = None
        self.bn_stats: dict[int, dict[str, torch.Tensor]] = {}

    def stitches(self) -> list[dict[str, Any]]:
        """Every stitch: index, name, flops, params (anchors first, by FLOPs)."""
        return [{"index": i, "name": self.names[i], "flops": c["flops"], "params": c["params"]}
                for i, c in enumerate(self.costs)]

    def set_stitch(self, index: int) -> StitchedNetwork:
        """Run stitch `index` from now on (with its BatchNorm statistics, if it has any)."""
        if isinstance(index, bool) or not isinstance(index, int) or \
                not 0 <= index < len(self.plan):
            raise StitchError(f"stitch must be an index in 0..{len(self.plan) - 1}, got "
                              f"{index!r}")
        self.active = index
        stats = self.bn_stats.get(index)
        if stats:
            buffers = dict(self.named_buffers())
            with torch.no_grad():
                for name, value in stats.items():
                    buffers[name].copy_(value)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = self.sampler() if self.training and self.sampler is not None else self.active
        return self.run(index, x)

    def run(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Stitch `index` on `x` (resized to its front anchor's input size)."""
        stitch = self.plan[index]
        x = resize_batch(x, self.resolutions[stitch.front])
        for _, block in self.path(index):
            x = block(x)
        return x

    def path(self, index: int) -> list[tuple[str, nn.Module]]:
        """The modules stitch `index` runs, in order, with their names in this module."""
        s = self.plan[index]
        front = [(f"anchors.{s.front}.{k}", b) for k, b in enumerate(self.anchors[s.front])]
        if s.is_anchor:
            return front
        back = [(f"anchors.{s.back}.{k}", b) for k, b in enumerate(self.anchors[s.back])]
        return front[:s.cut + 1] + [(f"layers.{index}", self.layers[str(index)])] + \
            back[s.resume:]

    def path_norms(self, index: int) -> dict[str, nn.modules.batchnorm._BatchNorm]:
        """The BatchNorm layers on stitch `index`'s path, by name."""
        return {f"{prefix}.{name}" if name else prefix: module
                for prefix, block in self.path(index)
                for name, module in block.named_modules()
                if isinstance(module, nn.modules.batchnorm._BatchNorm)}


def stitch_cost(anchors: list[Anchor], stitch: Stitch, layer: StitchLayer | None) -> Cost:
    """FLOPs and parameters as the engine counts them (docs/stitch.md): the blocks of the front
    up to the cut and of the back from the resume point, plus the stitching layer between the
    shapes those blocks have at the architectures' own resolution."""
    front = anchors[stitch.front]
    if stitch.is_anchor or layer is None:
        return front.cost(0, len(front.costs) - 1)
    back = anchors[stitch.back]
    between = layer.cost(block_out_shape(front.specs[stitch.cut]),
                         back.specs[stitch.resume].in_shape)
    return front.cost(0, stitch.cut) + between + back.cost(stitch.resume, len(back.costs) - 1)


def build_stitched(anchors: list[Anchor], plan: list[Stitch], seed: int = 0) -> StitchedNetwork:
    """The family of `plan` over the anchors' own modules (shared, not copied); stitching
    layers made with torch's default initialisation, drawn from `seed`."""
    torch.manual_seed(seed)
    layers = {i: make_layer(anchors[s.front].shapes[s.cut],
                            anchors[s.back].input_shape(s.resume))
              for i, s in enumerate(plan) if not s.is_anchor}
    costs = []
    for i, stitch in enumerate(plan):
        cost = stitch_cost(anchors, stitch, layers.get(i))
        costs.append({"flops": float(cost.macs), "flops_sparse": float(cost.sparse_macs),
                      "params": float(cost.params)})
    return StitchedNetwork([a.model for a in anchors], [a.resolution for a in anchors], plan,
                           layers, [s.describe(anchors) for s in plan], costs)


def save_stitched(network: StitchedNetwork, anchors: list[Anchor], path: str | Path,
                  extra: dict[str, Any] | None = None) -> None:
    """`network` to `path`, atomically: the anchors' descriptions, the plan, the layers'
    shapes, every weight and each stitch's BatchNorm statistics."""
    layers = {i: network.layers[str(i)] for i in range(len(network.plan))
              if str(i) in network.layers}
    payload = {
        "format": FORMAT, "version": VERSION,
        "anchors": [{"space": describe_space(a.arch.search_space), "key": a.arch.key,
                     "num_classes": a.info["num_classes"], "in_channels": a.info["in_channels"],
                     "resolution": a.resolution, "path": str(a.path)} for a in anchors],
        "plan": [s.to_json() for s in network.plan], "names": network.names,
        "costs": network.costs, "active": network.active,
        "layer_shapes": {str(i): [list(l.in_shape), list(l.out_shape)]
                         for i, l in layers.items()},
        "state_dict": {k: v.detach().cpu().clone() for k, v in network.state_dict().items()},
        "bn_stats": {str(i): {k: v.cpu() for k, v in s.items()}
                     for i, s in network.bn_stats.items()},
        **dict(extra or {})}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_stitched(path: str | Path) -> StitchedNetwork:
    """The stitched network `save_stitched` wrote (in eval mode, its saved stitch active)."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise StitchError(f"stitched network {path} does not exist") from None
    except Exception as exc:  # a folder, an empty, truncated or foreign file
        raise StitchError(f"cannot read stitched network {path}: {first_line(exc)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise StitchError(f"{path} is not a stitched network written by `nas stitch`")
    if payload.get("version") != VERSION:
        raise StitchError(f"{path} is a stitched network of version {payload.get('version')!r}; "
                          f"this version reads {VERSION}")
    try:
        anchors = []
        for described in payload["anchors"]:
            arch = arch_of(described, path)
            model = arch.search_space.build(arch, num_classes=described["num_classes"],
                                            in_channels=described["in_channels"])
            anchors.append(model)
        plan = [Stitch(*item) for item in payload["plan"]]
        layers = {int(i): make_layer(tuple(a), tuple(b))
                  for i, (a, b) in payload["layer_shapes"].items()}
        network = StitchedNetwork(anchors, [a["resolution"] for a in payload["anchors"]], plan,
                                  layers, list(payload["names"]), list(payload["costs"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise StitchError(f"{path} is damaged: {type(exc).__name__} {first_line(exc)}") from None
    load_weights(network, payload["state_dict"], path)
    network.bn_stats = {int(i): dict(s) for i, s in payload.get("bn_stats", {}).items()}
    return network.eval().set_stitch(int(payload.get("active", 0)))


__all__ = ["FORMAT", "VERSION", "StitchedNetwork", "build_stitched", "load_stitched",
           "save_stitched", "stitch_cost"]
