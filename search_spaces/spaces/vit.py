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

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from search_spaces import settings
from search_spaces.arch import Arch, Gene
from search_spaces.errors import InvalidArchError, NasError
from search_spaces.space import BlockSpec, Chain, Dimension, SearchSpace, config_from_dict
from search_spaces.spaces.attention import (
    DENSITIES,
    AttentionSpace,
    Tokens,
    check_heads,
    check_ints,
    option_tuple,
)
from search_spaces.spaces.vit_hybrid import HYBRID_PRESET, HybridConfig, HybridSpace

KINDS = ("vit", "hybrid")


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
            values = option_tuple(getattr(self, name), name, name == "patches", high)
            if name != "mlp_ratios":
                check_ints(values, name)
            object.__setattr__(self, name, values)
        settings.choice("kind", self.kind, ("vit",))
        check_heads(self.widths, self.heads, "width")
        bad = [(r, p) for r in self.resolutions for p in self.patches if r % p]
        if bad:
            raise ValueError(f"every resolution must be divisible by every patch size; "
                             f"{bad[0][0]} is not divisible by {bad[0][1]}")
        settings.int_value("classes", self.classes, 1, settings.MAX_CLASSES)


class ViTSpace(AttentionSpace):
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
        self._tokens = Tokens(self.dimensions)

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
# The family's own description (read by the registry): `<name>-sparse` adds per-stage
# weight density to its conv/linear layers.
SPARSE_VARIANT = True

PRESETS: dict[str, dict[str, Any]] = {
    "vit": {
        "kind": "vit", "patches": [32, 16], "widths": [192, 240, 288, 384],
        "depths": [6, 7, 8, 9, 10, 11, 12], "heads": [3, 4, 6], "mlp_ratios": [2, 3, 4],
        "resolutions": [160, 192, 224], "classes": 1000,
    },
    "vit-hybrid": HYBRID_PRESET,
}


def create(name: str, config: dict[str, Any], sparse: bool) -> SearchSpace:
    kind = config.get("kind", "vit")
    if kind not in KINDS:
        raise NasError(f"space {name!r}: kind must be one of {list(KINDS)}, got {kind!r}")
    if kind == "vit":
        return ViTSpace(name, config_from_dict(ViTConfig, name, config), sparse)
    return HybridSpace(name, config_from_dict(HybridConfig, name, config), sparse)
