"""The distinct blocks a space can produce (what a lookup table must hold).

Three passes, cheapest first: every architecture when the space is small; a tied sweep (every
dimension that shares an option list takes the same value, over all combinations: for the
mobile space that is resolution x depth x kernel x expand, which yields every block at every
position); then random samples until `patience` samples in a row add nothing. Blocks a space
can still produce beyond that are measured when first asked for (see `TablePredictor`).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from search_spaces import Arch, BlockSpec, InvalidArchError, SearchSpace

EXHAUSTIVE_LOG10 = 4.3  # enumerate every architecture up to ~20,000 of them
MAX_SWEEP = 5000


@dataclass(frozen=True)
class BlockSet:
    """Distinct blocks by signature, and how they were found."""

    blocks: dict[str, BlockSpec]
    archs_visited: int
    method: str


def _collect(space: SearchSpace, arch: Arch, seen: dict[str, BlockSpec],
             num_classes: int | None) -> int:
    added = 0
    for spec in space.blocks(arch, num_classes):
        sig = spec.signature
        if sig not in seen:
            seen[sig] = spec
            added += 1
    return added


def _make(space: SearchSpace, genes: dict[str, object]) -> Arch | None:
    try:
        return space.make(genes)
    except InvalidArchError:
        return None


def tied_sweep(space: SearchSpace) -> list[Arch] | None:
    """Architectures where dimensions with equal option lists share one value; None if there
    are more than MAX_SWEEP combinations."""
    groups: dict[tuple, list[str]] = {}
    for dim in space.dimensions:
        groups.setdefault(dim.options, []).append(dim.name)
    if math.prod(len(options) for options in groups) > MAX_SWEEP:
        return None
    archs = []
    for values in itertools.product(*groups):
        genes = {name: value for options, value in zip(groups, values) for name in groups[options]}
        arch = _make(space, genes)
        if arch is not None:
            archs.append(arch)
    return archs


def all_archs(space: SearchSpace) -> list[Arch]:
    archs = {}
    for values in itertools.product(*(d.options for d in space.dimensions)):
        arch = _make(space, dict(zip(space.dimension_names, values)))
        if arch is not None:
            archs[arch] = None
    return list(archs)


def distinct_blocks(space: SearchSpace, num_classes: int | None = None, seed: int = 0,
                    patience: int = 300, max_samples: int = 20000) -> BlockSet:
    """Every distinct block found by the passes described in the module docstring."""
    seen: dict[str, BlockSpec] = {}
    visited = 0
    methods = []
    if space.log10_size() <= EXHAUSTIVE_LOG10:
        for arch in all_archs(space):
            _collect(space, arch, seen, num_classes)
            visited += 1
        return BlockSet(seen, visited, "exhaustive")
    sweep = tied_sweep(space)
    if sweep is not None:
        for arch in sweep:
            _collect(space, arch, seen, num_classes)
        visited += len(sweep)
        methods.append("tied sweep")
    rng = np.random.default_rng(seed)
    quiet = 0
    samples = 0
    while quiet < patience and samples < max_samples:
        added = _collect(space, space.sample(rng), seen, num_classes)
        quiet = 0 if added else quiet + 1
        samples += 1
    visited += samples
    methods.append(f"random until {patience} samples added nothing")
    return BlockSet(seen, visited, " + ".join(methods))
