"""ResNet family: block type, per-stage depth and width, bottleneck expansion, resolution.

Network: stem (Conv7x7 s2 - BN - ReLU, MaxPool 3x3 s2; space files may choose CIFAR's Conv3x3
s1 without the pool instead: `stem_kernel`, `stem_stride`, `stem_pool`), four stages of `basic` or
`bottleneck` blocks (stride 2 on the first block of stages 2-4; stage i has
`round8(base_i * w_i)` planes, a bottleneck's output is `planes * expansion`), global average
pool and a linear classifier. ResNet-18/34/50 are points of the space. Space files may also
list `plain` blocks (a basic block without its shortcut: VGG style, EAS's plain CNNs); the
`resnet` preset does not, so its keys and archs stay those of ResNets. Space files may also
offer normalization-activation kinds (`norms`, see norm_gene.py): one for the whole network.

Key body: `<block>[-e<expansion>]-d<d1.d2.d3.d4>-w<w1.w2.w3.w4>[-s<density1..4>]-r<res>
[-<norm>]`, e.g. `bottleneck-e4-d3.4.6.3-w1.0.1.0.1.0.1.0-r224` (ResNet-50); the `-e` field is
only there for bottleneck blocks, the `-s` field only in sparse spaces, the norm only in spaces
that offer more than one.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from search_spaces import settings
from search_spaces.arch import Arch, Gene
from search_spaces.errors import InvalidArchError
from search_spaces.keys import (
    FLOATS,
    INTS,
    check_densities_field,
    join_floats,
    join_ints,
    per_stage,
    split_floats,
    split_ints,
)
from search_spaces.ops.norm import DEFAULT_NORM
from search_spaces.space import BlockSpec, Chain, Dimension, SearchSpace, config_from_dict
from search_spaces.spaces.norm_gene import (
    decode_norm,
    encode_norm,
    network_norm,
    norm_args,
    norm_dimensions,
    norm_options,
    reference_genes,
)

BLOCK_TYPES = ("basic", "bottleneck", "plain")  # what a space file may list
DEFAULT_BLOCKS = ("basic", "bottleneck")  # the preset's, and a config's when not given
NO_EXPANSION = ("basic", "plain")  # blocks without the expansion gene
DENSITIES = (0.25, 0.5, 1.0)


# --- config checks shared with the densenet family -------------------------------------------
def int_options(field: str, values: Any, minimum: int = 1,
                maximum: int = settings.MAX_CHANNELS) -> tuple[int, ...]:
    """Distinct ints in minimum..maximum, sorted ascending (cheapest first); ValueError names
    the field."""
    return settings.int_list(field, values, minimum, maximum)


def float_options(field: str, values: Any, low: float = 0.0, high: float = math.inf
                  ) -> tuple[float, ...]:
    """Distinct floats in (low, high], sorted ascending, each written as `<int>.<digits>`."""
    values = values if isinstance(values, (list, tuple)) else (values,)
    if not values or any(not settings.is_number(v) for v in values):
        bad = next((v for v in values if not settings.is_number(v)), None)
        raise ValueError(f"{field} must be a non-empty list of numbers"
                         + ("" if not values else f", got {bad!r}"))
    floats = tuple(sorted({float(v) for v in values}))
    for v in floats:
        if not low < v <= high or not re.fullmatch(r"[0-9]+\.[0-9]+", repr(v)):
            raise ValueError(f"{field}: {v} must be in ({low}, {high}] and have a short "
                             f"decimal form such as 0.5 or 1.0")
    return floats


def str_options(field: str, values: Any, known: Sequence[str]) -> tuple[str, ...]:
    """Distinct names from `known`, in the given order (cheapest first)."""
    return settings.name_list(field, values, known, distinct=True)


def nested_int_options(field: str, values: Any, count: int | None = None
                       ) -> tuple[tuple[int, ...], ...]:
    return settings.nested_int_lists(field, values, count)


def round8(channels: float) -> int:
    """Nearest multiple of 8 (at least 8), never more than 10% below `channels`."""
    rounded = max(8, int(channels + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * channels else rounded


def fill_inactive_defaults(space: SearchSpace, genes: dict[str, Gene],
                           conditional: Sequence[str]) -> dict[str, Gene]:
    """An always-active gene left None takes the dimension's first option, so None only ever
    marks an inactive gene (and `contains` rejects the None form)."""
    for dim in space.dimensions:
        if dim.name not in conditional and genes.get(dim.name) is None:
            genes[dim.name] = dim.options[0]
    return genes


# --- the space -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResNetConfig:
    """Settings of a ResNet space (every list is the options of one dimension)."""

    blocks: tuple[str, ...] = DEFAULT_BLOCKS
    expansions: tuple[int, ...] = (2, 3, 4)
    depths: tuple[tuple[int, ...], ...] = ((1, 2, 3), (1, 2, 3, 4), (1, 2, 3, 4, 5, 6), (1, 2, 3))
    widths: tuple[float, ...] = (0.5, 0.75, 1.0)
    stage_channels: tuple[int, ...] = (64, 128, 256, 512)
    resolutions: tuple[int, ...] = (128, 160, 192, 224)
    stem: int = 64
    # ImageNet's stem; 3, 1 and no pool is CIFAR's, whose FLOPs do not dwarf a narrow
    # network's at small resolutions
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_pool: bool = True
    densities: tuple[float, ...] = DENSITIES
    norms: tuple[str, ...] = (DEFAULT_NORM,)  # normalization-activation kinds (ops.norm.NORMS)

    def __post_init__(self) -> None:
        stage_channels = settings.int_list("stage_channels", self.stage_channels, sort=False)
        fields = {
            "blocks": str_options("blocks", self.blocks, BLOCK_TYPES),
            "expansions": int_options("expansions", self.expansions, 1, int(settings.MAX_RATIO)),
            "depths": nested_int_options("depths", self.depths, len(stage_channels)),
            "widths": float_options("widths", self.widths, 0.0, settings.MAX_WIDTH_MULT),
            "stage_channels": stage_channels,
            "resolutions": int_options("resolutions", self.resolutions, 32,
                                       settings.MAX_RESOLUTION),
            "stem": settings.int_value("stem", self.stem),
            "stem_kernel": settings.int_value("stem_kernel", self.stem_kernel, 1, 11),
            "stem_stride": settings.int_value("stem_stride", self.stem_stride, 1, 4),
            "stem_pool": settings.bool_value("stem_pool", self.stem_pool),
            "densities": float_options("densities", self.densities, 0.0, 1.0),
            "norms": norm_options(self.norms),
        }
        if fields["stem_kernel"] % 2 == 0:
            raise ValueError(f"stem_kernel must be odd, got {fields['stem_kernel']}")
        for name, value in fields.items():
            object.__setattr__(self, name, value)


# The family's own description (read by the registry): `<name>-sparse` adds per-stage
# weight density to its conv/linear layers.
SPARSE_VARIANT = True

PRESETS: dict[str, dict[str, Any]] = {
    "resnet": {
        "blocks": ["basic", "bottleneck"],
        "expansions": [2, 3, 4],
        "depths": [[1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4, 5, 6], [1, 2, 3]],
        "widths": [0.5, 0.75, 1.0],
        "stage_channels": [64, 128, 256, 512],
        "resolutions": [128, 160, 192, 224],
        "stem": 64,
    },
}

# name -> (block, expansion, depths); all at width 1.0 and 224 px
REFERENCES: dict[str, tuple[str, int | None, tuple[int, ...]]] = {
    "resnet18": ("basic", None, (2, 2, 2, 2)),
    "resnet34": ("basic", None, (3, 4, 6, 3)),
    "resnet50": ("bottleneck", 4, (3, 4, 6, 3)),
}


class ResNetSpace(SearchSpace):
    """Dimensions: block, expansion (bottleneck only), d<i>, w<i>, r[, norm][, density<i>]."""

    def __init__(self, name: str, config: ResNetConfig, sparse: bool = False):
        self.name = name
        self.config = config
        self.sparse = sparse
        self.num_stages = len(config.stage_channels)
        dims = [Dimension("block", config.blocks), Dimension("expansion", config.expansions)]
        dims += [Dimension(f"d{i + 1}", opts) for i, opts in enumerate(config.depths)]
        dims += [Dimension(f"w{i + 1}", config.widths) for i in range(self.num_stages)]
        dims.append(Dimension("r", config.resolutions))
        dims += norm_dimensions(config.norms)
        if sparse:
            dims += [Dimension(f"density{i + 1}", config.densities)
                     for i in range(self.num_stages)]
        self.dimensions = tuple(dims)
        norm = f"-<{'|'.join(config.norms)}>" if len(config.norms) > 1 else ""
        self._form = (f"'<{'|'.join(config.blocks)}>[-e<expansion>]-d<depth per stage>"
                      f"-w<width multiplier per stage>{'-s<density per stage>' if sparse else ''}"
                      f"-r<resolution>{norm}', e.g. 'bottleneck-e4-d3.4.6.3-w1.0.1.0.1.0.1.0"
                      f"{'-s1.0.1.0.1.0.1.0' if sparse else ''}-r224"
                      f"{'-' + config.norms[-1] if norm else ''}'")

    # --- genes ---------------------------------------------------------------------------------
    def canonical(self, genes: dict[str, Gene]) -> dict[str, Gene]:
        genes = dict(genes)
        if genes.get("block") in NO_EXPANSION:
            genes["expansion"] = None
        elif genes.get("expansion") is None:
            genes["expansion"] = self.config.expansions[0]
        return fill_inactive_defaults(self, genes, ("expansion",))

    def log10_size(self) -> float:
        """Expansion counts only for bottleneck blocks."""
        per_block = sum(len(self.config.expansions) if b == "bottleneck" else 1
                        for b in self.config.blocks)
        rest = sum(math.log10(len(d.options)) for d in self.dimensions
                   if d.name not in ("block", "expansion"))
        return rest + math.log10(per_block)

    def input_size(self, arch: Arch) -> int:
        return int(arch["r"])

    def reference_archs(self) -> dict[str, Arch]:
        refs: dict[str, Arch] = {}
        norm = reference_genes(self)
        imagenet_stem = all(getattr(self.config, f) == getattr(ResNetConfig, f)
                            for f in ("stem_kernel", "stem_stride", "stem_pool"))
        if norm is None or not imagenet_stem:
            return refs  # the references are BatchNorm networks with ImageNet's stem
        for name, (block, expansion, depths) in REFERENCES.items():
            genes: dict[str, Gene] = {"block": block, "expansion": expansion, "r": 224, **norm}
            for i in range(self.num_stages):
                genes[f"d{i + 1}"] = depths[i] if i < len(depths) else None
                genes[f"w{i + 1}"] = 1.0
                genes[f"density{i + 1}"] = 1.0
            genes = {k: v for k, v in genes.items() if k in self.dimension_names}
            try:
                if len(depths) == self.num_stages:
                    refs[name] = self.make(genes)
            except InvalidArchError:
                pass  # a user-defined space that cannot express this network
        return refs

    def parse(self, text: str) -> Arch:
        """A key or body, or a reference name in any case (`resnet50`, `ResNet-50`)."""
        name = text.strip().lower().replace("-", "").replace("_", "")
        refs = self.reference_archs()
        return refs[name] if name in refs else super().parse(text)

    # --- network -------------------------------------------------------------------------------
    def stage_planes(self, arch: Arch) -> list[int]:
        return [round8(base * arch[f"w{i + 1}"])
                for i, base in enumerate(self.config.stage_channels)]

    def blocks(self, arch: Arch, num_classes: int | None = None,
               in_channels: int | None = None) -> list[BlockSpec]:
        self.check(arch)
        size = self.input_size(arch)
        chain = Chain((in_channels or self.default_channels, size, size))
        norm = norm_args(network_norm(self, arch))
        config = self.config
        chain.add("conv_bn_act", "stem", out=config.stem, k=config.stem_kernel,
                  stride=config.stem_stride, **norm)
        if config.stem_pool:
            chain.add("pool", "stem.pool", kind="max", k=3, stride=2, padding=1)
        block = str(arch["block"])
        for i, planes in enumerate(self.stage_planes(arch)):
            args: dict[str, Any] = {"out": planes, **norm}
            if block == "bottleneck":
                args.update(out=planes * int(arch["expansion"]), width=planes)
            density = arch[f"density{i + 1}"] if self.sparse else 1.0
            if density < 1.0:  # dense blocks keep the same spec (and lookup key) in both spaces
                args["density"] = density
            for j in range(int(arch[f"d{i + 1}"])):
                stride = 2 if i > 0 and j == 0 else 1
                chain.add(block, f"stage{i + 1}.{j}", stride=stride, **args)
        chain.add("global_pool", "head.pool")
        chain.add("classifier", "classifier", classes=num_classes or self.default_classes)
        return chain.specs

    # --- keys ----------------------------------------------------------------------------------
    def encode(self, arch: Arch) -> str:
        n = range(1, self.num_stages + 1)
        parts = [str(arch["block"])]
        if arch["expansion"] is not None:
            parts.append(f"e{arch['expansion']}")
        parts.append("d" + join_ints(arch[f"d{i}"] for i in n))
        parts.append("w" + join_floats(arch[f"w{i}"] for i in n))
        if self.sparse:
            parts.append("s" + join_floats(arch[f"density{i}"] for i in n))
        parts.append(f"r{arch['r']}")
        return "-".join(parts + encode_norm(self, arch))

    def decode(self, body: str) -> Arch:
        match = re.fullmatch(rf"(?P<block>[a-z]+)(?:-e(?P<e>[0-9]+))?-d(?P<d>{INTS})"
                             rf"-w(?P<w>{FLOATS})(?:-s(?P<s>{FLOATS}))?-r(?P<r>[0-9]+)"
                             rf"(?:-(?P<norm>[a-z0-9_]+))?", body)
        if match is None:
            self.bad_key(body, "malformed")
        block, e = match["block"], match["e"]
        if block not in self.config.blocks:
            self.bad_key(body, f"block must be one of {list(self.config.blocks)}")
        if (e is None) != (block in NO_EXPANSION):
            self.bad_key(body, "'-e<expansion>' is given for bottleneck blocks only")
        check_densities_field(self, body, match["s"] is not None, self.sparse)
        genes: dict[str, Gene] = {"block": block, "expansion": None if e is None else int(e),
                                  "r": int(match["r"])}
        if (match["norm"] is None) == ("norm" in self.dimension_names):
            self.bad_key(body, "a '-<norm>' part is there exactly when the space offers "
                               "several norms")
        if match["norm"] is not None:
            genes["norm"] = decode_norm(self, body, match["norm"])
        lists: dict[str, list[Any]] = {"d": split_ints(match["d"]),
                                       "w": split_floats(match["w"])}
        if self.sparse:
            lists["density"] = split_floats(match["s"])
        genes.update(per_stage(self, body, lists, self.num_stages,
                               lambda prefix: f"{self.num_stages} values expected after "
                                              f"'{prefix[0]}'"))
        return self.make(genes)

    def key_form(self) -> str:
        return self._form


def create(name: str, config: Mapping[str, Any], sparse: bool) -> ResNetSpace:
    return ResNetSpace(name, config_from_dict(ResNetConfig, name, config), sparse)
