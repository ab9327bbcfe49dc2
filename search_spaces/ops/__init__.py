"""Operations by family. `OPS` maps an op name to its `OpDef`; it is written out here, not
filled by import side effects, so what exists is visible in one place."""
from __future__ import annotations

from torch import nn

from search_spaces.ops import (
    attention,
    cell,
    common,
    dense,
    inverted_residual,
    residual,
    resnas,
)
from search_spaces.ops.base import Cost, OpDef
from search_spaces.ops.sparse import SparseConv2d, SparseLinear, make_conv, make_linear

OPS: dict[str, OpDef] = {
    op.name: op
    for module in (common, inverted_residual, residual, dense, attention, resnas, cell)
    for op in module.OP_DEFS
}


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; known: {sorted(OPS)}") from None


def build_block(spec) -> nn.Module:
    return get_op(spec.op).build(spec.in_shape, **spec.kwargs)


def block_cost(spec) -> Cost:
    return get_op(spec.op).cost(spec.in_shape, **spec.kwargs)


def block_out_shape(spec) -> tuple[int, ...]:
    return get_op(spec.op).out_shape(spec.in_shape, **spec.kwargs)


__all__ = ["OPS", "Cost", "OpDef", "SparseConv2d", "SparseLinear", "block_cost",
           "block_out_shape", "build_block", "get_op", "make_conv", "make_linear"]
