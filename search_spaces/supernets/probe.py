"""Archs whose blocks together show every weight-sharing slot at its largest shape.

Options are ordered cheapest first, so shapes grow along each dimension: the largest and
smallest archs, each with one gene moved to every other option (this reaches candidates that
only exist off the extremes, such as a projection shortcut that appears when a stage is
narrower than its input), plus seeded random archs for combinations of two or more genes.
A whole-network choice whose options have weights of their own in every block (the
normalization-activation `norm`) is probed one option at a time: each option's candidates
must be seen at their largest shapes too, not only at the extremes of the other genes.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from search_spaces.arch import Arch, Gene
from search_spaces.errors import InvalidArchError
from search_spaces.space import SearchSpace

SEPARATE_DIMENSIONS = ("norm",)  # whole-network choices that separate every block's weights


def probe_archs(space: SearchSpace, samples: int = 32, seed: int = 0,
                fixed: dict[str, Gene] | None = None) -> list[Arch]:
    """The distinct probe archs, in a fixed order. `fixed` genes (e.g. a resolution that
    changes no weight shape) are held at the given value."""
    fixed = fixed or {}
    seen: dict[Arch, None] = {}
    for name in SEPARATE_DIMENSIONS:
        if name in space.dimension_names and name not in fixed:
            for option in space.dimension(name).options:
                seen.update(dict.fromkeys(probe_archs(space, samples, seed,
                                                      {**fixed, name: option})))
            return list(seen)
    for arch in _candidates(space, samples, seed, fixed):
        if fixed:
            arch = space.make({**arch.as_dict(), **fixed})
        seen.setdefault(arch, None)
    return list(seen)


def _candidates(space: SearchSpace, samples: int, seed: int,
                fixed: dict[str, Gene]) -> Iterator[Arch]:
    for base, fill in ((space.max_arch(), -1), (space.min_arch(), 0)):
        yield base
        genes = base.as_dict()
        for dim in space.dimensions:
            if dim.name in fixed:
                continue
            for option in dim.options:
                if option == genes[dim.name]:
                    continue
                changed = dict(genes)
                changed[dim.name] = option
                # genes that were inactive take the extreme option of this pass
                changed = {d.name: d.options[fill] if changed[d.name] is None else
                           changed[d.name] for d in space.dimensions}
                changed[dim.name] = option
                try:
                    yield space.make(changed)
                except InvalidArchError:
                    continue
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        yield space.sample(rng)
