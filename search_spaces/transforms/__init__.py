"""Function-preserving network transformations (Net2Net, EAS): grow a trained network into a
larger arch of the same space without changing what it computes.

Each family module (one per space family) declares `SPACE_TYPE`, `available(space, arch)` (the
`Transform`s that apply: each has a larger option to move to) and `apply(space, arch, model,
transform, rng)` returning `(new_arch, new_model)`, where `new_model` is `space.build(new_arch)`
carrying the transferred weights; in eval mode it computes the same outputs. Adding a family is
one module plus one line in `FAMILIES`. See docs/transform.md.
"""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from search_spaces.arch import Arch
from search_spaces.space import Rng, SearchSpace
from search_spaces.transforms import densenet, inverted_residual, resnet
from search_spaces.transforms.base import (
    KINDS,
    Transform,
    TransformError,
    UnsupportedTransformError,
)

if TYPE_CHECKING:
    from search_spaces.network import Network

FAMILIES: tuple[ModuleType, ...] = (inverted_residual, resnet, densenet)


def family(space: SearchSpace) -> ModuleType:
    """The family module that transforms `space`; UnsupportedTransformError if none does."""
    for module in FAMILIES:
        if isinstance(space, module.SPACE_TYPE):
            return module
    known = ", ".join(m.SPACE_TYPE.__name__ for m in FAMILIES)
    raise UnsupportedTransformError(f"no function-preserving transformations for space "
                                    f"{space.name!r} ({type(space).__name__}); supported "
                                    f"families: {known}")


def supports(space: SearchSpace) -> bool:
    return any(isinstance(space, m.SPACE_TYPE) for m in FAMILIES)


def available(space: SearchSpace, arch: Arch) -> list[Transform]:
    """The transformations that apply to `arch` (each moves one gene to a larger option)."""
    space.check(arch)
    return family(space).available(space, arch)


def apply(space: SearchSpace, arch: Arch, model: Network, transform: Transform,
          rng: Rng = None) -> tuple[Arch, Network]:
    """`transform` applied to `model` (built from `arch`): the new arch and a model carrying
    the transferred weights."""
    return family(space).apply(space, arch, model, transform, rng)


def arch_after(space: SearchSpace, arch: Arch, transform: Transform) -> Arch:
    """The arch `transform` turns `arch` into, without trained weights: the family's own
    `arch_after` where it has one, else the transformation applied to a freshly built model."""
    module = family(space)
    if hasattr(module, "arch_after"):
        return module.arch_after(space, arch, transform)
    return apply(space, arch, space.build(arch), transform, rng=0)[0]


def deepen(space: SearchSpace, arch: Arch, model: Network, stage: int
           ) -> tuple[Arch, Network]:
    """Grow `stage` to its next depth option with blocks that start as the identity."""
    return apply(space, arch, model, Transform("deepen", stage))


def widen(space: SearchSpace, arch: Arch, model: Network, stage: int,
          block: int | None = None, rng: Rng = None) -> tuple[Arch, Network]:
    """Widen `stage` (or one block's hidden width) to the next option by replicating units."""
    return apply(space, arch, model, Transform("widen", stage, block), rng)


def enlarge_kernel(space: SearchSpace, arch: Arch, model: Network, stage: int,
                   block: int | None = None) -> tuple[Arch, Network]:
    """Raise a kernel to the next option by zero-padding it."""
    return apply(space, arch, model, Transform("kernel", stage, block))


__all__ = ["FAMILIES", "KINDS", "Transform", "TransformError", "UnsupportedTransformError",
           "apply", "arch_after", "available", "deepen", "enlarge_kernel", "family", "supports", "widen"]
