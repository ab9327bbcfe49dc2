"""ViT-ResNAS ("vit-resnas"): Liao, Karaman and Sze, "Searching for Efficient Multi-Stage Vision
Transformers" (2021); code at github.com/yilunliao/vit-search.

A multi-stage ViT. A convolutional patch embedding (patch 14: a 16 x 16 token grid at 224 px)
feeds three stages of pre-norm transformer blocks. Between stages a residual spatial reduction
halves the grid and widens the tokens; its skip path (2x2 average pool, zero-padded channels)
keeps deep networks trainable. The class token passes every stage (a Linear at each reduction,
with the same zero-padded skip) and alone feeds the head.

Searched, as in the paper's tiny space (the repository's `supernet_config/sr_tiny_mh.py`): per
stage its width and depth (3-6: every second of the six blocks may be dropped); per block its
heads (of a fixed head width per stage: 32, 48, 64) and its MLP hidden width.

Key body: `r224-w176.352.704-h3m704.h3m576-h10m1408.h8m1408-h10m2560.h8m2560` (resolution, the
stage widths, then one part per stage: heads and MLP hidden width of each block). Sparse:
`@<density>` after each stage (its blocks and the reduction that opens it).

Reference `vit_resnas_tiny`: ViT-ResNAS-Tiny as the repository trains it (`network_def` of
`scripts/vit-sr-nas/searched_net/tiny.sh`): 40,793,552 parameters, as the repository's model
(`nets/vit_sr_supernet.py`) counts them without its training-only ShiftTokenMixup patch head
(Linear 704 -> 1000: 705,000 more); 1,782.63M MACs at 224 px, what the repository's counter
(`network_utils/compute_flop_mac.py`) gives too, under the search's 1,794.4M MAC constraint
(`scripts/vit-sr-nas/evolutionary_search/tiny.sh`).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

from search_spaces import settings
from search_spaces.arch import Arch, Gene
from search_spaces.errors import InvalidArchError
from search_spaces.keys import split_density, stage_blocks
from search_spaces.space import BlockSpec, Chain, Dimension, SearchSpace, config_from_dict
from search_spaces.spaces.attention import DENSITIES, AttentionSpace, Tokens

# ViT-ResNAS-Tiny (scripts/vit-sr-nas/searched_net/tiny.sh): stage widths, then (heads, MLP
# hidden width) of each block of each stage
TINY_WIDTHS = (176, 352, 704)
TINY_BLOCKS = (
    ((3, 704), (3, 576), (3, 640), (4, 576), (4, 704)),
    ((10, 1408), (8, 1408), (8, 1280), (8, 1408), (10, 1280), (10, 1024)),
    ((10, 2560), (10, 1792), (10, 2816), (8, 2816), (8, 2560)),
)


@dataclass(frozen=True)
class ResNASConfig:
    """A ViT-ResNAS space: resolutions, the conv embedding's patch size and stem width, then
    per stage (one list entry each, in network order) the width, depth, heads and MLP hidden
    width options and the fixed width of one head."""

    resolutions: tuple[int, ...] = (224,)
    patch: int = 14
    stem: int = 24
    widths: tuple = ((160, 176, 192, 224, 256), (320, 352, 384, 448, 512),
                     (640, 704, 768, 896, 1024))
    depths: tuple = ((3, 4, 5, 6),) * 3
    heads: tuple = ((3, 4, 5, 6), (6, 8, 10, 12), (6, 8, 10, 12))
    head_dims: tuple[int, ...] = (32, 48, 64)
    mlp_widths: tuple = (tuple(range(384, 769, 64)), tuple(range(768, 1537, 128)),
                         tuple(range(1536, 3073, 256)))
    classes: int = 1000

    def __post_init__(self) -> None:
        stages = len(self.widths) if isinstance(self.widths, (list, tuple)) else 0
        if not stages:
            raise ValueError("widths must give one list of width options per stage")
        object.__setattr__(self, "resolutions", settings.int_list(
            "resolutions", self.resolutions, 1, settings.MAX_RESOLUTION))
        for name, high in (("widths", settings.MAX_CHANNELS), ("depths", settings.MAX_DEPTH),
                           ("heads", settings.MAX_CHANNELS),
                           ("mlp_widths", settings.MAX_CHANNELS)):
            object.__setattr__(self, name, settings.nested_int_lists(
                name, getattr(self, name), stages, high=high))
        object.__setattr__(self, "head_dims", settings.int_list(
            "head_dims", self.head_dims, length=stages, sort=False))
        settings.int_value("patch", self.patch, 2, settings.MAX_RESOLUTION)
        settings.int_value("stem", self.stem)
        settings.int_value("classes", self.classes, 1, settings.MAX_CLASSES)
        if self.patch % 2:
            raise ValueError(f"patch must be even (the stem halves the image first), "
                             f"got {self.patch}")
        for i in range(1, stages):  # the reduction's skip path zero-pads: it cannot narrow
            if min(self.widths[i]) < max(self.widths[i - 1]):
                raise ValueError(f"widths: every width of stage {i + 1} must be at least every "
                                 f"width of stage {i} (the reduction's skip path zero-pads "
                                 f"channels), got {self.widths[i - 1]} then {self.widths[i]}")
        step = self.patch * 2 ** (stages - 1)
        bad = [r for r in self.resolutions if r % step]
        if bad:
            raise ValueError(f"resolutions must be divisible by patch x 2^(stages - 1) = "
                             f"{step} (every reduction halves an even grid); {bad[0]} is not")


class ResNASSpace(AttentionSpace):
    """Dimensions r, then per stage i (1-based): w<i>, d<i>, per block j h<i>_<j> and
    m<i>_<j> (heads, MLP hidden width); density<i> if sparse."""

    def __init__(self, name: str, config: ResNASConfig, sparse: bool):
        self.name, self.config, self.sparse = name, config, sparse
        self.default_classes = config.classes
        self.stages = len(config.widths)
        dims = [Dimension("r", config.resolutions)]
        for i in range(1, self.stages + 1):
            dims += [Dimension(f"w{i}", config.widths[i - 1]),
                     Dimension(f"d{i}", config.depths[i - 1])]
            for j in range(1, max(config.depths[i - 1]) + 1):
                dims += [Dimension(f"h{i}_{j}", config.heads[i - 1]),
                         Dimension(f"m{i}_{j}", config.mlp_widths[i - 1])]
            if sparse:
                dims.append(Dimension(f"density{i}", DENSITIES))
        self.dimensions = tuple(dims)
        self._tokens = Tokens(self.dimensions)

    def groups(self) -> Iterator[tuple[str, list[str]]]:
        for i in range(1, self.stages + 1):
            yield f"d{i}", [f"h{i}_", f"m{i}_"]

    def blocks(self, arch: Arch, num_classes: int | None = None,
               in_channels: int | None = None) -> list[BlockSpec]:
        self.check(arch)
        cfg, r = self.config, arch["r"]
        chain = Chain((in_channels or self.default_channels, r, r))
        chain.add("conv_patch_embed", "embed", dim=arch["w1"], patch=cfg.patch, mid=cfg.stem)
        for i in range(1, self.stages + 1):
            extra = self.density_args(arch, f"density{i}")
            if i > 1:
                chain.add("residual_reduction", f"stage{i}.reduce", out=arch[f"w{i}"], **extra)
            for j in range(1, arch[f"d{i}"] + 1):
                chain.add("transformer", f"stage{i}.{j}", heads=arch[f"h{i}_{j}"],
                          hidden=arch[f"m{i}_{j}"], head_dim=cfg.head_dims[i - 1], **extra)
        chain.add("token_head", "head", classes=num_classes or self.default_classes)
        return chain.specs

    def encode(self, arch: Arch) -> str:
        widths = ".".join(str(arch[f"w{i}"]) for i in range(1, self.stages + 1))
        parts = [f"r{arch['r']}", f"w{widths}"]
        for i in range(1, self.stages + 1):
            stage = ".".join(f"h{arch[f'h{i}_{j}']}m{arch[f'm{i}_{j}']}"
                             for j in range(1, arch[f"d{i}"] + 1))
            parts.append(f"{stage}@{arch[f'density{i}']}" if self.sparse else stage)
        return "-".join(parts)

    def decode(self, body: str) -> Arch:
        parts = body.strip().split("-")
        if len(parts) != 2 + self.stages:
            self.bad_key(body, f"{len(parts)} '-'-separated parts, expected {2 + self.stages}")
        genes: dict[str, Gene] = {"r": self.prefixed(body, parts[0], "r", "r")}
        if not parts[1].startswith("w"):
            self.bad_key(body, f"{parts[1]!r} should start with 'w'")
        widths = parts[1][1:].split(".")
        if len(widths) != self.stages:
            self.bad_key(body, f"{len(widths)} stage widths, expected {self.stages}")
        for i, token in enumerate(widths, 1):
            genes[f"w{i}"] = self._tokens.gene(self, body, f"w{i}", token)
        for i, text in enumerate(parts[2:], 1):
            genes.update(self._decode_stage(body, i, text))
        return self.make(genes)

    def _decode_stage(self, body: str, i: int, text: str) -> dict[str, Gene]:
        genes: dict[str, Gene] = {}
        if self.sparse:
            text, density = split_density(self, body, i, text)
            genes[f"density{i}"] = self._tokens.gene(self, body, f"density{i}", density)
        blocks = stage_blocks(self, body, i, text, "h", self.config.depths[i - 1])
        genes[f"d{i}"] = len(blocks)
        for j, block in enumerate(blocks, 1):
            match = re.fullmatch(r"h([^m]*)m(.*)", block)
            if match is None:
                self.bad_key(body, f"block {block!r} of stage {i} is not "
                                   f"h<heads>m<MLP hidden width>")
            genes[f"h{i}_{j}"] = self._tokens.gene(self, body, f"h{i}_{j}", match.group(1))
            genes[f"m{i}_{j}"] = self._tokens.gene(self, body, f"m{i}_{j}", match.group(2))
        return genes

    def from_blocks(self, r: int, widths: tuple[int, ...],
                    stages: tuple[tuple[tuple[int, int], ...], ...]) -> Arch:
        """A dense arch from its stage widths and each block's (heads, MLP hidden width)."""
        genes: dict[str, Gene] = {"r": r}
        for i, (width, blocks) in enumerate(zip(widths, stages), 1):
            genes[f"w{i}"], genes[f"d{i}"] = width, len(blocks)
            for j, (heads, hidden) in enumerate(blocks, 1):
                genes[f"h{i}_{j}"], genes[f"m{i}_{j}"] = heads, hidden
        return self.dense(genes)

    def named_archs(self) -> dict[str, Arch]:
        cfg, paper = self.config, ResNASConfig()
        same_skeleton = (cfg.patch, cfg.stem, cfg.head_dims) == (paper.patch, paper.stem,
                                                                 paper.head_dims)
        if not same_skeleton:
            return {}  # another embedding or head width: not the published network
        try:
            return {"vit_resnas_tiny": self.from_blocks(224, TINY_WIDTHS, TINY_BLOCKS)}
        except InvalidArchError:
            return {}  # not expressible with this space's options


def _plain(value: Any) -> Any:
    """Tuples as lists, as a space file writes them."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


# ------------------------------------------------------------------------------------------
# The family's own description (read by the registry): `<name>-sparse` adds per-stage
# weight density to its conv/linear layers. The preset is the paper's tiny search space.
SPARSE_VARIANT = True

PRESETS: dict[str, dict[str, Any]] = {
    "vit-resnas": {f.name: _plain(getattr(ResNASConfig(), f.name)) for f in fields(ResNASConfig)},
}


def create(name: str, config: dict[str, Any], sparse: bool) -> SearchSpace:
    return ResNASSpace(name, config_from_dict(ResNASConfig, name, config), sparse)
