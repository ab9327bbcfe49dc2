"""Inverted-residual (MBConv) spaces: Once-for-All MobileNetV3 ("mobile") and MobileNetV2.

One parametrised space: a stem conv, an optional fixed t=1 block, searchable stages (depth per
stage, kernel and expand ratio per block), a head conv, and either a plain classifier
(MobileNetV2) or OFA's feature-mix conv on the pooled map before it. Key bodies read like
timm block strings, one '-'-separated part per stage and '.' between blocks:
`r204-k7e6.k5e4-k7e6.k7e3-...` (mobile), `w1.0-r224-k3e6.k3e6-...` (mobilenetv2); a sparse
space adds the stage density after '@': `...-k7e6.k5e4@0.5-...`; a space that offers several
normalization-activation kinds (`norms`, see norm_gene.py) adds the network's after the
resolution: `r204-evonorm_s0-k7e6.k5e4-...`.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

from search_spaces import settings
from search_spaces.arch import Arch, Gene
from search_spaces.errors import InvalidArchError
from search_spaces.keys import block_tokens, split_density, stage_blocks
from search_spaces.ops.common import ACTIVATIONS
from search_spaces.ops.inverted_residual import make_divisible
from search_spaces.ops.norm import DEFAULT_NORM
from search_spaces.space import BlockSpec, Chain, Dimension, SearchSpace, config_from_dict
from search_spaces.spaces import ofa_json
from search_spaces.spaces.norm_gene import (
    NORM,
    decode_norm,
    encode_norm,
    network_norm,
    norm_args,
    norm_dimensions,
    norm_options,
    reference_genes,
)

DENSITIES: tuple[float, ...] = (0.25, 0.5, 1.0)  # sparse variants: cheapest first
CHANNEL_DIVISOR = 8


@dataclass(frozen=True)
class InvertedResidualConfig:
    """Settings of an inverted-residual space (defaults: the OFA MobileNetV3 space)."""

    widths: tuple[int, ...] = (24, 40, 80, 112, 160)  # output width of each searchable stage
    strides: tuple[int, ...] = (2, 2, 2, 1, 2)  # stride of each stage's first block
    acts: tuple[str, ...] = ("relu", "relu", "hswish", "hswish", "hswish")
    se: tuple[bool, ...] = (False, True, False, True, True)  # squeeze-excite per stage
    depths: tuple = ((2, 3, 4),) * 5  # depth options per stage (or one list for all)
    kernels: tuple[int, ...] = (3, 5, 7)
    expands: tuple[float, ...] = (3, 4, 6)
    resolutions: tuple[int, ...] = tuple(range(128, 225, 4))
    width_mults: tuple[float, ...] = (1.0,)
    stem: int = 16
    stem_act: str = "hswish"
    first: int = 16  # width of the fixed expand-ratio-1 block after the stem (0: none)
    first_act: str = "relu"
    mid_divisor: int = 8  # mid = make_divisible(round(in * e), mid_divisor); 1: no rounding
    se_reduction: int = 4  # SE width = make_divisible(mid // se_reduction, 8)
    head: int = 960  # 1x1 conv + BN + act before pooling (x max(1, w))
    head_act: str = "hswish"
    mix: int = 1280  # OFA feature mix: 1x1 conv + act on the pooled map, no BN (0: none)
    mix_act: str = "hswish"
    dropout: float = 0.1
    classes: int = 1000
    norms: tuple[str, ...] = (DEFAULT_NORM,)  # normalization-activation kinds (ops.norm.NORMS)

    def __post_init__(self) -> None:
        widths = settings.int_list("widths", self.widths, sort=False)
        n = len(widths)
        fields_: dict[str, Any] = {
            "widths": widths,
            "strides": settings.int_list("strides", self.strides, 1, settings.MAX_STRIDE,
                                         length=n, sort=False),
            "acts": settings.name_list("acts", self.acts, ACTIVATIONS, length=n),
            "se": _bools("se", self.se, n),
            "depths": _depths(self.depths, n),
            "kernels": settings.int_list("kernels", self.kernels, 1, settings.MAX_KERNEL,
                                         odd=True),
            "expands": settings.number_list("expands", self.expands),
            "resolutions": settings.int_list("resolutions", self.resolutions, 1,
                                             settings.MAX_RESOLUTION),
            "width_mults": settings.number_list("width_mults", self.width_mults, 0.0,
                                                settings.MAX_WIDTH_MULT),
            "stem": settings.int_value("stem", self.stem),
            "first": settings.int_value("first", self.first, 0),
            "mid_divisor": settings.int_value("mid_divisor", self.mid_divisor, 1, 256),
            "se_reduction": settings.int_value("se_reduction", self.se_reduction, 1, 256),
            "head": settings.int_value("head", self.head),
            "mix": settings.int_value("mix", self.mix, 0),
            "dropout": settings.float_value("dropout", self.dropout, 0.0, 1.0),
            "classes": settings.int_value("classes", self.classes, 1, settings.MAX_CLASSES),
            "norms": norm_options(self.norms),
        }
        for name in ("stem_act", "first_act", "head_act", "mix_act"):
            fields_[name] = settings.choice(name, getattr(self, name), ACTIVATIONS)
        for name, value in fields_.items():
            object.__setattr__(self, name, value)


def _bools(field: str, values: Any, n: int) -> tuple[bool, ...]:
    items = settings.as_list(values)
    if len(items) != n:
        raise ValueError(f"{field} needs one entry per stage ({n}), got {len(items)}")
    return tuple(settings.bool_value(f"{field}[{i}]", v) for i, v in enumerate(items))


def _depths(depths: Any, n: int) -> tuple[tuple[int, ...], ...]:
    """One option list shared by every stage (`[2, 3, 4]`) or one per stage."""
    items = settings.as_list(depths)
    if items and not any(isinstance(d, (list, tuple)) for d in items):
        return (settings.int_list("depths", items, 1, settings.MAX_DEPTH),) * n
    return settings.nested_int_lists("depths", items, n)


def _structure(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that fix the network's skeleton (everything but the option lists)."""
    options = {"depths", "kernels", "expands", "resolutions", "width_mults", "classes", "norms"}
    made = config_from_dict(InvertedResidualConfig, "", config)
    return {f.name: getattr(made, f.name) for f in fields(made) if f.name not in options}


class InvertedResidualSpace(SearchSpace):
    """Stages of MBConv blocks with elastic depth, kernel and expand ratio (OFA style)."""

    supernet_style = "elastic"

    def __init__(self, name: str, config: InvertedResidualConfig, sparse: bool = False):
        self.name = name
        self.config = config
        self.sparse = sparse
        self.default_classes = config.classes
        self.has_width = len(config.width_mults) > 1
        self.dimensions = tuple(self._dimensions())
        self._tokens = {d.name: {str(o): o for o in d.options} for d in self.dimensions}
        self._refs: dict[str, Arch] | None = None

    # --- dimensions ---------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.config.widths)

    def max_depth(self, stage: int) -> int:
        return self.config.depths[stage - 1][-1]

    def _dimensions(self) -> Iterator[Dimension]:
        cfg = self.config
        if self.has_width:
            yield Dimension("w", cfg.width_mults)
        yield Dimension("r", cfg.resolutions)
        yield from norm_dimensions(cfg.norms)
        for i in range(1, self.num_stages + 1):
            yield Dimension(f"d{i}", cfg.depths[i - 1])
            for j in range(1, self.max_depth(i) + 1):
                yield Dimension(f"k{i}_{j}", cfg.kernels)
                yield Dimension(f"e{i}_{j}", cfg.expands)
        if self.sparse:
            for i in range(1, self.num_stages + 1):
                yield Dimension(f"density{i}", DENSITIES)

    def canonical(self, genes: dict[str, Gene]) -> dict[str, Gene]:
        genes = dict(genes)
        for i in range(1, self.num_stages + 1):
            depth = genes.get(f"d{i}")
            if not isinstance(depth, int):
                raise InvalidArchError(f"{self.name}: depth d{i}={depth!r} is not a number")
            for j in range(1, self.max_depth(i) + 1):
                for gene in (f"k{i}_{j}", f"e{i}_{j}"):
                    if j > depth:
                        genes[gene] = None
                    elif genes.get(gene) is None:
                        raise InvalidArchError(f"{self.name}: {gene} is not set (d{i}={depth})")
        return genes

    def contains(self, arch: Arch) -> bool:
        try:
            return super().contains(arch)
        except InvalidArchError:
            return False

    def log10_size(self) -> float:
        cfg = self.config
        per_block = len(cfg.kernels) * len(cfg.expands)
        total = math.log10(len(cfg.resolutions) * len(cfg.width_mults) * len(cfg.norms))
        for options in cfg.depths:
            total += math.log10(sum(per_block ** d for d in options))
        if self.sparse:
            total += self.num_stages * math.log10(len(DENSITIES))
        return total

    # --- the network --------------------------------------------------------------------------
    def input_size(self, arch: Arch) -> int:
        return int(arch["r"])

    def width_mult(self, arch: Arch) -> float:
        return float(arch["w"]) if self.has_width else float(self.config.width_mults[0])

    def mid_width(self, cin: int, expand: float) -> int:
        """Expanded width of a block: round(in * e), then OFA's make_divisible if configured."""
        mid = max(1, int(round(cin * expand)))  # a small ratio never leaves 0 channels
        return make_divisible(mid, self.config.mid_divisor) if self.config.mid_divisor > 1 else mid

    def blocks(self, arch: Arch, num_classes: int | None = None,
               in_channels: int | None = None) -> list[BlockSpec]:
        cfg = self.config
        w = self.width_mult(arch)
        size = self.input_size(arch)
        chain = Chain((in_channels or self.default_channels, size, size))
        norm = norm_args(network_norm(self, arch))
        chain.add("conv_bn_act", "stem", out=make_divisible(cfg.stem * w), k=3, stride=2,
                  act=cfg.stem_act, **norm)
        if cfg.first:
            chain.add("mbconv", "stage0.0", out=make_divisible(cfg.first * w),
                      mid=chain.shape[0], k=3, stride=1, act=cfg.first_act, expand=False, **norm)
        for i in range(1, self.num_stages + 1):
            self._add_stage(chain, arch, i, w, norm)
        grow = max(1.0, w)  # the head never shrinks below its base width
        chain.add("conv_bn_act", "head.conv", out=make_divisible(cfg.head * grow), k=1,
                  act=cfg.head_act, **norm)
        chain.add("global_pool", "head.pool")
        if cfg.mix:
            chain.add("conv_bn_act", "head.mix", out=make_divisible(cfg.mix * grow), k=1,
                      act=cfg.mix_act, bn=False)
        chain.add("classifier", "classifier", classes=num_classes or self.default_classes,
                  dropout=cfg.dropout)
        return chain.specs

    def _add_stage(self, chain: Chain, arch: Arch, stage: int, w: float,
                   norm: dict[str, Any]) -> None:
        cfg = self.config
        out = make_divisible(cfg.widths[stage - 1] * w)
        extra: dict[str, Any] = dict(norm)
        if self.sparse and arch[f"density{stage}"] < 1.0:
            extra["density"] = arch[f"density{stage}"]
        for j in range(1, int(arch[f"d{stage}"]) + 1):
            mid = self.mid_width(chain.shape[0], arch[f"e{stage}_{j}"])
            if cfg.se[stage - 1]:
                extra["se"] = make_divisible(mid // cfg.se_reduction, CHANNEL_DIVISOR)
            chain.add("mbconv", f"stage{stage}.{j - 1}", out=out, mid=mid,
                      k=arch[f"k{stage}_{j}"], stride=cfg.strides[stage - 1] if j == 1 else 1,
                      act=cfg.acts[stage - 1], **extra)

    # --- keys ---------------------------------------------------------------------------------
    def encode(self, arch: Arch) -> str:
        parts = [f"w{arch['w']}"] if self.has_width else []
        parts += [f"r{arch['r']}", *encode_norm(self, arch)]
        for i in range(1, self.num_stages + 1):
            stage = ".".join(f"k{arch[f'k{i}_{j}']}e{arch[f'e{i}_{j}']}"
                             for j in range(1, int(arch[f"d{i}"]) + 1))
            parts.append(f"{stage}@{arch[f'density{i}']}" if self.sparse else stage)
        return "-".join(parts)

    def decode(self, body: str) -> Arch:
        parts = body.strip().split("-")
        has_norm = NORM in self.dimension_names
        fixed = 1 + self.has_width + has_norm
        if len(parts) != fixed + self.num_stages:
            self.bad_key(body, f"{len(parts)} '-'-separated parts, expected "
                         f"{fixed + self.num_stages}")
        genes: dict[str, Gene] = {}
        if self.has_width:
            genes["w"] = self._gene(body, "w", parts[0], "w")
        genes["r"] = self._gene(body, "r", parts[int(self.has_width)], "r")
        if has_norm:
            genes[NORM] = decode_norm(self, body, parts[fixed - 1])
        for i, text in enumerate(parts[fixed:], 1):
            genes.update(self._decode_stage(body, i, text))
        return self.make(genes)

    def _decode_stage(self, body: str, i: int, text: str) -> dict[str, Gene]:
        genes: dict[str, Gene] = {}
        if self.sparse:
            text, density = split_density(self, body, i, text)
            genes[f"density{i}"] = self._gene(body, f"density{i}", density)
        blocks = stage_blocks(self, body, i, text, "k", self.config.depths[i - 1])
        genes[f"d{i}"] = len(blocks)
        for j, block in enumerate(blocks, 1):
            kernel, expand = block_tokens(self, body, i, block, "k")
            genes[f"k{i}_{j}"] = self._gene(body, f"k{i}_{j}", kernel)
            genes[f"e{i}_{j}"] = self._gene(body, f"e{i}_{j}", expand)
        return genes

    def _gene(self, body: str, name: str, token: str, prefix: str = "") -> Gene:
        if not token.startswith(prefix) or token[len(prefix):] not in self._tokens[name]:
            self.bad_key(body, f"{token!r} is not a valid {name} "
                         f"({prefix}{{{','.join(self._tokens[name])}}})")
        return self._tokens[name][token[len(prefix):]]

    # --- OFA's JSON form ----------------------------------------------------------------------
    def parse(self, text: str) -> Arch:
        """A key, a body, a reference name, or OFA's `{"ks":[..],"e":[..],"d":[..],"r":N}`."""
        if text.strip().startswith("{"):
            return self.from_ofa_json(text)
        return super().parse(text)

    def from_ofa_json(self, text: str) -> Arch:
        """An arch from OFA's subnet JSON (`ks` and `e` per slot, `d` per stage, `r`;
        optional `w` and, for sparse spaces, `density` per stage); inactive slots are ignored."""
        return ofa_json.decode(self, text)

    def to_ofa_json(self, arch: Arch) -> str:
        """OFA's JSON form of `arch`; the slots beyond a stage's depth hold 3."""
        return ofa_json.encode(self, arch)

    # --- named networks -----------------------------------------------------------------------
    def uniform(self, k: int, e: float, depths: tuple[int, ...], r: int,
                w: float = 1.0, norm: str = DEFAULT_NORM) -> Arch:
        """The arch with every block k/e, the given stage depths, resolution and width (dense),
        and `norm` where the space has a norm dimension."""
        genes: dict[str, Gene] = {"r": r}
        if NORM in self.dimension_names:
            genes[NORM] = norm
        if self.has_width:
            genes["w"] = w
        for i, depth in enumerate(depths, 1):
            genes[f"d{i}"] = depth
            for j in range(1, self.max_depth(i) + 1):
                genes[f"k{i}_{j}"], genes[f"e{i}_{j}"] = k, e
            if self.sparse:
                genes[f"density{i}"] = 1.0
        return self.make(genes)

    def reference_archs(self) -> dict[str, Arch]:
        if self._refs is None:
            self._refs = self._make_references()
        return dict(self._refs)

    def _make_references(self) -> dict[str, Arch]:
        """The named networks of every preset whose skeleton this space shares (BatchNorm ones:
        none where the space does not offer `bn_relu`)."""
        refs: dict[str, Arch] = {}
        if reference_genes(self) is None:
            return refs
        for preset, builders in _REFERENCES.items():
            if _structure(PRESETS[preset]) != _structure(
                    {f.name: getattr(self.config, f.name) for f in fields(self.config)}):
                continue
            for ref_name, build in builders.items():
                try:
                    refs[ref_name] = build(self)
                except InvalidArchError:
                    pass  # not expressible with this space's options
        return refs


OFA_SUBNET_204 = ('{"ks":[7,5,5,5,7,7,5,7,5,7,3,7,5,3,7,3,5,3,5,3],'
                  '"e":[6,4,4,6,6,3,4,3,3,6,3,3,3,6,3,4,6,4,3,6],"d":[2,2,2,2,3],"r":204}')


_REFERENCES = {
    "mobile": {
        "ofa_largest": lambda s: s.uniform(7, 6, (4,) * 5, 224),
        "ofa_smallest": lambda s: s.uniform(3, 3, (2,) * 5, 224),
        "ofa_subnet_204": lambda s: s.from_ofa_json(OFA_SUBNET_204),  # dense when sparse
    },
    "mobilenetv2": {
        # torchvision MobileNetV2-1.0: (t, c, n, s) = (6,24,2,2) (6,32,3,2) (6,64,4,2)
        # (6,96,3,1) (6,160,3,2) (6,320,1,1), all 3x3
        "mobilenet_v2": lambda s: s.uniform(3, 6, (2, 3, 4, 3, 3, 1), 224, 1.0),
    },
}

# The family's own description (read by the registry): `<name>-sparse` adds per-stage
# weight density to its conv/linear layers.
SPARSE_VARIANT = True

PRESETS: dict[str, dict[str, Any]] = {
    "mobile": {
        "widths": [24, 40, 80, 112, 160], "strides": [2, 2, 2, 1, 2],
        "acts": ["relu", "relu", "hswish", "hswish", "hswish"],
        "se": [False, True, False, True, True], "depths": [2, 3, 4],
        "kernels": [3, 5, 7], "expands": [3, 4, 6], "resolutions": list(range(128, 225, 4)),
        "width_mults": [1.0], "stem": 16, "stem_act": "hswish", "first": 16,
        "first_act": "relu", "mid_divisor": 8, "se_reduction": 4, "head": 960,
        "head_act": "hswish", "mix": 1280, "mix_act": "hswish", "dropout": 0.1, "classes": 1000,
    },
    "mobilenetv2": {
        "widths": [24, 32, 64, 96, 160, 320], "strides": [2, 2, 2, 1, 2, 1],
        "acts": ["relu6"] * 6, "se": [False] * 6, "depths": [[1, 2, 3, 4]] * 5 + [[1]],
        "kernels": [3, 5, 7], "expands": [3, 4, 6], "resolutions": [128, 160, 192, 224],
        "width_mults": [0.5, 0.75, 1.0, 1.4], "stem": 32, "stem_act": "relu6", "first": 16,
        "first_act": "relu6", "mid_divisor": 1, "se_reduction": 4, "head": 1280,
        "head_act": "relu6", "mix": 0, "mix_act": "relu6", "dropout": 0.2, "classes": 1000,
    },
}


def create(name: str, config: dict[str, Any], sparse: bool) -> InvertedResidualSpace:
    return InvertedResidualSpace(name, config_from_dict(InvertedResidualConfig, name, config),
                                 sparse)
