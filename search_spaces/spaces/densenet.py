"""DenseNet family: growth rate, layers and block type per dense block, compression, resolution.

Network (DenseNet-BC, torchvision conventions): stem Conv7x7 s2 with 2*growth channels (the
paper's rule: 64 at growth 32) - BN - ReLU, MaxPool 3x3 s2; four blocks, each followed (but the
last) by a transition BN-ReLU-Conv1x1(floor(C*compression))-AvgPool 2x2; final BN-ReLU, global
average pool and a linear classifier. DenseNet-121 and -169 are points of the space.

A block with L layers is either
* `dense`: L dense layers (BN-ReLU-Conv1x1(4*growth)-BN-ReLU-Conv3x3(growth), concatenated), or
* `osa`: one VoVNet one-shot aggregation module that produces the same new features in fewer,
  wider layers: n = ceil(L/4) Conv3x3 layers of s = 4*growth channels (n*s ~ L*growth), then a
  Conv1x1 from the concat of the input and the n outputs to `in + L*growth` channels, i.e. the
  dense block's output width, so the transitions do not depend on the block type.

Key body: `g<growth>-c<compression>-<type per block>-b<layers per block>[-s<density per
block>]-r<res>`, e.g. `g32-c0.5-dense.dense.dense.dense-b6.12.24.16-r224` (DenseNet-121).
In sparse spaces, density<i> applies to block i and the transition after it.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
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
from search_spaces.space import BlockSpec, Chain, Dimension, SearchSpace, config_from_dict
from search_spaces.spaces.resnet import (
    DENSITIES,
    fill_inactive_defaults,
    float_options,
    int_options,
    nested_int_options,
    str_options,
)

# cheapest first: at the same layer count an OSA block costs fewer MACs and params
BLOCK_TYPES = ("osa", "dense")
OSA_GROUP = 4  # dense layers one OSA conv layer stands for (n = ceil(L / 4))


@dataclass(frozen=True)
class DenseNetConfig:
    """Settings of a DenseNet space (every list is the options of one dimension)."""

    growths: tuple[int, ...] = (12, 16, 24, 32)
    compressions: tuple[float, ...] = (0.5, 0.75, 1.0)
    block_types: tuple[str, ...] = BLOCK_TYPES
    layers: tuple[tuple[int, ...], ...] = ((2, 4, 6), (4, 8, 12), (8, 16, 24, 32), (4, 8, 16, 32))
    resolutions: tuple[int, ...] = (128, 160, 192, 224)
    bn_size: int = 4
    stem_mult: int = 2
    densities: tuple[float, ...] = DENSITIES

    def __post_init__(self) -> None:
        fields = {
            "growths": int_options("growths", self.growths),
            "compressions": float_options("compressions", self.compressions, 0.0, 1.0),
            "block_types": str_options("block_types", self.block_types, BLOCK_TYPES),
            "layers": nested_int_options("layers", self.layers),
            "resolutions": int_options("resolutions", self.resolutions, 32,
                                       settings.MAX_RESOLUTION),
            "bn_size": settings.int_value("bn_size", self.bn_size, 1, 64),
            "stem_mult": settings.int_value("stem_mult", self.stem_mult, 1, 64),
            "densities": float_options("densities", self.densities, 0.0, 1.0),
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)


# The family's own description (read by the registry): `<name>-sparse` adds per-stage
# weight density to its conv/linear layers.
SPARSE_VARIANT = True

PRESETS: dict[str, dict[str, Any]] = {
    "densenet": {
        "growths": [12, 16, 24, 32],
        "compressions": [0.5, 0.75, 1.0],
        "block_types": ["osa", "dense"],
        "layers": [[2, 4, 6], [4, 8, 12], [8, 16, 24, 32], [4, 8, 16, 32]],
        "resolutions": [128, 160, 192, 224],
    },
}

# name -> layers per block; growth 32, compression 0.5, dense blocks, 224 px
REFERENCES: dict[str, tuple[int, ...]] = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
}


class DenseNetSpace(SearchSpace):
    """Dimensions: growth, compression, t<i>, b<i>, r[, density<i>]."""

    def __init__(self, name: str, config: DenseNetConfig, sparse: bool = False):
        self.name = name
        self.config = config
        self.sparse = sparse
        self.num_blocks = len(config.layers)
        n = range(1, self.num_blocks + 1)
        dims = [Dimension("growth", config.growths),
                Dimension("compression", config.compressions)]
        dims += [Dimension(f"t{i}", config.block_types) for i in n]
        dims += [Dimension(f"b{i}", opts) for i, opts in zip(n, config.layers)]
        dims.append(Dimension("r", config.resolutions))
        if sparse:
            dims += [Dimension(f"density{i}", config.densities) for i in n]
        self.dimensions = tuple(dims)
        self._form = (f"'g<growth>-c<compression>-<{'|'.join(config.block_types)} per block>"
                      f"-b<layers per block>{'-s<density per block>' if sparse else ''}"
                      f"-r<resolution>', e.g. 'g32-c0.5-dense.dense.dense.dense-b6.12.24.16"
                      f"{'-s1.0.1.0.1.0.1.0' if sparse else ''}-r224'")

    # --- genes ---------------------------------------------------------------------------------
    def canonical(self, genes: dict[str, Gene]) -> dict[str, Gene]:
        return fill_inactive_defaults(self, dict(genes), ())

    def input_size(self, arch: Arch) -> int:
        return int(arch["r"])

    def reference_archs(self) -> dict[str, Arch]:
        refs = {}
        for name, layers in REFERENCES.items():
            if len(layers) != self.num_blocks:
                continue
            genes: dict[str, Gene] = {"growth": 32, "compression": 0.5, "r": 224}
            for i, count in enumerate(layers, 1):
                genes.update({f"t{i}": "dense", f"b{i}": count, f"density{i}": 1.0})
            genes = {k: v for k, v in genes.items() if k in self.dimension_names}
            try:
                refs[name] = self.make(genes)
            except InvalidArchError:
                pass  # a user-defined space that cannot express this network
        return refs

    def parse(self, text: str) -> Arch:
        """A key or body, or a reference name in any case (`densenet121`, `DenseNet-121`)."""
        name = text.strip().lower().replace("-", "").replace("_", "")
        refs = self.reference_archs()
        return refs[name] if name in refs else super().parse(text)

    # --- network -------------------------------------------------------------------------------
    def blocks(self, arch: Arch, num_classes: int | None = None,
               in_channels: int | None = None) -> list[BlockSpec]:
        self.check(arch)
        size, growth = self.input_size(arch), int(arch["growth"])
        chain = Chain((in_channels or self.default_channels, size, size))
        chain.add("conv_bn_act", "stem", out=self.config.stem_mult * growth, k=7, stride=2)
        chain.add("pool", "stem.pool", kind="max", k=3, stride=2, padding=1)
        for i in range(1, self.num_blocks + 1):
            density = arch[f"density{i}"] if self.sparse else 1.0
            # dense blocks keep the same spec (and lookup key) in the dense and sparse spaces
            extra: dict[str, Any] = {"density": density} if density < 1.0 else {}
            self._add_block(chain, i, str(arch[f"t{i}"]), int(arch[f"b{i}"]), growth, extra)
            if i < self.num_blocks:
                out = max(1, math.floor(chain.shape[0] * float(arch["compression"]) + 1e-9))
                chain.add("transition", f"transition{i}", out=out, **extra)
        chain.add("bn_act", "head.norm")
        chain.add("global_pool", "head.pool")
        chain.add("classifier", "classifier", classes=num_classes or self.default_classes)
        return chain.specs

    def _add_block(self, chain: Chain, index: int, kind: str, layers: int, growth: int,
                   extra: dict[str, Any]) -> None:
        bn_size = self.config.bn_size
        if kind == "dense":
            for j in range(layers):
                chain.add("dense_layer", f"block{index}.{j}", growth=growth, bn_size=bn_size,
                          **extra)
        else:
            chain.add("osa", f"block{index}.osa", stage=OSA_GROUP * growth,
                      n=math.ceil(layers / OSA_GROUP), out=chain.shape[0] + layers * growth,
                      **extra)

    # --- keys ----------------------------------------------------------------------------------
    def encode(self, arch: Arch) -> str:
        n = range(1, self.num_blocks + 1)
        parts = [f"g{arch['growth']}", f"c{float(arch['compression'])!r}",
                 ".".join(str(arch[f"t{i}"]) for i in n), "b" + join_ints(arch[f"b{i}"] for i in n)]
        if self.sparse:
            parts.append("s" + join_floats(arch[f"density{i}"] for i in n))
        parts.append(f"r{arch['r']}")
        return "-".join(parts)

    def decode(self, body: str) -> Arch:
        match = re.fullmatch(rf"g(?P<g>[0-9]+)-c(?P<c>[0-9]+\.[0-9]+)"
                             rf"-(?P<t>[a-z]+(?:\.[a-z]+)*)"
                             rf"-b(?P<b>{INTS})(?:-s(?P<s>{FLOATS}))?-r(?P<r>[0-9]+)", body)
        if match is None:
            self.bad_key(body, "malformed")
        check_densities_field(self, body, match["s"] is not None, self.sparse)
        genes: dict[str, Gene] = {"growth": int(match["g"]), "compression": float(match["c"]),
                                  "r": int(match["r"])}
        lists: dict[str, list[Any]] = {"t": match["t"].split("."), "b": split_ints(match["b"])}
        if self.sparse:
            lists["density"] = split_floats(match["s"])
        genes.update(per_stage(self, body, lists, self.num_blocks,
                               lambda prefix: f"{self.num_blocks} values expected for "
                                              f"'{prefix}'"))
        return self.make(genes)

    def key_form(self) -> str:
        return self._form


def create(name: str, config: Mapping[str, Any], sparse: bool) -> DenseNetSpace:
    return DenseNetSpace(name, config_from_dict(DenseNetConfig, name, config), sparse)
