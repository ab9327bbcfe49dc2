"""Single-gene neighbourhoods: every architecture one gene away from a given one."""
from __future__ import annotations

from search_spaces import Arch, NasError, SearchSpace
from search_spaces.arch import Gene


def neighbours(space: SearchSpace, arch: Arch) -> list[Arch]:
    """Each active gene set to each of its other options, in dimension order. A gene that a
    change activates (a deeper stage's new layer) copies the closest earlier gene with the same
    options, as a deepened network repeats its last layer; failing that, the middle option."""
    genes = arch.as_dict()
    found: dict[Arch, None] = {}
    for dim in space.dimensions:
        current = genes[dim.name]
        if current is None or len(dim.options) < 2:
            continue
        for option in dim.options:
            if option == current:
                continue
            changed = _fill_inactive(space, {**genes, dim.name: option})
            try:
                child = space.make(changed)
            except NasError:  # a combination the space forbids: not a neighbour
                continue
            if child != arch:
                found[child] = None
    return list(found)


def _fill_inactive(space: SearchSpace, genes: dict[str, Gene]) -> dict[str, Gene]:
    last_by_options: dict[tuple[Gene, ...], Gene] = {}
    for dim in space.dimensions:
        value = genes[dim.name]
        if value is None:
            genes[dim.name] = last_by_options.get(dim.options, dim.options[len(dim.options) // 2])
        else:
            last_by_options[dim.options] = value
    return genes
