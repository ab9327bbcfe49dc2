"""Continuous relaxation of a search space: which blocks each searched dimension changes.

The space's own `blocks(arch)` is the only source of truth. Starting from a base architecture
(every searched dimension at its largest option, so every optional block exists), each
dimension is varied one option at a time and classified:

- a *choice*: it changes the specs of some blocks, never their number or shapes (FBNet's layer
  op, OFA's kernel and expand ratio, a stage density, an NB201 cell edge);
- a *depth*: its options drop a tail of a run of shape-preserving blocks (OFA's stage depth);
- a *reshaping* dimension (resolution, width multiplier, a depth whose dropped blocks change
  the shape): it cannot be mixed, so it is held fixed (`pin`) and the analysis restarts.

Each block position then depends on a set of choice dimensions. Its candidates are the specs
of every combination of their options (at most `JOINT_LIMIT`), or, for a block whose op takes
each dimension as one of its own arguments (the NB201 cell: one argument per edge), the block
is decomposed per argument (see `supernet.DECOMPOSABLE`). The result is checked against
`space.blocks` on random architectures, so a relaxation never builds something else than the
space would.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from nas.differentiable.errors import RelaxationError
from search_spaces import Arch, BlockSpec, Dimension, SearchSpace
from search_spaces.arch import Gene
from search_spaces.ops import block_out_shape, get_op

JOINT_LIMIT = 64  # most option combinations a block may depend on jointly
CHECK_SAMPLES = 8  # random architectures the relaxation is verified on

Pin = Callable[[Dimension], Gene]


@dataclass(frozen=True)
class Candidate:
    """One option combination of a position: `combo[i]` is the option index of `dims[i]`."""

    combo: tuple[int, ...]
    spec: BlockSpec  # as built (the data's classes and channels)
    cost_spec: BlockSpec  # as counted (the space's default classes and channels)


@dataclass(frozen=True)
class Position:
    """One block of the base network. `kind`: `fixed` (no searched dimension changes it),
    `joint` (one candidate per combination of `dims`) or `decomposed` (the op mixes each of
    `dims`, which are its own argument names, internally)."""

    index: int
    kind: str
    dims: tuple[str, ...]
    candidates: tuple[Candidate, ...]  # joint: every combination; otherwise the base block
    # decomposed only: per dimension, the block with just that argument at each option
    per_dim: tuple[tuple[Candidate, ...], ...] = ()

    @property
    def base(self) -> Candidate:
        return self.candidates[-1]


@dataclass(frozen=True)
class DepthChoice:
    """A depth dimension: option i keeps the first `keep[i]` blocks of positions [start, end)."""

    dim: str
    start: int
    end: int
    keep: tuple[int, ...]


@dataclass(frozen=True)
class Relaxation:
    """A space as a sequence of positions with searched choices, depths and fixed genes."""

    space: SearchSpace
    searched: tuple[Dimension, ...]
    fixed: Mapping[str, Gene]
    pinned: tuple[str, ...]  # the fixed dimensions that were pinned because they reshape
    positions: tuple[Position, ...]
    depths: tuple[DepthChoice, ...]
    num_classes: int | None
    in_channels: int | None
    base_genes: Mapping[str, Gene] = field(repr=False)

    @property
    def dim_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.searched)

    def dimension(self, name: str) -> Dimension:
        return next(d for d in self.searched if d.name == name)

    def arch(self, choice: Mapping[str, int]) -> Arch:
        """The architecture that takes option `choice[d]` of every searched dimension."""
        genes = dict(self.base_genes)
        for dim in self.searched:
            genes[dim.name] = dim.options[int(choice[dim.name])]
        return self.space.make(genes)

    def choice_of(self, arch: Arch) -> dict[str, int]:
        """Option indices of `arch` (an inactive gene takes its base option)."""
        choice = {}
        for dim in self.searched:
            value = arch[dim.name]
            value = self.base_genes[dim.name] if value is None else value
            choice[dim.name] = dim.options.index(value)
        return choice

    def specs(self, choice: Mapping[str, int], cost: bool = False) -> list[BlockSpec]:
        """The blocks the relaxation predicts for `choice` (equal to `space.blocks`)."""
        active = self.active_positions(choice)
        out = []
        for pos in self.positions:
            if pos.index in active:
                out.append(position_spec(pos, choice, cost))
        return out

    def active_positions(self, choice: Mapping[str, int]) -> set[int]:
        active = {p.index for p in self.positions}
        for depth in self.depths:
            kept = depth.keep[int(choice[depth.dim])]
            active -= set(range(depth.start + kept, depth.end))
        return active


def position_spec(pos: Position, choice: Mapping[str, int], cost: bool = False) -> BlockSpec:
    """The spec of a position under `choice`."""
    if pos.kind == "decomposed":
        base = pos.base.cost_spec if cost else pos.base.spec
        return with_args(base, {d: pos.per_dim[k][int(choice[d])].spec.kwargs[d]
                                for k, d in enumerate(pos.dims)})
    cand = pos.candidates[0]
    if pos.kind == "joint":
        combo = tuple(int(choice[d]) for d in pos.dims)
        cand = pos.candidates[_combo_index(pos, combo)]
    return cand.cost_spec if cost else cand.spec


def _combo_index(pos: Position, combo: tuple[int, ...]) -> int:
    """Candidates are in itertools.product order of the dimensions' option indices."""
    index = 0
    for dim_index, size in zip(combo, pos_sizes(pos)):
        index = index * size + dim_index
    return index


def pos_sizes(pos: Position) -> tuple[int, ...]:
    """Number of options of each dimension of a joint position (read from its last combo)."""
    return tuple(i + 1 for i in pos.candidates[-1].combo)


def with_args(spec: BlockSpec, changes: Mapping[str, Gene]) -> BlockSpec:
    args = {**spec.kwargs, **changes}
    return BlockSpec(spec.op, spec.in_shape, tuple(sorted(args.items())), spec.name)


# --- analysis ---------------------------------------------------------------------------------
class _Reshapes(Exception):
    def __init__(self, dim: str):
        super().__init__(dim)
        self.dim = dim


def largest_option(dim: Dimension) -> Gene:
    return dim.options[-1]


def relax(space: SearchSpace, fixed: Mapping[str, Gene] | None = None,
          num_classes: int | None = None, in_channels: int | None = None,
          pin: Pin = largest_option, check: int = CHECK_SAMPLES, seed: int = 0) -> Relaxation:
    """Analyse `space` (see the module docstring). `fixed` holds genes not to search; a
    dimension that reshapes the network is fixed at `pin(dimension)`."""
    fixed = dict(fixed or {})
    names = set(space.dimension_names)
    unknown = sorted(set(fixed) - names)
    if unknown:
        raise RelaxationError(f"cannot fix {unknown}: space {space.name!r} has the dimensions "
                              f"{list(space.dimension_names)}")
    for name, value in fixed.items():
        if value not in space.dimension(name).options:
            raise RelaxationError(f"cannot fix {name}={value!r}: not one of "
                                  f"{list(space.dimension(name).options)}")
    pinned: list[str] = []
    while True:
        try:
            relaxation = _analyse(space, fixed, tuple(pinned), num_classes, in_channels)
            break
        except _Reshapes as reshaping:
            fixed[reshaping.dim] = pin(space.dimension(reshaping.dim))
            pinned.append(reshaping.dim)
    if not relaxation.searched:
        raise RelaxationError(
            f"space {space.name!r} has no dimension a differentiable search can mix: "
            f"{', '.join(pinned) or 'every dimension'} reshape(s) the network")
    verify(relaxation, check, seed)
    return relaxation


def _analyse(space: SearchSpace, fixed: dict[str, Gene], pinned: tuple[str, ...],
             num_classes: int | None, in_channels: int | None) -> Relaxation:
    dims = [d for d in space.dimensions if d.name not in fixed and len(d.options) > 1]
    base_genes = {d.name: fixed.get(d.name, d.options[-1]) for d in space.dimensions}
    base = space.make(base_genes)
    base_genes = dict(base.as_dict())

    def specs(genes: Mapping[str, Gene]) -> tuple[list[BlockSpec], list[BlockSpec]]:
        arch = space.make({**base_genes, **genes})
        return (space.blocks(arch, num_classes, in_channels), space.blocks(arch))

    base_specs, base_cost = specs({})
    if len(base_specs) != len(base_cost):
        raise RelaxationError(f"space {space.name!r} builds a different number of blocks for "
                              f"other classes or channels")
    affected: dict[str, set[int]] = {}
    depths: list[DepthChoice] = []
    searched: list[Dimension] = []
    for dim in dims:
        if base_genes[dim.name] is None:
            continue  # inactive even in the largest network: it never matters
        changed: set[int] = set()
        removals: list[tuple[int, int] | None] = []
        for option in dim.options:
            variant, _ = specs({dim.name: option})
            if len(variant) == len(base_specs):
                if any(a.in_shape != b.in_shape for a, b in zip(variant, base_specs)):
                    raise _Reshapes(dim.name)
                changed |= {i for i, (a, b) in enumerate(zip(variant, base_specs)) if a != b}
                removals.append(None)
            else:
                removals.append(_removed_tail(base_specs, variant))
                if removals[-1] is None:
                    raise _Reshapes(dim.name)
        if any(r is not None for r in removals):
            if changed:
                raise _Reshapes(dim.name)  # both drops and changes blocks: not a plain depth
            depth = _depth_choice(dim.name, removals, base_specs)
            if depth is None:
                raise _Reshapes(dim.name)
            depths.append(depth)
            searched.append(dim)
        elif changed:
            affected[dim.name] = changed
            searched.append(dim)
    _check_depths_disjoint(space, depths)
    positions = []
    for index, (spec, cost_spec) in enumerate(zip(base_specs, base_cost)):
        pos_dims = tuple(d.name for d in searched if index in affected.get(d.name, ()))
        positions.append(_position(space, index, pos_dims, spec, cost_spec, specs))
    return Relaxation(space, tuple(searched), dict(fixed), pinned, tuple(positions),
                      tuple(depths), num_classes, in_channels, base_genes)


def _removed_tail(base: list[BlockSpec], variant: list[BlockSpec]) -> tuple[int, int] | None:
    """(start, end) of the one contiguous run of `base` that `variant` lacks, placed as late as
    possible (a depth keeps the first blocks), provided every dropped block keeps its shape."""
    n, m = len(base), len(variant)
    if m >= n:
        return None
    prefix = 0
    while prefix < m and base[prefix] == variant[prefix]:
        prefix += 1
    removed = n - m
    if base[prefix + removed:] != variant[prefix:]:
        return None
    dropped = base[prefix:prefix + removed]
    if any(tuple(block_out_shape(s)) != tuple(s.in_shape) for s in dropped):
        return None
    return prefix, prefix + removed


def _depth_choice(dim: str, removals: list[tuple[int, int] | None],
                  base: list[BlockSpec]) -> DepthChoice | None:
    ends = {r[1] for r in removals if r is not None}
    if len(ends) != 1:
        return None
    end = ends.pop()
    start = min(r[0] for r in removals if r is not None)
    keep = tuple((end - start) if r is None else r[0] - start for r in removals)
    return DepthChoice(dim, start, end, keep)


def _check_depths_disjoint(space: SearchSpace, depths: list[DepthChoice]) -> None:
    for a, b in itertools.combinations(depths, 2):
        if a.start < b.end and b.start < a.end:
            raise RelaxationError(f"space {space.name!r}: depths {a.dim} and {b.dim} drop "
                                  f"overlapping blocks; fix one of them")


def _position(space: SearchSpace, index: int, dims: tuple[str, ...], spec: BlockSpec,
              cost_spec: BlockSpec, specs) -> Position:
    if not dims:
        return Position(index, "fixed", (), (Candidate((), spec, cost_spec),))
    sizes = [len(space.dimension(d).options) for d in dims]
    total = int(np.prod(sizes))
    if get_op(spec.op).decomposable and set(dims) <= set(spec.kwargs):
        return _decompose(space, index, dims, spec, cost_spec)
    if total > JOINT_LIMIT:
        raise RelaxationError(
            f"space {space.name!r}: block {spec.name or index} ({spec.op}) depends jointly on "
            f"{list(dims)} ({total} combinations, at most {JOINT_LIMIT}); fix some of them")
    candidates = []
    for combo in itertools.product(*(range(n) for n in sizes)):
        genes = {d: space.dimension(d).options[i] for d, i in zip(dims, combo)}
        built, counted = specs(genes)
        cand_spec, cand_cost = built[index], counted[index]
        if tuple(block_out_shape(cand_spec)) != tuple(block_out_shape(spec)):
            raise _Reshapes(dims[0])
        candidates.append(Candidate(tuple(combo), cand_spec, cand_cost))
    return Position(index, "joint", dims, tuple(candidates))


def _decompose(space: SearchSpace, index: int, dims: tuple[str, ...], spec: BlockSpec,
               cost_spec: BlockSpec) -> Position:
    """The base block, plus per dimension one block per option with only that argument
    changed (what a per-argument cost is measured on)."""
    per_dim = tuple(
        tuple(Candidate((i,), with_args(spec, {d: option}), with_args(cost_spec, {d: option}))
              for i, option in enumerate(space.dimension(d).options))
        for d in dims)
    return Position(index, "decomposed", dims, (Candidate((), spec, cost_spec),), per_dim)


def verify(relaxation: Relaxation, samples: int, seed: int) -> None:
    """Raise RelaxationError unless the relaxation predicts `space.blocks` exactly on the
    smallest, the largest and `samples` random architectures (with the fixed genes)."""
    space = relaxation.space
    rng = np.random.default_rng(seed)
    choices: list[dict[str, int]] = [
        {d.name: 0 for d in relaxation.searched},
        {d.name: len(d.options) - 1 for d in relaxation.searched}]
    choices += [{d.name: int(rng.integers(len(d.options))) for d in relaxation.searched}
                for _ in range(samples)]
    for choice in choices:
        arch = relaxation.arch(choice)
        for cost in (False, True):
            expected = (space.blocks(arch) if cost else
                        space.blocks(arch, relaxation.num_classes, relaxation.in_channels))
            predicted = relaxation.specs(relaxation.choice_of(arch), cost)
            if predicted != expected:
                raise RelaxationError(
                    f"space {space.name!r}: its dimensions interact in a way a per-block "
                    f"relaxation cannot express (checked on {arch.key}); fix some dimensions")


def describe(relaxation: Relaxation) -> dict[str, object]:
    """Plain summary: what is searched, what is held fixed, how many mixed blocks."""
    kinds: dict[str, int] = {}
    for pos in relaxation.positions:
        kinds[pos.kind] = kinds.get(pos.kind, 0) + 1
    return {"searched": list(relaxation.dim_names), "fixed": dict(relaxation.fixed),
            "pinned": list(relaxation.pinned), "depths": [d.dim for d in relaxation.depths],
            "positions": kinds}


__all__: Sequence[str] = ("Candidate", "DepthChoice", "Position", "Relaxation", "RelaxationError",
                          "describe", "relax", "verify")
