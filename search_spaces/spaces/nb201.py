"""NAS-Bench-201: one 4-node cell (6 edges x 5 ops = 15,625 networks) repeated in the CIFAR
skeleton (stem, 3 stages of N cells, ResNet reductions, BN-ReLU-pool-linear head).

Isomorphic cells are not merged: the benchmark has 15,625 distinct entries, and
`index_of`/`from_index` follow its official index order (a package data file, loaded lazily).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from search_spaces import settings
from search_spaces.arch import Arch
from search_spaces.errors import InvalidArchError, NasError
from search_spaces.ops.cell import CELL_OPS, EDGE_ARGS, EDGES
from search_spaces.space import BlockSpec, Chain, Dimension, SearchSpace, config_from_dict

ORDER_FILE = Path(__file__).resolve().parent.parent / "data" / "nb201_order.txt"
# Digit of each op in ORDER_FILE (the benchmark's own op list order).
OFFICIAL_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Short names used in key bodies.
SHORT = {"none": "none", "skip_connect": "skip", "avg_pool_3x3": "avg", "nor_conv_1x1": "c1",
         "nor_conv_3x3": "c3"}
FROM_SHORT = {v: k for k, v in SHORT.items()}
NUM_ARCHS = len(CELL_OPS) ** len(EDGES)
KEY_FORM = "'OP+OP.OP+OP.OP.OP' (inputs of nodes 1, 2, 3) with OP in none/skip/avg/c1/c3"
OFFICIAL_FORM = "expected '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"


@dataclass(frozen=True)
class NB201Config:
    """The CIFAR skeleton: `channels` in stage 1 (doubled at each reduction), `cells` per stage.
    CIFAR-100 is `classes: 100`; ImageNet16-120 is `classes: 120, resolution: 16`."""

    channels: int = 16
    cells: int = 5
    classes: int = 10
    resolution: int = 32

    def __post_init__(self) -> None:
        limits = {"channels": settings.MAX_CHANNELS, "cells": settings.MAX_DEPTH,
                  "classes": settings.MAX_CLASSES, "resolution": settings.MAX_RESOLUTION}
        for field, high in limits.items():
            settings.int_value(field, getattr(self, field), 1, high)
        if self.resolution % 4:
            raise ValueError(f"resolution must be divisible by 4 (two reductions), "
                             f"got {self.resolution}")


class NB201Space(SearchSpace):
    """Six dimensions `e<to>_<from>`, one per cell edge, options ordered by cost."""

    # jacov's rank, a third of the supernet's score: Kendall tau 0.46 -> 0.55 against
    # standalone training on 35 reduced-NB201 cells (docs/ranking.md)
    score_proxy = "jacov"

    def __init__(self, name: str, config: NB201Config):
        self.name = name
        self.config = config
        self.default_classes = config.classes
        self.dimensions = tuple(Dimension(a, CELL_OPS) for a in EDGE_ARGS)

    def blocks(self, arch: Arch, num_classes: int | None = None,
               in_channels: int | None = None) -> list[BlockSpec]:
        self.check(arch)
        cfg = self.config
        size = cfg.resolution
        chain = Chain((in_channels or self.default_channels, size, size))
        chain.add("conv_bn_act", "stem", out=cfg.channels, k=3, act="none")
        edges = {a: arch[a] for a in EDGE_ARGS}
        for stage in range(3):
            if stage:
                chain.add("nb201_reduce", f"reduce{stage}", out=cfg.channels * 2 ** stage)
            for i in range(cfg.cells):
                chain.add("nb201_cell", f"stage{stage + 1}.{i}", **edges)
        chain.add("bn_act", "head.bn", act="relu")
        chain.add("global_pool", "head.pool")
        chain.add("classifier", "classifier", classes=num_classes or self.default_classes)
        return chain.specs

    def input_size(self, arch: Arch) -> int:
        return self.config.resolution

    # --- keys ---------------------------------------------------------------------------------
    def encode(self, arch: Arch) -> str:
        ops = [SHORT[arch[a]] for a in EDGE_ARGS]
        return "+".join(".".join(ops[start:start + n]) for start, n in ((0, 1), (1, 2), (3, 3)))

    def decode(self, body: str) -> Arch:
        nodes = body.strip().split("+")
        tokens = [t.split(".") for t in nodes]
        if [len(t) for t in tokens] != [1, 2, 3]:
            self.bad_key(body, "malformed")
        flat = [op for node in tokens for op in node]
        unknown = [op for op in flat if op not in FROM_SHORT]
        if unknown:
            self.bad_key(body, f"unknown op {unknown[0]!r}")
        return self.make(dict(zip(EDGE_ARGS, (FROM_SHORT[op] for op in flat))))

    def key_form(self) -> str:
        return KEY_FORM

    def parse(self, text: str) -> Arch:
        """A key, a reference name, or the official string `|op~0|+|op~0|op~1|+|...|`."""
        stripped = text.strip()
        if stripped.startswith("|"):
            return self.from_official(stripped)
        return super().parse(stripped)

    def to_official(self, arch: Arch) -> str:
        """The benchmark's cell string, e.g. `|nor_conv_3x3~0|+|nor_conv_3x3~0|...|`."""
        self.check(arch)
        nodes: list[list[str]] = [[], [], []]
        for arg, (i, j) in zip(EDGE_ARGS, EDGES):
            nodes[i - 1].append(f"{arch[arg]}~{j}")
        return "+".join("|" + "|".join(node) + "|" for node in nodes)

    def from_official(self, text: str) -> Arch:
        """Inverse of `to_official`; raises InvalidArchError on any other form."""
        text = text.strip()
        if not (text.startswith("|") and text.endswith("|")):
            raise InvalidArchError(f"bad NB201 string {text!r}: {OFFICIAL_FORM}")
        nodes = [node.split("|") for node in text[1:-1].split("|+|")]
        if [len(n) for n in nodes] != [1, 2, 3]:
            raise InvalidArchError(f"bad NB201 string {text!r}: {OFFICIAL_FORM}")
        genes = {}
        for arg, (i, j), item in zip(EDGE_ARGS, EDGES, (t for n in nodes for t in n)):
            op, sep, source = item.partition("~")
            if op not in CELL_OPS or sep != "~" or source != str(j):
                raise InvalidArchError(f"bad NB201 edge {item!r} in {text!r}: expected "
                                       f"'<op>~{j}' with op in {', '.join(OFFICIAL_OPS)}")
            genes[arg] = op
        return self.make(genes)

    # --- official index -----------------------------------------------------------------------
    def index_of(self, arch: Arch) -> int:
        """Row of `arch` in the benchmark (its official index, 0..15624)."""
        self.check(arch)
        return _official_index()[_digits(arch)]

    def from_index(self, index: int) -> Arch:
        """The arch at official index `index`."""
        order = _official_order()
        if not isinstance(index, int) or not 0 <= index < len(order):
            raise InvalidArchError(f"NB201 index must be an integer in 0..{len(order) - 1}, "
                                   f"got {index!r}")
        digits = order[index]
        return self.make({a: OFFICIAL_OPS[int(d)] for a, d in zip(EDGE_ARGS, digits)})

    def reference_archs(self) -> dict[str, Arch]:
        return {
            "all_none": self.make({a: "none" for a in EDGE_ARGS}),
            "all_skip": self.make({a: "skip_connect" for a in EDGE_ARGS}),
            "all_c3": self.make({a: "nor_conv_3x3" for a in EDGE_ARGS}),
        }


def output_connected(arch: Arch) -> bool:
    """Whether the cell's output (node 3) is reachable from its input through edges that are
    not `none`: a cell without such a path outputs zeros and every network of it is at chance."""
    reached = {0}
    for arg, (to, source) in zip(EDGE_ARGS, EDGES):  # edges come in topological order
        if arch[arg] != "none" and source in reached:
            reached.add(to)
    return 3 in reached


def _digits(arch: Arch) -> str:
    return "".join(str(OFFICIAL_OPS.index(arch[a])) for a in EDGE_ARGS)


@lru_cache(maxsize=1)
def _official_order() -> tuple[str, ...]:
    lines = [ln.strip() for ln in ORDER_FILE.read_text().splitlines()]
    order = tuple(ln for ln in lines if ln and not ln.startswith("#"))
    if len(order) != NUM_ARCHS or len(set(order)) != NUM_ARCHS:
        raise RuntimeError(f"{ORDER_FILE} is damaged: expected {NUM_ARCHS} distinct cells")
    return order


@lru_cache(maxsize=1)
def _official_index() -> dict[str, int]:
    return {digits: i for i, digits in enumerate(_official_order())}


# The family's own description (read by the registry): `<name>-sparse` adds per-stage
# weight density; NB201 cells have no dense layers worth sparsifying.
SPARSE_VARIANT = False

PRESETS: dict[str, dict] = {"nb201": {"channels": 16, "cells": 5, "classes": 10, "resolution": 32}}


def create(name: str, config: dict, sparse: bool) -> SearchSpace:
    if sparse:
        raise NasError(f"space {name!r}: NAS-Bench-201 has no sparse variant "
                       f"(its cells are fixed by the benchmark)")
    return NB201Space(name, config_from_dict(NB201Config, name, config))
