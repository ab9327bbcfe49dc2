"""Finding a space by name from below the registry: `Arch` (which every space imports) needs its
space to encode and decode keys, and the registry (which imports the spaces) installs the
lookup when it loads, so `arch` never imports `registry` (no import cycle)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class SpaceCodec(Protocol):
    """What `Arch` asks of its space (a `SearchSpace` is one)."""

    def encode(self, arch: Any) -> str: ...

    def decode(self, body: str) -> Any: ...

    def to_vector(self, arch: Any) -> Any: ...


_lookup: list[Callable[[str], SpaceCodec]] = []


def install(lookup: Callable[[str], SpaceCodec]) -> None:
    """Set the function that finds a space by name (the registry's `get_space`)."""
    _lookup[:] = [lookup]


def find_space(name: str) -> SpaceCodec:
    """The space called `name`, through the installed lookup (importing `search_spaces`
    installs the registry's)."""
    if not _lookup:
        raise RuntimeError("no space lookup installed: import search_spaces first")
    return _lookup[0](name)


__all__ = ["SpaceCodec", "find_space", "install"]
