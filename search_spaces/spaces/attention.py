"""What the attention spaces (`vit.py`: plain ViT, `vit_hybrid.py`: MOAT-like hybrid) share:
config option checks, exact key tokens, and the base class (dense/sparse handling, canonical
form, size count, reference archs)."""
from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

from search_spaces import settings
from search_spaces.arch import Arch, Gene
from search_spaces.space import Dimension, SearchSpace

DENSITIES: tuple[float, ...] = (0.25, 0.5, 1.0)  # sparse variants: cheapest first


def option_tuple(values: Any, name: str, reverse: bool = False,
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


def check_ints(values: tuple, name: str, odd: bool = False) -> None:
    if any(not settings.is_int(v) for v in values):
        raise ValueError(f"{name} must be integers, got {values}")
    if odd and any(v % 2 == 0 for v in values):
        raise ValueError(f"{name} must be odd (an even kernel changes the output size), "
                         f"got {values}")


def check_heads(widths: tuple[int, ...], heads: tuple[int, ...], what: str) -> None:
    bad = [(w, h) for w in widths for h in heads if w % h]
    if bad:
        raise ValueError(f"every {what} must be divisible by every heads option; "
                         f"{bad[0][0]} is not divisible by {bad[0][1]}")


class Tokens:
    """Key tokens of each dimension's options (str(option)), for exact decoding."""

    def __init__(self, dimensions: tuple[Dimension, ...]):
        self.table = {d.name: {str(o): o for o in d.options} for d in dimensions}

    def gene(self, space: AttentionSpace, body: str, name: str, token: str) -> Gene:
        if token not in self.table[name]:
            space.bad_key(body, f"{token!r} is not a valid {name} ({'/'.join(self.table[name])})")
        return self.table[name][token]


class AttentionSpace(SearchSpace):
    """Shared by both kinds: dense/sparse handling, canonical form, errors."""

    sparse: bool
    _tokens: Tokens
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

