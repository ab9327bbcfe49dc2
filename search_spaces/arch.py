"""`Arch`: a frozen, hashable point of a search space with a canonical readable key."""
from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from search_spaces.errors import InvalidArchError
from search_spaces.lookup import SpaceCodec, find_space

Gene = Hashable  # int, float, str or None (None = inactive, e.g. a layer beyond the depth)


@dataclass(frozen=True)
class Arch:
    """An architecture: the space's name and one value per dimension, in the space's order."""

    space: str
    genes: tuple[tuple[str, Gene], ...]

    def __getitem__(self, name: str) -> Gene:
        for key, value in self.genes:
            if key == name:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[tuple[str, Gene]]:
        return iter(self.genes)

    def as_dict(self) -> dict[str, Gene]:
        return dict(self.genes)

    def replace(self, **changes: Gene) -> Arch:
        """A copy with some genes changed (not canonicalised: use `space.canonical`)."""
        return Arch(self.space, tuple((k, changes.get(k, v)) for k, v in self.genes))

    @property
    def search_space(self) -> SpaceCodec:
        """The space this arch belongs to (a `SearchSpace`, found by name)."""
        return find_space(self.space)

    @property
    def key(self) -> str:
        """Canonical readable key `<space>:<body>`; `Arch.decode(a.key) == a`."""
        return f"{self.space}:{self.search_space.encode(self)}"

    @staticmethod
    def decode(key: str) -> Arch:
        """Parse a key made by `Arch.key` (the space is named before the first ':')."""
        space_name, sep, body = key.partition(":")
        if not sep:
            raise InvalidArchError(f"arch key {key!r} has no '<space>:' prefix")
        return find_space(space_name).decode(body)

    def to_vector(self) -> np.ndarray:
        """Fixed-length numeric encoding for predictors (see `SearchSpace.to_vector`)."""
        return self.search_space.to_vector(self)

    def __str__(self) -> str:
        return self.key


def arch_from_mapping(space: str, order: tuple[str, ...], values: Mapping[str, Any]) -> Arch:
    return Arch(space, tuple((name, values.get(name)) for name in order))
