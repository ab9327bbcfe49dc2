"""The `norm` gene of the resnet and inverted-residual families: one normalization-activation
kind (search_spaces.ops.norm.NORMS) for every norm-act of the network, as EvoNorm swaps the
layer everywhere.

A space file offers kinds with `norms: [...]` (default `[bn_relu]`). A space that offers one
kind has no `norm` dimension, so its keys, dimensions and vectors are those of before; one that
offers several has a `norm` dimension, and its keys carry the kind as one more '-'-separated
part right after the resolution (`...-r224-evonorm_b0`). Blocks of `bn_relu` networks get no
`norm` argument, so their specs, latency-table entries and supernet weights are those of before.
"""
from __future__ import annotations

from typing import Any, Protocol

from search_spaces import settings
from search_spaces.arch import Arch, Gene
from search_spaces.ops.norm import DEFAULT_NORM, NORMS
from search_spaces.space import Dimension

NORM = "norm"  # the dimension's name


class NormSpace(Protocol):
    """What these helpers read of a space: its config's `norms`."""

    name: str
    config: Any
    dimension_names: tuple[str, ...]

    def bad_key(self, body: str, why: str) -> Any: ...


def norm_options(values: Any) -> tuple[str, ...]:
    """A config's `norms`: distinct kinds from NORMS, in the given order (cheapest first)."""
    return settings.name_list("norms", values, NORMS, distinct=True)


def norm_dimensions(norms: tuple[str, ...]) -> list[Dimension]:
    """The `norm` dimension, only where there is a choice."""
    return [Dimension(NORM, norms)] if len(norms) > 1 else []


def network_norm(space: NormSpace, arch: Arch) -> str:
    """The kind every norm-act of `arch`'s network uses."""
    return str(arch[NORM]) if NORM in space.dimension_names else space.config.norms[0]


def norm_args(norm: str) -> dict[str, Any]:
    """The block argument for `norm`: none for BatchNorm-ReLU (the blocks' default)."""
    return {} if norm == DEFAULT_NORM else {NORM: norm}


def reference_genes(space: NormSpace) -> dict[str, Gene] | None:
    """The genes that make a reference network (a BatchNorm one) of `space`: {"norm":
    "bn_relu"} or {} where there is no norm dimension; None if `bn_relu` is not offered."""
    if DEFAULT_NORM not in space.config.norms:
        return None
    return {NORM: DEFAULT_NORM} if NORM in space.dimension_names else {}


def encode_norm(space: NormSpace, arch: Arch) -> list[str]:
    """The key part of the norm ([] without a norm dimension)."""
    return [str(arch[NORM])] if NORM in space.dimension_names else []


def decode_norm(space: NormSpace, body: str, token: str) -> str:
    """The norm of a key part; a bad key names the kinds the space offers."""
    if token not in space.config.norms:
        space.bad_key(body, f"{token!r} is not a norm of this space "
                            f"({'|'.join(space.config.norms)})")
    return token
