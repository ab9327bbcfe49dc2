"""Per-block features for learning a device from whole-network measurements.

Each block is summarised by what drives time on any hardware: one launch of the block, how
many compute layers it runs, its multiply-accumulates, the activation elements it reads and
writes at its boundary (`io_elems`) and inside (`inner_elems`: the expanded tensors of an
MBConv), and its weights. A network's features are these summed per stage (the prefix of the
block name: `stem`, `stage1`, `head`...), so all blocks of a stage share coefficients across
kernel sizes, expand ratios and resolutions: that sharing is what lets ~100 networks suffice.

Two further kinds of column: `kinds` adds, network-wide, how many layers of each kind the
network runs (`conv3x3`, `conv1x1`, `conv_dw5x5`, `AvgPool2d`, ...: counted on a build on the
`meta` device, no memory, no initialisation), which separates what a block's totals mix up
(a cell with a pooling edge and one with a skip edge can have equal MACs and layer counts);
`table_ms` reads a block's entry in this machine's lookup table.
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from search_spaces import Arch, BlockSpec, SearchSpace
from search_spaces.ops import block_cost, block_out_shape

STATS = ("blocks", "layers", "macs", "io_elems", "inner_elems", "params")
TABLE_STAT = "table_ms"  # the block's entry in a local lookup table (this machine's latency)
KINDS = "kinds"  # network-wide layer counts by kind
_NOT_LAYERS = (nn.Identity, nn.Dropout, nn.Flatten)


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        k = "x".join(map(str, module.kernel_size))
        if module.groups > 1 and module.groups == module.in_channels:
            return f"conv_dw{k}"
        return f"conv{k}" + (f"_g{module.groups}" if module.groups > 1 else "")
    return type(module).__name__


@lru_cache(maxsize=200_000)
def layer_kinds(spec: BlockSpec) -> tuple[tuple[str, int], ...]:
    """(kind, count) of the layers a block runs: its leaf modules (and attention modules),
    identity-like ones excluded; built on `meta` (no memory, no initialisation)."""
    from search_spaces.ops import build_block

    with torch.device("meta"):
        block = build_block(spec)
    counts: Counter[str] = Counter()
    inside_attention = {id(m) for a in block.modules() if isinstance(a, nn.MultiheadAttention)
                        for m in a.modules() if m is not a}
    for module in block.modules():
        leaf = not any(module.children()) or isinstance(module, nn.MultiheadAttention)
        if leaf and not isinstance(module, _NOT_LAYERS) and id(module) not in inside_attention:
            counts[_kind(module)] += 1
    return tuple(sorted(counts.items()))


def inner_elems(spec: BlockSpec, out_shape: tuple[int, ...]) -> float:
    if spec.op != "mbconv":
        return 0.0
    a = spec.kwargs
    hw_in = int(np.prod(spec.in_shape[1:]))
    hw_out = int(np.prod(out_shape[1:]))
    return float(a["mid"] * (hw_in if a.get("expand", True) else 0) + a["mid"] * hw_out)


@lru_cache(maxsize=200_000)
def block_stats(spec: BlockSpec) -> tuple[float, ...]:
    """(blocks, layers, macs, io_elems, inner_elems, params) of one block at batch 1."""
    cost = block_cost(spec)
    out = block_out_shape(spec)
    io = float(np.prod(spec.in_shape) + np.prod(out))
    layers = float(sum(n for _, n in layer_kinds(spec)))
    return (1.0, layers, float(cost.macs), io, inner_elems(spec, out), float(cost.params))


def stage_of(spec: BlockSpec) -> str:
    """The stage a block belongs to: its name up to the first '.' (the op if unnamed)."""
    return (spec.name or spec.op).split(".")[0]


@lru_cache(maxsize=50_000)
def _arch_stages(space: SearchSpace, arch: Arch, num_classes: int | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(stage_of(s) for s in space.blocks(arch, num_classes)))


@lru_cache(maxsize=50_000)
def arch_kinds(space: SearchSpace, arch: Arch, num_classes: int | None) -> dict[str, int]:
    """Layer counts by kind over the whole network."""
    counts: Counter[str] = Counter()
    for spec in space.blocks(arch, num_classes):
        counts.update(dict(layer_kinds(spec)))
    return dict(counts)


@lru_cache(maxsize=50_000)
def stage_stats(space: SearchSpace, arch: Arch, stages: tuple[str, ...],
                num_classes: int | None) -> np.ndarray:
    """All block statistics of `arch` summed per stage (rows in `stages` order); blocks of a
    stage not in `stages` are left out (no coefficient was fitted for them)."""
    position = {s: i for i, s in enumerate(stages)}
    out = np.zeros((len(stages), len(STATS)))
    for spec in space.blocks(arch, num_classes):
        pos = position.get(stage_of(spec))
        if pos is not None:
            out[pos] += block_stats(spec)
    out.flags.writeable = False
    return out


class StageFeatures:
    """Per-stage sums of chosen block statistics, then (with `kinds`) network-wide layer
    counts of the given kinds."""

    def __init__(self, space: SearchSpace, stats: Sequence[str], stages: Sequence[str],
                 num_classes: int | None = None, table: dict[str, float] | None = None,
                 kinds: Sequence[str] = ()):
        per_stage = [s for s in stats if s != KINDS]
        unknown = [s for s in per_stage if s not in STATS and s != TABLE_STAT]
        if unknown or (TABLE_STAT in stats and table is None):
            raise ValueError(f"stats {list(stats)}: each must be one of {STATS}, {KINDS!r} "
                             f"or {TABLE_STAT!r} (which needs a table)")
        self.space = space
        self.stats = tuple(per_stage)
        self.stages = tuple(stages)
        self.kinds = tuple(kinds) if KINDS in stats else ()
        self.num_classes = num_classes
        self.table = table or {}
        self._stage_pos = {s: i for i, s in enumerate(self.stages)}
        self._pick = [STATS.index(s) if s != TABLE_STAT else -1 for s in self.stats]

    @staticmethod
    def stages_of(space: SearchSpace, archs: Iterable[Arch],
                  num_classes: int | None = None) -> list[str]:
        """Stage names in order of first appearance over `archs`."""
        order: dict[str, None] = {}
        for arch in archs:
            for stage in _arch_stages(space, arch, num_classes):
                order.setdefault(stage, None)
        return list(order)

    @staticmethod
    def kinds_of(space: SearchSpace, archs: Iterable[Arch],
                 num_classes: int | None = None) -> list[str]:
        """Layer kinds found in `archs`, sorted."""
        found: set[str] = set()
        for arch in archs:
            found.update(arch_kinds(space, arch, num_classes))
        return sorted(found)

    @property
    def names(self) -> list[str]:
        return ([f"{stage}.{stat}" for stage in self.stages for stat in self.stats]
                + [f"layers.{kind}" for kind in self.kinds])

    def vector(self, arch: Arch) -> np.ndarray:
        full = stage_stats(self.space, arch, self.stages, self.num_classes)
        out = np.zeros((len(self.stages), len(self.stats)))
        for j, i in enumerate(self._pick):
            out[:, j] = full[:, i] if i >= 0 else self._table_column(arch)
        if not self.kinds:
            return out.ravel()
        counts = arch_kinds(self.space, arch, self.num_classes)
        return np.concatenate([out.ravel(), [float(counts.get(k, 0)) for k in self.kinds]])

    def _table_column(self, arch: Arch) -> np.ndarray:
        column = np.zeros(len(self.stages))
        for spec in self.space.blocks(arch, self.num_classes):
            pos = self._stage_pos.get(stage_of(spec))
            if pos is not None:
                column[pos] += self.table[spec.signature]
        return column

    def matrix(self, archs: Sequence[Arch]) -> np.ndarray:
        if not archs:
            return np.zeros((0, len(self.names)))
        return np.stack([self.vector(a) for a in archs])
