"""Per-block features for learning a device from whole-network measurements.

Each block is summarised by what drives time on any hardware: one launch of the block, how
many compute layers it runs (`layers`, counted on a build on the `meta` device: no memory,
no initialisation), its multiply-accumulates, the activation elements it reads and
writes at its boundary (`io_elems`) and inside (`inner_elems`: the expanded tensors of an
MBConv), and its weights. A network's features are these summed per stage (the prefix of the
block name: `stem`, `stage1`, `head`...), so all blocks of a stage share coefficients across
kernel sizes, expand ratios and resolutions: that sharing is what lets ~100 networks suffice.
A `table_ms` statistic reads a block's entry in this machine's lookup table instead.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from search_spaces import Arch, BlockSpec, SearchSpace
from search_spaces.ops import block_cost, block_out_shape

STATS = ("blocks", "layers", "macs", "io_elems", "inner_elems", "params")
TABLE_STAT = "table_ms"  # the block's entry in a local lookup table (this machine's latency)
_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.LayerNorm, nn.MaxPool2d, nn.AvgPool2d,
           nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.GELU, nn.SiLU, nn.Sigmoid,
           nn.MultiheadAttention)


def layer_count(spec: BlockSpec) -> int:
    """Compute layers a block runs (its modules built on `meta`: no memory, no init)."""
    from search_spaces.ops import build_block

    with torch.device("meta"):
        block = build_block(spec)
    return sum(isinstance(m, _LAYERS) for m in block.modules())


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
    return (1.0, float(layer_count(spec)), float(cost.macs), io,
            inner_elems(spec, out), float(cost.params))


def stage_of(spec: BlockSpec) -> str:
    """The stage a block belongs to: its name up to the first '.' (the op if unnamed)."""
    return (spec.name or spec.op).split(".")[0]


@lru_cache(maxsize=50_000)
def _arch_stages(space: SearchSpace, arch: Arch, num_classes: int | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(stage_of(s) for s in space.blocks(arch, num_classes)))


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
    """Per-stage sums of chosen block statistics."""

    def __init__(self, space: SearchSpace, stats: Sequence[str], stages: Sequence[str],
                 num_classes: int | None = None, table: dict[str, float] | None = None):
        unknown = [s for s in stats if s not in STATS and s != TABLE_STAT]
        if unknown or (TABLE_STAT in stats and table is None):
            raise ValueError(f"stats {list(stats)}: each must be one of {STATS} or "
                             f"{TABLE_STAT!r} (which needs a table)")
        self.space = space
        self.stats = tuple(stats)
        self.stages = tuple(stages)
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

    @property
    def names(self) -> list[str]:
        return [f"{stage}.{stat}" for stage in self.stages for stat in self.stats]

    def vector(self, arch: Arch) -> np.ndarray:
        full = stage_stats(self.space, arch, self.stages, self.num_classes)
        out = np.zeros((len(self.stages), len(self.stats)))
        for j, i in enumerate(self._pick):
            out[:, j] = full[:, i] if i >= 0 else self._table_column(arch)
        return out.ravel()

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
