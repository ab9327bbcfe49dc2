"""FBNet (v1) space: the paper's macro-architecture, 22 searchable layers x 9 candidate blocks.

Candidates `k<kernel>_e<expand>[_g<groups>]` are inverted residuals with mid = in * e exactly
(the expansion conv is kept even at e = 1), ReLU, no SE, both 1x1 convs grouped (with a channel
shuffle) when g > 1. `skip` is the identity, or Conv1x1(stride)-BN-ReLU where the layer changes
stride or width (HW-NAS-Bench's convention). The key body is the 22 ops joined by '-', the form
HELP/HW-NAS-Bench data use; a sparse space appends the stage densities: `...@0.25,0.5,...`.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from search_spaces import settings
from search_spaces.arch import Arch, Gene
from search_spaces.errors import InvalidArchError
from search_spaces.ops.common import ACTIVATIONS
from search_spaces.space import BlockSpec, Chain, Dimension, SearchSpace, config_from_dict
from search_spaces.spaces.inverted_residual import DENSITIES

SKIP = "skip"
_OP_FORM = re.compile(r"k([1-9][0-9]*)_e([1-9][0-9]*)(?:_g([1-9][0-9]*))?", re.ASCII)
INACTIVE = "-"  # density token of a stage that is all identity skips (nothing to sparsify)


@dataclass(frozen=True)
class FBNetConfig:
    """Settings of an FBNet-style space (defaults: FBNet v1 on ImageNet, 1504-wide head)."""

    widths: tuple[int, ...] = (16, 24, 32, 64, 112, 184, 352)
    depths: tuple[int, ...] = (1, 4, 4, 4, 4, 4, 1)
    strides: tuple[int, ...] = (1, 2, 2, 2, 1, 2, 1)
    ops: tuple[str, ...] = (SKIP, "k3_e1_g2", "k5_e1_g2", "k3_e1", "k5_e1", "k3_e3", "k5_e3",
                            "k3_e6", "k5_e6")  # cheapest first
    stem: int = 16
    stem_stride: int = 2
    head: int = 1504
    act: str = "relu"
    resolution: int = 224
    dropout: float = 0.0
    classes: int = 1000

    def __post_init__(self) -> None:
        widths = settings.int_list("widths", self.widths, sort=False)
        n = len(widths)
        fields_: dict[str, Any] = {
            "widths": widths,
            "depths": settings.int_list("depths", self.depths, 1, settings.MAX_DEPTH,
                                        length=n, sort=False),
            "strides": settings.int_list("strides", self.strides, 1, settings.MAX_STRIDE,
                                         length=n, sort=False),
            "ops": _check_ops(self.ops),
            "stem": settings.int_value("stem", self.stem),
            "stem_stride": settings.int_value("stem_stride", self.stem_stride, 1,
                                              settings.MAX_STRIDE),
            "head": settings.int_value("head", self.head),
            "act": settings.choice("act", self.act, ACTIVATIONS),
            "resolution": settings.int_value("resolution", self.resolution, 1,
                                             settings.MAX_RESOLUTION),
            "dropout": settings.float_value("dropout", self.dropout, 0.0, 1.0),
            "classes": settings.int_value("classes", self.classes, 1, settings.MAX_CLASSES),
        }
        for name, value in fields_.items():
            object.__setattr__(self, name, value)
        _check_groups(self)


def _check_ops(ops: Any) -> tuple[str, ...]:
    """Distinct candidates, `skip` or k<odd kernel>_e<expand>[_g<groups>] (ASCII digits)."""
    form = f"'skip' or k<odd kernel 1..{settings.MAX_KERNEL}>_e<expand 1..64>[_g<groups>]"
    items = settings.as_list(ops)
    if not items:
        raise ValueError(f"ops must be a non-empty list of {form}")
    for op in items:
        if op == SKIP:
            continue
        match = _OP_FORM.fullmatch(op) if isinstance(op, str) else None
        if match is None:
            raise ValueError(f"ops: {op!r} is not {form}")
        kernel, expand = int(match.group(1)), int(match.group(2))
        if kernel % 2 == 0 or kernel > settings.MAX_KERNEL or expand > settings.MAX_RATIO \
                or int(match.group(3) or 1) > settings.MAX_CHANNELS:
            raise ValueError(f"ops: {op!r} is not {form}")
    if len(set(items)) != len(items):
        raise ValueError(f"ops must not repeat a candidate, got {items}")
    return tuple(items)


def _check_groups(config: FBNetConfig) -> None:
    """A grouped candidate must divide every width it sees (input, expanded, output)."""
    width = config.stem
    for out, depth in zip(config.widths, config.depths):
        for _ in range(depth):
            for op in config.ops:
                if op == SKIP:
                    continue
                groups = parse_op(op)[2]
                if groups > 1 and (width % groups or out % groups):
                    raise ValueError(f"ops: {op!r} needs widths divisible by {groups}, but a "
                                     f"layer goes from {width} to {out} channels")
            width = out


def parse_op(op: str) -> tuple[int, int, int]:
    """(kernel, expand, groups) of a candidate name like `k5_e1_g2`."""
    match = _OP_FORM.fullmatch(op)
    if match is None:
        raise ValueError(f"{op!r} is not k<kernel>_e<expand>[_g<groups>]")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 1)


class FBNetSpace(SearchSpace):
    """One candidate block per layer over a fixed macro-architecture."""

    supernet_style = "elastic"

    def __init__(self, name: str, config: FBNetConfig, sparse: bool = False):
        self.name = name
        self.config = config
        self.sparse = sparse
        self.default_classes = config.classes
        self.layers = self._layer_plan()
        self.dimensions = tuple(self._dimensions())

    # --- layout -------------------------------------------------------------------------------
    def _layer_plan(self) -> list[tuple[int, int, int, int]]:
        """(stage, input width, output width, stride) of every searchable layer."""
        cfg, plan, width = self.config, [], self.config.stem
        for stage, (out, depth, stride) in enumerate(zip(cfg.widths, cfg.depths, cfg.strides), 1):
            for j in range(depth):
                plan.append((stage, width, out, stride if j == 0 else 1))
                width = out
        return plan

    def _dimensions(self) -> Iterator[Dimension]:
        for i in range(1, len(self.layers) + 1):
            yield Dimension(f"l{i}", self.config.ops)
        if self.sparse:
            for stage in range(1, len(self.config.widths) + 1):
                yield Dimension(f"density{stage}", DENSITIES)

    def _is_identity(self, layer: int, op: Gene) -> bool:
        _, cin, out, stride = self.layers[layer]
        return op == SKIP and stride == 1 and cin == out

    def canonical(self, genes: dict[str, Gene]) -> dict[str, Gene]:
        """A stage whose layers are all identity skips has no density to choose."""
        missing = [f"l{i}" for i in range(1, len(self.layers) + 1) if genes.get(f"l{i}") is None]
        if missing:
            raise InvalidArchError(f"{self.name}: layers {missing} have no op")
        if not self.sparse:
            return genes
        genes = dict(genes)
        for stage in range(1, len(self.config.widths) + 1):
            if self._all_identity(stage, genes):
                genes[f"density{stage}"] = None
            elif genes.get(f"density{stage}") is None:
                raise InvalidArchError(f"{self.name}: stage {stage} has convs but no density")
        return genes

    def contains(self, arch: Arch) -> bool:
        try:
            return super().contains(arch)
        except InvalidArchError:
            return False

    def _stage_layers(self, stage: int) -> list[int]:
        return [i for i, plan in enumerate(self.layers) if plan[0] == stage]

    def _all_identity(self, stage: int, genes: dict[str, Gene]) -> bool:
        return all(self._is_identity(i, genes.get(f"l{i + 1}")) for i in self._stage_layers(stage))

    def log10_size(self) -> float:
        if not self.sparse:
            return super().log10_size()
        total, ops = 0.0, len(self.config.ops)
        for stage in range(1, len(self.config.widths) + 1):
            layers = self._stage_layers(stage)
            all_identity = int(all(self._is_identity(i, SKIP) for i in layers)
                               and SKIP in self.config.ops)
            total += math.log10((ops ** len(layers) - all_identity) * len(DENSITIES)
                                + all_identity)
        return total

    # --- the network --------------------------------------------------------------------------
    def input_size(self, arch: Arch) -> int:
        return self.config.resolution

    def blocks(self, arch: Arch, num_classes: int | None = None,
               in_channels: int | None = None) -> list[BlockSpec]:
        cfg = self.config
        size = cfg.resolution
        chain = Chain((in_channels or self.default_channels, size, size))
        chain.add("conv_bn_act", "stem", out=cfg.stem, k=3, stride=cfg.stem_stride, act=cfg.act)
        seen: dict[int, int] = {}
        for i, (stage, *_) in enumerate(self.layers):
            seen[stage] = seen.get(stage, -1) + 1
            self._add_layer(chain, arch, i, f"stage{stage}.{seen[stage]}")
        chain.add("conv_bn_act", "head.conv", out=cfg.head, k=1, act=cfg.act)
        chain.add("global_pool", "head.pool")
        chain.add("classifier", "classifier", classes=num_classes or self.default_classes,
                  dropout=cfg.dropout)
        return chain.specs

    def _add_layer(self, chain: Chain, arch: Arch, layer: int, name: str) -> None:
        stage, cin, out, stride = self.layers[layer]
        op = arch[f"l{layer + 1}"]
        extra: dict[str, Any] = {}
        density = arch[f"density{stage}"] if self.sparse else None
        if density is not None and density < 1.0:
            extra["density"] = density
        if self._is_identity(layer, op):
            chain.add("skip", name)
        elif op == SKIP:
            chain.add("conv_bn_act", name, out=out, k=1, stride=stride, act=self.config.act,
                      **extra)
        else:
            k, e, groups = parse_op(op)
            if groups > 1:
                extra["groups"] = groups
            chain.add("mbconv", name, out=out, mid=cin * e, k=k, stride=stride,
                      act=self.config.act, **extra)

    # --- keys ---------------------------------------------------------------------------------
    def encode(self, arch: Arch) -> str:
        body = "-".join(str(arch[f"l{i}"]) for i in range(1, len(self.layers) + 1))
        if self.sparse:
            densities = (arch[f"density{s}"] for s in range(1, len(self.config.widths) + 1))
            body += "@" + ",".join(INACTIVE if d is None else str(d) for d in densities)
        return body

    def decode(self, body: str) -> Arch:
        text = body.strip()
        genes: dict[str, Gene] = {}
        if self.sparse:
            text, sep, densities = text.rpartition("@")
            if not sep:
                self.bad_key(body, "no '@<densities>' part")
            genes.update(self._decode_densities(body, densities))
        ops = text.split("-")
        if len(ops) != len(self.layers):
            self.bad_key(body, f"{len(ops)} ops, expected {len(self.layers)}")
        for i, op in enumerate(ops, 1):
            if op not in self.config.ops:
                self.bad_key(body, f"op {op!r} is not one of {list(self.config.ops)}")
            genes[f"l{i}"] = op
        for stage in range(1, len(self.config.widths) + 1):
            if self.sparse and genes[f"density{stage}"] is None \
                    and not self._all_identity(stage, genes):
                self.bad_key(body, f"stage {stage} has convs, so it needs a density, not '-'")
        return self.make(genes)

    def _decode_densities(self, body: str, text: str) -> dict[str, Gene]:
        tokens = text.split(",")
        stages = len(self.config.widths)
        if len(tokens) != stages:
            self.bad_key(body, f"{len(tokens)} densities, expected {stages}")
        options = {str(d): d for d in DENSITIES}
        genes: dict[str, Gene] = {}
        for stage, token in enumerate(tokens, 1):
            if token != INACTIVE and token not in options:
                self.bad_key(body, f"density {token!r} is not one of {list(options)} or '-'")
            genes[f"density{stage}"] = options.get(token)
        return genes

    # --- named networks -----------------------------------------------------------------------
    def from_ops(self, ops: list[str]) -> Arch:
        """The dense arch with these layer ops."""
        genes: dict[str, Gene] = {f"l{i}": op for i, op in enumerate(ops, 1)}
        if self.sparse:
            genes.update({f"density{s}": 1.0 for s in range(1, len(self.config.widths) + 1)})
        return self.make(genes)

    def reference_archs(self) -> dict[str, Arch]:
        """`all_<op>`: every layer the same candidate (REFERENCE_ARCHS.md section 4, verified
        counts). `fbnet_b`: FBNet-B as listed in the maskrcnn-benchmark-format FBNet model defs
        (`block_op_type`; facebookresearch/mobile-vision differs at layer 11: k5_e6). Its count
        is UNVERIFIED: it gives 4,163,128 params / 287.86 M MACs with the 1504 head, and no
        public layer list reproduces the paper's 4.5 M params / 295 M FLOPs."""
        refs = {f"all_{op}": self.from_ops([op] * len(self.layers)) for op in self.config.ops}
        default = FBNetConfig()
        same_macro = (self.config.widths, self.config.depths, self.config.strides) == (
            default.widths, default.depths, default.strides)
        if same_macro and set(FBNET_B) <= set(self.config.ops):
            refs["fbnet_b"] = self.from_ops(list(FBNET_B))
        return refs


FBNET_B: tuple[str, ...] = (
    "k3_e1",
    "k3_e6", "k5_e1", "k3_e1", "k3_e1",
    "k5_e6", "k5_e3", "k3_e6", "k5_e6",
    "k5_e6", "k5_e1", "skip", "k5_e3",
    "k5_e6", "k3_e1", "k5_e1", "k5_e3",
    "k5_e6", "k5_e1", "k5_e6", "k5_e6",
    "k3_e6",
)

# The family's own description (read by the registry): `<name>-sparse` adds per-stage
# weight density to its conv/linear layers.
SPARSE_VARIANT = True

PRESETS: dict[str, dict[str, Any]] = {
    "fbnet": {
        "widths": [16, 24, 32, 64, 112, 184, 352], "depths": [1, 4, 4, 4, 4, 4, 1],
        "strides": [1, 2, 2, 2, 1, 2, 1],
        "ops": ["skip", "k3_e1_g2", "k5_e1_g2", "k3_e1", "k5_e1", "k3_e3", "k5_e3", "k3_e6",
                "k5_e6"],
        "stem": 16, "stem_stride": 2, "head": 1504, "act": "relu", "resolution": 224,
        "dropout": 0.0, "classes": 1000,
    },
}


def create(name: str, config: dict[str, Any], sparse: bool) -> FBNetSpace:
    return FBNetSpace(name, config_from_dict(FBNetConfig, name, config), sparse)
