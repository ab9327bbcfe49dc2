"""The MOAT-like conv + attention hybrid space ("vit-hybrid"; `kind: hybrid` in a vit config).

Key body: `r224-k3e4.k5e2-k3e4-h4e4.h4e4-h8e2` (resolution, then one part per stage: kernel and
expand ratio of each MBConv block, heads and expand ratio of each MOAT block). Sparse:
`@<density>` after each stage.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from search_spaces import settings
from search_spaces.arch import Arch, Gene
from search_spaces.errors import InvalidArchError
from search_spaces.keys import block_tokens, split_density, stage_blocks
from search_spaces.ops.common import ACTIVATIONS
from search_spaces.space import BlockSpec, Chain, Dimension
from search_spaces.spaces.attention import (
    DENSITIES,
    AttentionSpace,
    Tokens,
    check_heads,
    check_ints,
    option_tuple,
)

HYBRID_PRESET: dict[str, Any] = {
    "kind": "hybrid", "resolutions": [160, 192, 224], "stem": 32, "act": "gelu",
    "conv_widths": [32, 64], "conv_depths": [[1, 2], [1, 2, 3]], "kernels": [3, 5],
    "conv_expands": [2, 3, 4], "attn_widths": [128, 256],
    "attn_depths": [[2, 3, 4, 5, 6, 7], [1, 2]], "heads": [2, 4, 8],
    "attn_expands": [2, 3, 4], "dropout": 0.0, "classes": 1000,
}


# ------------------------------------------------------------------------------------------
# MOAT-like hybrid
# ------------------------------------------------------------------------------------------
def _depth_lists(depths: Any, stages: int, name: str) -> tuple[tuple[int, ...], ...]:
    if not isinstance(depths, (tuple, list)) or len(depths) != stages:
        raise ValueError(f"{name} must give one list of depth options per stage ({stages})")
    result = tuple(option_tuple(d, f"{name}[{i}]", high=settings.MAX_DEPTH)
                   for i, d in enumerate(depths))
    for d in result:
        check_ints(d, name)
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
            values = option_tuple(getattr(self, name), name, high=high)
            if name not in ("conv_expands", "attn_expands"):
                check_ints(values, name, odd=name == "kernels")
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
        check_heads(self.attn_widths, self.heads, "attention stage width")
        settings.choice("act", self.act, ACTIVATIONS)
        settings.int_value("stem", self.stem)
        settings.int_value("classes", self.classes, 1, settings.MAX_CLASSES)
        settings.float_value("dropout", self.dropout, 0.0, 1.0)


class HybridSpace(AttentionSpace):
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
        self._tokens = Tokens(self.dimensions)

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
            text, density = split_density(self, body, i, text)
            genes[f"density{i}"] = self._tokens.gene(self, body, f"density{i}", density)
        letter = "k" if self.is_conv(i) else "h"
        blocks = stage_blocks(self, body, i, text, letter, self.stage_depths[i - 1])
        genes[f"d{i}"] = len(blocks)
        for j, block in enumerate(blocks, 1):
            first, expand = block_tokens(self, body, i, block, letter)
            genes[f"{letter}{i}_{j}"] = self._tokens.gene(self, body, f"{letter}{i}_{j}", first)
            genes[f"e{i}_{j}"] = self._tokens.gene(self, body, f"e{i}_{j}", expand)
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
        if self._structure() != _hybrid_structure(HYBRID_PRESET):
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

