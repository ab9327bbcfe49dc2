"""Attention spaces: a plain ViT/DeiT space ("vit") and a MOAT-like conv + attention hybrid
("vit-hybrid"). The config's `kind` ("vit" or "hybrid") picks which.

Key bodies read like timm block strings, '-' between parts and '.' between blocks:
- vit: `r224-p16-w192-h3m4.h3m4...` (resolution, patch, width, then heads and MLP ratio of each
  transformer block; the depth is the number of blocks). Sparse: `h3m4@0.5` per block.
- vit-hybrid: `r224-k3e4.k5e2-k3e4-h4e4.h4e4-h8e2` (resolution, then one part per stage:
  kernel and expand ratio of each MBConv block, heads and expand ratio of each MOAT block).
  Sparse: `@<density>` after each stage.
"""
from __future__ import annotations

import math
import re
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from search_spaces import settings
from search_spaces.arch import Arch, Gene
from search_spaces.errors import InvalidArchError, NasError
from search_spaces.ops.common import ACTIVATIONS
from search_spaces.space import BlockSpec, Chain, Dimension, SearchSpace, config_from_dict

DENSITIES: tuple[float, ...] = (0.25, 0.5, 1.0)  # sparse variants: cheapest first
KINDS = ("vit", "hybrid")


def _options(values: Any, name: str, reverse: bool = False,
             high: float = settings.MAX_CHANNELS) -> tuple:
    """A non-empty, duplicate-free option tuple of positive finite numbers up to `high`, each
    written in plain decimal (a key token), cheapest first."""
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    if not values or any(not settings.is_number(v) or not 0 < v <= high for v in values):
        raise ValueError(f"{name} must be a non-empty list of positive numbers up to {high:g}, "
                         f"got {values}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has duplicate options: {values}")
    settings.number_list(name, values, 0.0, high)  # the plain decimal form
    return tuple(sorted(values, reverse=reverse))


def _ints(values: tuple, name: str, odd: bool = False) -> None:
    if any(not settings.is_int(v) for v in values):
        raise ValueError(f"{name} must be integers, got {values}")
    if odd and any(v % 2 == 0 for v in values):
        raise ValueError(f"{name} must be odd (an even kernel changes the output size), "
                         f"got {values}")


def _check_heads(widths: tuple[int, ...], heads: tuple[int, ...], what: str) -> None:
    bad = [(w, h) for w in widths for h in heads if w % h]
    if bad:
        raise ValueError(f"every {what} must be divisible by every heads option; "
                         f"{bad[0][0]} is not divisible by {bad[0][1]}")


class _Tokens:
    """Key tokens of each dimension's options (str(option)), for exact decoding."""

    def __init__(self, dimensions: tuple[Dimension, ...]):
        self.table = {d.name: {str(o): o for o in d.options} for d in dimensions}

    def gene(self, space: _AttentionSpace, body: str, name: str, token: str) -> Gene:
        if token not in self.table[name]:
            space.bad_key(body, f"{token!r} is not a valid {name} ({'/'.join(self.table[name])})")
        return self.table[name][token]


class _AttentionSpace(SearchSpace):
    """Shared by both kinds: dense/sparse handling, canonical form, errors."""

    sparse: bool
    _tokens: _Tokens
    _refs: dict[str, Arch] | None = None

    def input_size(self, arch: Arch) -> int:
        return int(arch["r"])

    @abstractmethod
    def groups(self) -> Iterator[tuple[str, list[str]]]:
        """(depth dimension, [per-block dimension prefixes]) of each variable-depth group."""

    def per_block_names(self) -> set[str]:
        return {f"{prefix}{j}" for depth_name, prefixes in self.groups() for prefix in prefixes
                for j in range(1, self.max_depth(depth_name) + 1)}

    def canonical(self, genes: dict[str, Gene]) -> dict[str, Gene]:
        genes = dict(genes)
        per_block = self.per_block_names()
        for dim in self.dimensions:  # an active gene left unset takes the cheapest option
            if genes.get(dim.name) is None and dim.name not in per_block:
                genes[dim.name] = dim.options[0]
        for depth_name, prefixes in self.groups():
            depth = genes[depth_name]
            for prefix in prefixes:
                for j in range(1, self.max_depth(depth_name) + 1):
                    name = f"{prefix}{j}"
                    if not isinstance(depth, (int, float)) or j > depth:
                        genes[name] = None
                    elif genes.get(name) is None:
                        genes[name] = self.dimension(name).options[0]
        return genes

    def max_depth(self, depth_name: str) -> int:
        return max(self.dimension(depth_name).options)

    def log10_size(self) -> float:
        """Exact count of canonical archs: per group, the sum over depths of choices^depth."""
        skip = self.per_block_names() | {depth_name for depth_name, _ in self.groups()}
        total = math.prod(len(d.options) for d in self.dimensions if d.name not in skip)
        for depth_name, prefixes in self.groups():
            per_block = math.prod(len(self.dimension(f"{p}1").options) for p in prefixes)
            total *= sum(per_block ** d for d in self.dimension(depth_name).options)
        return math.log10(total)

    def density_args(self, arch: Arch, name: str) -> dict[str, Any]:
        """{'density': d} for a sparse block, {} when dense (dense ops share lookup keys)."""
        if not self.sparse or arch[name] >= 1.0:
            return {}
        return {"density": arch[name]}

    def reference_archs(self) -> dict[str, Arch]:
        if self._refs is None:
            refs = {"smallest": self.min_arch(), "largest": self.max_arch()}
            refs.update(self.named_archs())
            self._refs = refs
        return dict(self._refs)

    def named_archs(self) -> dict[str, Arch]:
        return {}

    def dense(self, genes: dict[str, Gene]) -> Arch:
        """`make` with every density 1.0 in a sparse space (named networks are dense)."""
        if self.sparse:
            genes = {**genes, **{d.name: 1.0 for d in self.dimensions
                                 if d.name.startswith("density")}}
        return self.make(genes)

    def prefixed(self, body: str, token: str, prefix: str, name: str) -> Gene:
        if not token.startswith(prefix):
            self.bad_key(body, f"{token!r} should start with {prefix!r}")
        return self._tokens.gene(self, body, name, token[len(prefix):])


# ------------------------------------------------------------------------------------------
# Plain ViT
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViTConfig:
    """A ViT space: patch size, embedding width, depth and resolution for the whole network;
    heads and MLP ratio per transformer block."""

    kind: str = "vit"
    patches: tuple[int, ...] = (32, 16)
    widths: tuple[int, ...] = (192, 240, 288, 384)
    depths: tuple[int, ...] = (6, 7, 8, 9, 10, 11, 12)
    heads: tuple[int, ...] = (3, 4, 6)
    mlp_ratios: tuple[float, ...] = (2, 3, 4)
    resolutions: tuple[int, ...] = (160, 192, 224)
    classes: int = 1000

    def __post_init__(self) -> None:
        highs = {"patches": settings.MAX_RESOLUTION, "widths": settings.MAX_CHANNELS,
                 "depths": settings.MAX_DEPTH, "heads": settings.MAX_CHANNELS,
                 "mlp_ratios": settings.MAX_RATIO, "resolutions": settings.MAX_RESOLUTION}
        for name, high in highs.items():
            values = _options(getattr(self, name), name, name == "patches", high)
            if name != "mlp_ratios":
                _ints(values, name)
            object.__setattr__(self, name, values)
        settings.choice("kind", self.kind, ("vit",))
        _check_heads(self.widths, self.heads, "width")
        bad = [(r, p) for r in self.resolutions for p in self.patches if r % p]
        if bad:
            raise ValueError(f"every resolution must be divisible by every patch size; "
                             f"{bad[0][0]} is not divisible by {bad[0][1]}")
        settings.int_value("classes", self.classes, 1, settings.MAX_CLASSES)


class ViTSpace(_AttentionSpace):
    """Dimensions r, patch, width, depth, then h<j> and m<j> per block (and density<j>
    per block in the sparse variant: a plain ViT has no stages, each block is one)."""

    def __init__(self, name: str, config: ViTConfig, sparse: bool):
        self.name, self.config, self.sparse = name, config, sparse
        self.default_classes = config.classes
        dims = [Dimension("r", config.resolutions), Dimension("patch", config.patches),
                Dimension("width", config.widths), Dimension("depth", config.depths)]
        for j in range(1, max(config.depths) + 1):
            dims += [Dimension(f"h{j}", config.heads), Dimension(f"m{j}", config.mlp_ratios)]
            if sparse:
                dims.append(Dimension(f"density{j}", DENSITIES))
        self.dimensions = tuple(dims)
        self._tokens = _Tokens(self.dimensions)

    def groups(self) -> Iterator[tuple[str, list[str]]]:
        yield "depth", ["h", "m"] + (["density"] if self.sparse else [])

    def blocks(self, arch: Arch, num_classes: int | None = None,
               in_channels: int | None = None) -> list[BlockSpec]:
        self.check(arch)
        r, width = arch["r"], arch["width"]
        chain = Chain((in_channels or self.default_channels, r, r))
        chain.add("patch_embed", "patch_embed", dim=width, patch=arch["patch"])
        for j in range(1, arch["depth"] + 1):
            extra = self.density_args(arch, f"density{j}")
            chain.add("transformer", f"block{j}", heads=arch[f"h{j}"],
                      hidden=int(width * arch[f"m{j}"]), **extra)
        chain.add("token_head", "head", classes=num_classes or self.default_classes)
        return chain.specs

    def encode(self, arch: Arch) -> str:
        layers = []
        for j in range(1, arch["depth"] + 1):
            token = f"h{arch[f'h{j}']}m{arch[f'm{j}']}"
            layers.append(f"{token}@{arch[f'density{j}']}" if self.sparse else token)
        return f"r{arch['r']}-p{arch['patch']}-w{arch['width']}-" + ".".join(layers)

    def decode(self, body: str) -> Arch:
        parts = body.strip().split("-")
        if len(parts) != 4:
            self.bad_key(body, f"{len(parts)} '-'-separated parts, expected 4")
        genes: dict[str, Gene] = {
            "r": self.prefixed(body, parts[0], "r", "r"),
            "patch": self.prefixed(body, parts[1], "p", "patch"),
            "width": self.prefixed(body, parts[2], "w", "width"),
        }
        layers = re.split(r"\.(?=h)", parts[3])  # an MLP ratio or density may contain '.'
        if len(layers) not in self.config.depths:
            self.bad_key(body, f"{len(layers)} blocks, expected one of {list(self.config.depths)}")
        genes["depth"] = len(layers)
        pattern = r"h([^m]*)m([^@]*)@(.*)" if self.sparse else r"h([^m]*)m(.*)"
        for j, layer in enumerate(layers, 1):
            match = re.fullmatch(pattern, layer)
            if match is None:
                form = "h<heads>m<mlp ratio>" + ("@<density>" if self.sparse else "")
                self.bad_key(body, f"block {layer!r} is not {form}")
            genes[f"h{j}"] = self._tokens.gene(self, body, f"h{j}", match.group(1))
            genes[f"m{j}"] = self._tokens.gene(self, body, f"m{j}", match.group(2))
            if self.sparse:
                genes[f"density{j}"] = self._tokens.gene(self, body, f"density{j}",
                                                          match.group(3))
        return self.make(genes)

    def parse(self, text: str) -> Arch:
        """Also accepts timm's name of DeiT-Tiny, `deit_tiny_patch16_224`."""
        if text.strip() in TIMM_NAMES:
            text = TIMM_NAMES[text.strip()]
        return super().parse(text)

    def uniform(self, r: int, patch: int, width: int, depth: int, heads: int,
                mlp: float) -> Arch:
        """A dense arch whose blocks all have the same heads and MLP ratio."""
        genes: dict[str, Gene] = {"r": r, "patch": patch, "width": width, "depth": depth}
        for j in range(1, depth + 1):
            genes[f"h{j}"], genes[f"m{j}"] = heads, mlp
        return self.dense(genes)

    def named_archs(self) -> dict[str, Arch]:
        try:  # DeiT-Tiny = ViT-Ti/16 (timm deit_tiny_patch16_224)
            return {"deit_tiny": self.uniform(224, 16, 192, 12, 3, 4)}
        except InvalidArchError:
            return {}  # not expressible with this space's options


TIMM_NAMES = {"deit_tiny_patch16_224": "deit_tiny", "vit_tiny_patch16_224": "deit_tiny"}


# ------------------------------------------------------------------------------------------
# MOAT-like hybrid
# ------------------------------------------------------------------------------------------
def _depth_lists(depths: Any, stages: int, name: str) -> tuple[tuple[int, ...], ...]:
    if not isinstance(depths, (tuple, list)) or len(depths) != stages:
        raise ValueError(f"{name} must give one list of depth options per stage ({stages})")
    result = tuple(_options(d, f"{name}[{i}]", high=settings.MAX_DEPTH)
                   for i, d in enumerate(depths))
    for d in result:
        _ints(d, name)
    return result


@dataclass(frozen=True)
class HybridConfig:
    """A MOAT-like space: a two-conv stem (stride 2), MBConv stages, then MOAT stages (MBConv
    without SE followed by global self-attention), each stage starting with stride 2; then
    global pooling and a linear classifier. Depth options per stage; kernel and expand ratio
    per MBConv block; heads and expand ratio per MOAT block."""

    kind: str = "hybrid"
    resolutions: tuple[int, ...] = (160, 192, 224)
    stem: int = 32
    act: str = "gelu"
    conv_widths: tuple[int, ...] = (32, 64)
    conv_depths: tuple = ((1, 2), (1, 2, 3))
    kernels: tuple[int, ...] = (3, 5)
    conv_expands: tuple[float, ...] = (2, 3, 4)
    attn_widths: tuple[int, ...] = (128, 256)
    attn_depths: tuple = ((2, 3, 4, 5, 6, 7), (1, 2))
    heads: tuple[int, ...] = (2, 4, 8)
    attn_expands: tuple[float, ...] = (2, 3, 4)
    dropout: float = 0.0
    classes: int = 1000

    def __post_init__(self) -> None:
        highs = {"resolutions": settings.MAX_RESOLUTION, "kernels": settings.MAX_KERNEL,
                 "conv_expands": settings.MAX_RATIO, "heads": settings.MAX_CHANNELS,
                 "attn_expands": settings.MAX_RATIO}
        for name, high in highs.items():
            values = _options(getattr(self, name), name, high=high)
            if name not in ("conv_expands", "attn_expands"):
                _ints(values, name, odd=name == "kernels")
            object.__setattr__(self, name, values)
        settings.choice("kind", self.kind, ("hybrid",))
        for name in ("conv_widths", "attn_widths"):  # one per stage, in network order
            widths = getattr(self, name)
            widths = tuple(widths) if isinstance(widths, (list, tuple)) else (widths,)
            if any(not settings.is_int(w) or not 1 <= w <= settings.MAX_CHANNELS
                   for w in widths):
                raise ValueError(f"{name} must be a list of whole numbers in "
                                 f"1..{settings.MAX_CHANNELS}, got {widths}")
            object.__setattr__(self, name, widths)
        if not self.attn_widths:
            raise ValueError("attn_widths must name at least one attention stage")
        object.__setattr__(self, "conv_depths",
                           _depth_lists(self.conv_depths, len(self.conv_widths), "conv_depths"))
        object.__setattr__(self, "attn_depths",
                           _depth_lists(self.attn_depths, len(self.attn_widths), "attn_depths"))
        _check_heads(self.attn_widths, self.heads, "attention stage width")
        settings.choice("act", self.act, ACTIVATIONS)
        settings.int_value("stem", self.stem)
        settings.int_value("classes", self.classes, 1, settings.MAX_CLASSES)
        settings.float_value("dropout", self.dropout, 0.0, 1.0)


class HybridSpace(_AttentionSpace):
    """Dimensions r, then per stage i (1-based, MBConv stages first): d<i>, per block j
    k<i>_<j> and e<i>_<j> (MBConv) or h<i>_<j> and e<i>_<j> (MOAT); density<i> if sparse."""

    def __init__(self, name: str, config: HybridConfig, sparse: bool):
        self.name, self.config, self.sparse = name, config, sparse
        self.default_classes = config.classes
        self.num_conv = len(config.conv_widths)
        self.stage_depths = config.conv_depths + config.attn_depths
        self.stage_widths = config.conv_widths + config.attn_widths
        dims = [Dimension("r", config.resolutions)]
        for i, depths in enumerate(self.stage_depths, 1):
            dims.append(Dimension(f"d{i}", depths))
            first, expands = ((f"k{i}_", config.kernels), config.conv_expands) \
                if self.is_conv(i) else ((f"h{i}_", config.heads), config.attn_expands)
            for j in range(1, max(depths) + 1):
                dims += [Dimension(f"{first[0]}{j}", first[1]), Dimension(f"e{i}_{j}", expands)]
            if sparse:
                dims.append(Dimension(f"density{i}", DENSITIES))
        self.dimensions = tuple(dims)
        self._tokens = _Tokens(self.dimensions)

    def is_conv(self, stage: int) -> bool:
        return stage <= self.num_conv

    def groups(self) -> Iterator[tuple[str, list[str]]]:
        for i in range(1, len(self.stage_depths) + 1):
            yield f"d{i}", [f"k{i}_" if self.is_conv(i) else f"h{i}_", f"e{i}_"]

    def blocks(self, arch: Arch, num_classes: int | None = None,
               in_channels: int | None = None) -> list[BlockSpec]:
        self.check(arch)
        cfg, r = self.config, arch["r"]
        chain = Chain((in_channels or self.default_channels, r, r))
        chain.add("conv_bn_act", "stem.1", out=cfg.stem, k=3, stride=2, act=cfg.act)
        chain.add("conv_bn_act", "stem.2", out=cfg.stem, k=3, stride=1, act=cfg.act)
        for i, width in enumerate(self.stage_widths, 1):
            extra = self.density_args(arch, f"density{i}")
            for j in range(1, arch[f"d{i}"] + 1):
                mid = int(round(chain.shape[0] * arch[f"e{i}_{j}"]))
                stride = 2 if j == 1 else 1
                if self.is_conv(i):
                    chain.add("mbconv", f"stage{i}.{j}", out=width, mid=mid, k=arch[f"k{i}_{j}"],
                              stride=stride, act=cfg.act, **extra)
                else:
                    chain.add("moat", f"stage{i}.{j}", out=width, mid=mid, heads=arch[f"h{i}_{j}"],
                              k=3, stride=stride, act=cfg.act, **extra)
        chain.add("global_pool", "head.pool")
        dropout = {"dropout": cfg.dropout} if cfg.dropout > 0 else {}
        chain.add("classifier", "classifier", classes=num_classes or self.default_classes,
                  **dropout)
        return chain.specs

    def encode(self, arch: Arch) -> str:
        parts = [f"r{arch['r']}"]
        for i in range(1, len(self.stage_depths) + 1):
            letter = "k" if self.is_conv(i) else "h"
            stage = ".".join(f"{letter}{arch[f'{letter}{i}_{j}']}e{arch[f'e{i}_{j}']}"
                             for j in range(1, arch[f"d{i}"] + 1))
            parts.append(f"{stage}@{arch[f'density{i}']}" if self.sparse else stage)
        return "-".join(parts)

    def decode(self, body: str) -> Arch:
        parts = body.strip().split("-")
        stages = len(self.stage_depths)
        if len(parts) != 1 + stages:
            self.bad_key(body, f"{len(parts)} '-'-separated parts, expected {1 + stages}")
        genes: dict[str, Gene] = {"r": self.prefixed(body, parts[0], "r", "r")}
        for i, text in enumerate(parts[1:], 1):
            genes.update(self._decode_stage(body, i, text))
        return self.make(genes)

    def _decode_stage(self, body: str, i: int, text: str) -> dict[str, Gene]:
        genes: dict[str, Gene] = {}
        if self.sparse:
            text, sep, density = text.rpartition("@")
            if not sep:
                self.bad_key(body, f"stage {i} has no '@<density>'")
            genes[f"density{i}"] = self._tokens.gene(self, body, f"density{i}", density)
        letter = "k" if self.is_conv(i) else "h"
        blocks = re.split(rf"\.(?={letter})", text)  # an expand ratio may contain '.'
        if len(blocks) not in self.stage_depths[i - 1]:
            self.bad_key(body, f"stage {i} has {len(blocks)} blocks, expected one of "
                         f"{list(self.stage_depths[i - 1])}")
        genes[f"d{i}"] = len(blocks)
        for j, block in enumerate(blocks, 1):
            match = re.fullmatch(rf"{letter}([^e]*)e(.*)", block)
            if match is None:
                what = "k<kernel>e<expand>" if letter == "k" else "h<heads>e<expand>"
                self.bad_key(body, f"block {block!r} of stage {i} is not {what}")
            genes[f"{letter}{i}_{j}"] = self._tokens.gene(self, body, f"{letter}{i}_{j}",
                                                          match.group(1))
            genes[f"e{i}_{j}"] = self._tokens.gene(self, body, f"e{i}_{j}", match.group(2))
        return genes

    def uniform(self, r: int, depths: tuple[int, ...], k: int, conv_e: float,
                heads: tuple[int, ...], attn_e: float) -> Arch:
        """A dense arch: stage depths, one kernel/expand for MBConv blocks, heads per MOAT
        stage and one expand ratio for MOAT blocks."""
        genes: dict[str, Gene] = {"r": r}
        for i, depth in enumerate(depths, 1):
            genes[f"d{i}"] = depth
            for j in range(1, depth + 1):
                if self.is_conv(i):
                    genes[f"k{i}_{j}"], genes[f"e{i}_{j}"] = k, conv_e
                else:
                    genes[f"h{i}_{j}"], genes[f"e{i}_{j}"] = heads[i - 1 - self.num_conv], attn_e
        return self.dense(genes)

    def named_archs(self) -> dict[str, Arch]:
        if self._structure() != _hybrid_structure(PRESETS["vit-hybrid"]):
            return {}
        # tiny-MOAT-0's layout (stages 32/64/128/256 x 2/3/7/2 blocks, expand 4, head dim 32)
        # in this space's blocks: no SE, no relative position bias, so not its exact counts.
        try:
            return {"tiny_moat0_layout": self.uniform(224, (2, 3, 7, 2), 3, 4, (4, 8), 4)}
        except InvalidArchError:
            return {}  # not expressible with this space's options

    def _structure(self) -> tuple:
        return _hybrid_structure({f.name: getattr(self.config, f.name)
                                  for f in fields(self.config)})


def _hybrid_structure(config: Mapping[str, Any]) -> tuple:
    """What fixes the network skeleton (options aside), to tell when named archs apply."""
    return tuple(tuple(config[k]) if isinstance(config[k], (list, tuple)) else config[k]
                 for k in ("stem", "act", "conv_widths", "attn_widths"))


# ------------------------------------------------------------------------------------------
PRESETS: dict[str, dict[str, Any]] = {
    "vit": {
        "kind": "vit", "patches": [32, 16], "widths": [192, 240, 288, 384],
        "depths": [6, 7, 8, 9, 10, 11, 12], "heads": [3, 4, 6], "mlp_ratios": [2, 3, 4],
        "resolutions": [160, 192, 224], "classes": 1000,
    },
    "vit-hybrid": {
        "kind": "hybrid", "resolutions": [160, 192, 224], "stem": 32, "act": "gelu",
        "conv_widths": [32, 64], "conv_depths": [[1, 2], [1, 2, 3]], "kernels": [3, 5],
        "conv_expands": [2, 3, 4], "attn_widths": [128, 256],
        "attn_depths": [[2, 3, 4, 5, 6, 7], [1, 2]], "heads": [2, 4, 8],
        "attn_expands": [2, 3, 4], "dropout": 0.0, "classes": 1000,
    },
}


def create(name: str, config: dict[str, Any], sparse: bool) -> SearchSpace:
    kind = config.get("kind", "vit")
    if kind not in KINDS:
        raise NasError(f"space {name!r}: kind must be one of {list(KINDS)}, got {kind!r}")
    if kind == "vit":
        return ViTSpace(name, config_from_dict(ViTConfig, name, config), sparse)
    return HybridSpace(name, config_from_dict(HybridConfig, name, config), sparse)
