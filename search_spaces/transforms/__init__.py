"""Function-preserving network transformations (Net2Net, EAS): grow a trained network into a
larger arch of the same space without changing what it computes.

Each family module (one per space family) declares `SPACE_TYPE`, `available(space, arch)` (the
`Transform`s that apply: each has a larger option to move to) and `apply(space, arch, model,
transform, rng)` returning `(new_arch, new_model)`, where `new_model` is `space.build(new_arch)`
carrying the transferred weights; in eval mode it computes the same outputs; and
`arch_after(space, arch, transform)`, the new arch alone, without building a network. Adding a
family is one module plus one line in `FAMILIES`.

Reductions (`remove` a block, `narrow` a width: N2N students, Ashok et al. 2018) go the other
way and are NOT function-preserving: `reductions(space, arch)` lists them (`available` never
does), `apply` and `arch_after` take them too. Each family that has them has a module in
`SHRINKERS` with the same `SPACE_TYPE`/`reductions`/`apply`/`arch_after`. See
docs/transform.md. Both work on BatchNorm networks only: an arch whose `norm` is another
normalization-activation (search_spaces.ops.norm) is refused with UnsupportedTransformError.
"""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from search_spaces.arch import Arch
from search_spaces.ops.norm import DEFAULT_NORM
from search_spaces.space import Rng, SearchSpace
from search_spaces.transforms import (
    densenet,
    inverted_residual,
    resnet,
    shrink_inverted_residual,
    shrink_resnet,
)
from search_spaces.transforms.base import (
    GROWTHS,
    KINDS,
    REDUCTIONS,
    Transform,
    TransformError,
    UnsupportedTransformError,
)

if TYPE_CHECKING:
    from search_spaces.network import Network

FAMILIES: tuple[ModuleType, ...] = (inverted_residual, resnet, densenet)
SHRINKERS: tuple[ModuleType, ...] = (shrink_inverted_residual, shrink_resnet)


def family(space: SearchSpace) -> ModuleType:
    """The family module that transforms `space`; UnsupportedTransformError if none does."""
    for module in FAMILIES:
        if isinstance(space, module.SPACE_TYPE):
            return module
    known = ", ".join(m.SPACE_TYPE.__name__ for m in FAMILIES)
    raise UnsupportedTransformError(f"no function-preserving transformations for space "
                                    f"{space.name!r} ({type(space).__name__}); supported "
                                    f"families: {known}")


def shrinker(space: SearchSpace) -> ModuleType:
    """The module with `space`'s reductions; UnsupportedTransformError (with the family's
    reason where it gives one) if none."""
    grower = family(space)
    for module in SHRINKERS:
        if isinstance(space, module.SPACE_TYPE):
            return module
    why = getattr(grower, "NO_REDUCTIONS", "not done yet")
    raise UnsupportedTransformError(f"no reductions for space {space.name!r} "
                                    f"({type(space).__name__}): {why}")


def check_batchnorm(space: SearchSpace, arch: Arch) -> None:
    """UnsupportedTransformError unless `arch`'s network normalises with BatchNorm (the weight
    transfers replicate and reset BatchNorm statistics; an EvoNorm or GroupNorm is no BN)."""
    norms = getattr(getattr(space, "config", None), "norms", (DEFAULT_NORM,))
    norm = arch.as_dict().get("norm") or norms[0]
    if norm != DEFAULT_NORM:
        raise UnsupportedTransformError(f"transformations handle BatchNorm networks only; "
                                        f"{arch.key} uses {norm}")


def supports(space: SearchSpace) -> bool:
    return any(isinstance(space, m.SPACE_TYPE) for m in FAMILIES)


def available(space: SearchSpace, arch: Arch) -> list[Transform]:
    """The function-preserving transformations that apply to `arch` (each moves one gene to a
    larger option); never reductions."""
    space.check(arch)
    check_batchnorm(space, arch)
    return family(space).available(space, arch)


def reductions(space: SearchSpace, arch: Arch) -> list[Transform]:
    """The reductions (remove, narrow) that apply to `arch`; not function-preserving."""
    space.check(arch)
    check_batchnorm(space, arch)
    return shrinker(space).reductions(space, arch)


def _module(space: SearchSpace, transform: Transform) -> ModuleType:
    return shrinker(space) if transform.kind in REDUCTIONS else family(space)


def apply(space: SearchSpace, arch: Arch, model: Network, transform: Transform,
          rng: Rng = None) -> tuple[Arch, Network]:
    """`transform` applied to `model` (built from `arch`): the new arch and a model carrying
    the transferred weights (all of them for a growth; the kept ones for a reduction)."""
    check_batchnorm(space, arch)
    return _module(space, transform).apply(space, arch, model, transform, rng)


def arch_after(space: SearchSpace, arch: Arch, transform: Transform) -> Arch:
    """The arch `transform` turns `arch` into, without building a network (what a search
    that draws many edits calls)."""
    check_batchnorm(space, arch)
    return _module(space, transform).arch_after(space, arch, transform)


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


def remove(space: SearchSpace, arch: Arch, model: Network, stage: int, block: int
           ) -> tuple[Arch, Network]:
    """Drop block `block` (2..d) of `stage`; the later blocks move down with their weights."""
    return apply(space, arch, model, Transform("remove", stage, block))


def narrow(space: SearchSpace, arch: Arch, model: Network, stage: int,
           block: int | None = None) -> tuple[Arch, Network]:
    """Lower a width gene to the next smaller option, keeping the most important units."""
    return apply(space, arch, model, Transform("narrow", stage, block))


__all__ = ["FAMILIES", "GROWTHS", "KINDS", "REDUCTIONS", "SHRINKERS", "Transform",
           "TransformError", "UnsupportedTransformError", "apply", "arch_after", "available",
           "deepen", "enlarge_kernel", "family", "narrow", "reductions", "remove", "shrinker",
           "supports", "widen"]
