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

`kernels` describes a network by the kernels it launches. Each block is run once on the `meta`
device under a dispatch recorder, which lists its aten operators (views excluded): convolutions
and matrix products with their multiply-accumulates, everything else (batch norm, activations,
adds, pooling, SE scaling) with the tensor elements it reads and writes. A kernel's time on a
real device is a convex, increasing function of its work: a launch floor while the device is
under-occupied, then throughput- or bandwidth-bound. `KernelFeatures` represents that curve by
hinge functions max(0, work - knot) at knots placed on the training networks' kernels, per
kind of kernel (dense compute, depthwise convolution, memory-bound), summed over the network;
non-negative coefficients on them give exactly the convex increasing piecewise-linear curves.
This is what lets batch-32 GPU columns (floor-bound at small resolutions, compute-bound at
large ones) be fitted from 100 networks by a linear model.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode  # what FlopCounterMode builds on

from estimators.latency.errors import LatencyError
from search_spaces import Arch, BlockSpec, SearchSpace, first_line
from search_spaces.ops import block_cost, block_out_shape

STATS = ("blocks", "layers", "macs", "io_elems", "inner_elems", "params")
TABLE_STAT = "table_ms"  # the block's entry in a local lookup table (this machine's latency)
KINDS = "kinds"  # network-wide layer counts by kind
KERNELS = "kernels"  # network-wide hinge features of kernel work, per kernel category
KERNEL_CATEGORIES = ("compute", "depthwise", "memory")
KNOT_QUANTILES = (0.2, 0.4, 0.6, 0.8)
_NOT_LAYERS = (nn.Identity, nn.Dropout, nn.Flatten)


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        k = "x".join(map(str, module.kernel_size))
        if module.groups > 1 and module.groups == module.in_channels:
            return f"conv_dw{k}"
        return f"conv{k}" + (f"_g{module.groups}" if module.groups > 1 else "")
    return type(module).__name__


class _Recorder(TorchDispatchMode):
    """Records every aten call (operator, arguments, result) made under it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, tuple, Any]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        self.calls.append((func, args, out))
        return out


_NOT_KERNELS = {"empty", "empty_like", "empty_strided", "detach", "alias", "lift_fresh"}
_MATMULS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear"}


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _kernel(func: Any, args: tuple, out: Any) -> tuple[str, float] | None:
    """(category, work) of one aten call: MACs for convolutions and matrix products,
    elements read + written otherwise; None for views and allocations."""
    name = func.overloadpacket.__name__
    if getattr(func, "is_view", False) or name in _NOT_KERNELS:
        return None
    outs = _tensors(out)
    if name == "convolution":
        weight = args[1]
        macs = float(outs[0].numel() * weight.shape[1] * int(np.prod(weight.shape[2:])))
        groups = int(args[8]) if len(args) > 8 else 1
        return ("depthwise" if groups > 1 and weight.shape[1] == 1 else "compute"), macs
    if name in _MATMULS:
        inner = args[-2] if name in ("addmm", "baddbmm") else args[0]
        return "compute", float(outs[0].numel() * inner.shape[-1])
    if "scaled_dot_product" in name:  # q (..., L, E), k (..., S, E), v (..., S, Ev)
        q, k, v = args[:3]
        rows = q.numel() // q.shape[-1]
        return "compute", float(rows * k.shape[-2] * (q.shape[-1] + v.shape[-1]))
    elems = sum(t.numel() for t in _tensors(args) + outs)
    return "memory", float(elems)


@lru_cache(maxsize=200_000)
def _trace(spec: BlockSpec) -> tuple[tuple[tuple[str, int], ...],
                                     tuple[tuple[str, float, float], ...] | str]:
    """(layer kinds, kernels) of one block, from one build on the `meta` device (no memory, no
    initialisation) and one eval-mode forward pass there (no arithmetic); in place of the
    kernels, why the forward pass failed."""
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
    kinds = tuple(sorted(counts.items()))
    block.eval()
    recorder = _Recorder()
    try:
        with recorder:  # grad stays on, so attention takes its decomposed path (kernels with MACs)
            block(torch.empty((1, *spec.in_shape), device="meta"))
    except Exception as exc:  # an op without a meta kernel, or data-dependent control flow
        return kinds, f"{type(exc).__name__}: {first_line(exc)}"
    kernels = []
    for func, args, out in recorder.calls:
        kernel = _kernel(func, args, out)
        if kernel is not None:
            elems = sum(t.numel() for t in _tensors(args) + _tensors(out))
            kernels.append((kernel[0], kernel[1], float(elems)))
    return kinds, tuple(kernels)


def layer_kinds(spec: BlockSpec) -> tuple[tuple[str, int], ...]:
    """(kind, count) of the layers a block runs: its leaf modules (and attention modules),
    identity-like ones excluded."""
    return _trace(spec)[0]


def block_kernels(spec: BlockSpec) -> tuple[tuple[str, float, float], ...]:
    """(category, work, elements read + written) of each kernel a block launches at batch 1:
    `compute` (dense/grouped convolutions, matrix products, attention; work = MACs),
    `depthwise` (work = MACs) or `memory` (everything else; work = elements)."""
    kernels = _trace(spec)[1]
    if isinstance(kernels, str):
        raise LatencyError(f"block {spec.signature} cannot run on the meta device, so its "
                           f"kernels are unknown ({kernels}); use a feature set without "
                           f"kernels")
    return kernels


def kernel_knots(specs: Iterable[BlockSpec],
                 quantiles: Sequence[float] = KNOT_QUANTILES) -> dict[str, list[float]]:
    """Per category, quantiles of the work of the kernels of the distinct blocks given."""
    work: dict[str, list[float]] = {c: [] for c in KERNEL_CATEGORIES}
    for spec in set(specs):
        for category, w, _ in block_kernels(spec):
            if w > 0:
                work[category].append(w)
    return {c: sorted({float(q) for q in np.quantile(w, quantiles)}) if w else []
            for c, w in work.items()}


class KernelFeatures:
    """Per category: kernel count, total work and sum of max(0, work - knot) per knot; then
    the elements read and written by the compute and depthwise kernels (their memory traffic).
    A block's vector is computed once and kept, so a network costs one sum over its blocks."""

    def __init__(self, knots: dict[str, Sequence[float]]):
        self.knots = {c: np.asarray(knots.get(c, ()), dtype=float) for c in KERNEL_CATEGORIES}
        self._cache: dict[BlockSpec, np.ndarray] = {}

    @property
    def names(self) -> list[str]:
        out = []
        for c in KERNEL_CATEGORIES:
            out += [f"kernels.{c}.count", f"kernels.{c}.work"]
            out += [f"kernels.{c}.over{k:.4g}" for k in self.knots[c]]
        return out + ["kernels.compute_elems"]

    def block(self, spec: BlockSpec) -> np.ndarray:
        cached = self._cache.get(spec)
        if cached is not None:
            return cached
        kernels = block_kernels(spec)
        parts = []
        for c in KERNEL_CATEGORIES:
            w = np.array([work for cat, work, _ in kernels if cat == c])
            parts += [[float(len(w)), float(w.sum())],
                      np.maximum(w[:, None] - self.knots[c][None, :], 0).sum(axis=0)]
        parts.append([sum(e for cat, _, e in kernels if cat != "memory")])
        vector = np.concatenate(parts)
        self._cache[spec] = vector
        return vector

    def vector(self, specs: Sequence[BlockSpec]) -> np.ndarray:
        return np.sum([self.block(s) for s in specs], axis=0)


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
    counts of the given kinds, then (with `kernels`) network-wide kernel features."""

    def __init__(self, space: SearchSpace, stats: Sequence[str], stages: Sequence[str],
                 num_classes: int | None = None, table: dict[str, float] | None = None,
                 kinds: Sequence[str] = (), knots: dict[str, Sequence[float]] | None = None):
        per_stage = [s for s in stats if s not in (KINDS, KERNELS)]
        unknown = [s for s in per_stage if s not in STATS and s != TABLE_STAT]
        if unknown or (TABLE_STAT in stats and table is None) or \
                (KERNELS in stats and knots is None):
            raise ValueError(f"stats {list(stats)}: each must be one of {STATS}, {KINDS!r}, "
                             f"{KERNELS!r} (which needs knots) or {TABLE_STAT!r} (which needs "
                             f"a table)")
        self.space = space
        self.stats = tuple(per_stage)
        self.stages = tuple(stages)
        self.kinds = tuple(kinds) if KINDS in stats else ()
        self.num_classes = num_classes
        self.table = table or {}
        self.kernels = KernelFeatures(knots or {}) if KERNELS in stats else None
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

    @staticmethod
    def knots_of(space: SearchSpace, archs: Iterable[Arch],
                 num_classes: int | None = None) -> dict[str, list[float]]:
        """Hinge knots for `kernels`: quantiles of kernel work over the blocks of `archs`."""
        return kernel_knots(s for arch in archs for s in space.blocks(arch, num_classes))

    @property
    def names(self) -> list[str]:
        return ([f"{stage}.{stat}" for stage in self.stages for stat in self.stats]
                + [f"layers.{kind}" for kind in self.kinds]
                + (self.kernels.names if self.kernels is not None else []))

    def vector(self, arch: Arch) -> np.ndarray:
        parts = []
        if self.stats:
            full = stage_stats(self.space, arch, self.stages, self.num_classes)
            out = np.zeros((len(self.stages), len(self.stats)))
            for j, i in enumerate(self._pick):
                out[:, j] = full[:, i] if i >= 0 else self._table_column(arch)
            parts.append(out.ravel())
        if self.kinds:
            counts = arch_kinds(self.space, arch, self.num_classes)
            parts.append(np.array([float(counts.get(k, 0)) for k in self.kinds]))
        if self.kernels is not None:
            parts.append(self.kernels.vector(self.space.blocks(arch, self.num_classes)))
        return np.concatenate(parts) if parts else np.zeros(0)

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
