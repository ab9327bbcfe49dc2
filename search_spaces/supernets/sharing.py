"""Which candidate ops of one network position share weights.

A bank key is `<slot>/<variant>/<tensor>`: the block's position in the network (`stage2.1`,
`block3.osa`: depth skips trailing slots, so a slot means the same thing in every subnet), a
variant naming the candidate op, and the tensor's name inside the block. Candidates with the
same variant share one tensor, sliced to each one's shape (widths, expand ratios, kernels,
heads, MLP ratios, densities nest); candidates whose shapes do not nest get their own variant.
"""
from __future__ import annotations

from search_spaces.ops import get_op
from search_spaces.space import BlockSpec


def variant(spec: BlockSpec, tensor: str) -> str:
    """The candidate name of `tensor` (a state name inside the block built from `spec`): the
    op, its separating arguments where they differ from 1, and the op's own finer choice."""
    op = get_op(spec.op)
    parts = [spec.op]
    for name in op.separating_args:
        value = spec.kwargs.get(name)
        if value is not None and value != 1:
            parts.append(f"{name}{value}")
    finer = op.candidate_of(tensor, dict(spec.kwargs))
    if finer is not None:
        parts.append(finer)
    return "_".join(parts)


def bank_key(spec: BlockSpec, tensor: str) -> str:
    return f"{spec.name}/{variant(spec, tensor)}/{tensor}"
