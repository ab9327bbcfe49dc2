"""NAS-Bench-201 ops: the 4-node cell (one block, its 6 edge ops as args) and the ResNet basic
block that reduces between stages, as in the benchmark's CIFAR skeleton."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from search_spaces.ops.base import ZERO, Cost, OpDef, conv_cost, conv_out, norm_cost

# Edge ops, cheapest first (the order of the space's options).
CELL_OPS = ("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3")
# Edge j -> i as (i, j), in the order of the official string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
# Op argument (and space dimension) name of each edge: e<to>_<from>.
EDGE_ARGS = tuple(f"e{i}_{j}" for i, j in EDGES)


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def relu_conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    """ReLU -> Conv kxk (pad k//2, no bias) -> BN. The ReLU is not in-place: a node feeds
    several edges."""
    return nn.Sequential(nn.ReLU(inplace=False),
                         nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(cout))


def make_edge(op: str, channels: int) -> nn.Module:
    if op == "none":
        return _Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    if op == "nor_conv_1x1":
        return relu_conv_bn(channels, channels, 1)
    if op == "nor_conv_3x3":
        return relu_conv_bn(channels, channels, 3)
    raise ValueError(f"unknown NB201 edge op {op!r}; known: {CELL_OPS}")


def edge_cost(op: str, channels: int, hw: tuple[int, int]) -> Cost:
    if op not in CELL_OPS:
        raise ValueError(f"unknown NB201 edge op {op!r}; known: {CELL_OPS}")
    if op.startswith("nor_conv"):
        k = int(op[-1])
        return conv_cost(channels, channels, k, hw) + norm_cost(channels)
    return ZERO


class Cell(nn.Module):
    """Node i is the sum of edge(j -> i)(node j) over j < i; the output is node 3."""

    def __init__(self, channels: int, ops: tuple[str, ...]):
        super().__init__()
        self.ops = ops
        self.edges = nn.ModuleList(make_edge(op, channels) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            total: torch.Tensor | None = None
            for edge, (i, j) in zip(self.edges, EDGES):
                if i == node:
                    out = edge(nodes[j])
                    total = out if total is None else total + out
            assert total is not None
            nodes.append(total)
        return nodes[3]

    def extra_repr(self) -> str:
        return " ".join(f"{a}={op}" for a, op in zip(EDGE_ARGS, self.ops))


class NB201Cell(OpDef):
    """A whole NAS-Bench-201 cell at constant width and resolution."""

    name = "nb201_cell"
    decomposable = True

    def candidate_of(self, tensor: str, args: dict[str, Any]) -> str | None:
        # Each edge is its own single-path choice: `edges.<i>...` belongs to the op chosen on
        # edge i (a 1x1 conv is not trained as the centre of the 3x3 one).
        head, _, rest = tensor.partition(".")
        return str(args[EDGE_ARGS[int(rest.split(".", 1)[0])]]) if head == "edges" else None

    def build(self, in_shape, **edges: str) -> nn.Module:
        return Cell(in_shape[0], _edge_ops(edges))

    def out_shape(self, in_shape, **_: Any) -> tuple[int, ...]:
        return tuple(in_shape)

    def cost(self, in_shape, **edges: str) -> Cost:
        c, h, w = in_shape
        total = ZERO
        for op in _edge_ops(edges):
            total = total + edge_cost(op, c, (h, w))
        return total


def _edge_ops(edges: dict[str, str]) -> tuple[str, ...]:
    if set(edges) != set(EDGE_ARGS):
        raise ValueError(f"nb201_cell takes exactly the edge args {EDGE_ARGS}, got {sorted(edges)}")
    return tuple(edges[a] for a in EDGE_ARGS)


class _ReduceBlock(nn.Module):
    """Two ReLU-conv-BN 3x3 (the first strided) plus a shortcut, summed with no activation."""

    def __init__(self, cin: int, out: int, stride: int):
        super().__init__()
        self.conv_a = relu_conv_bn(cin, out, 3, stride)
        self.conv_b = relu_conv_bn(out, out, 3)
        self.shortcut: nn.Module
        if stride == 2:
            self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2),
                                          nn.Conv2d(cin, out, 1, bias=False))
        elif cin != out:
            self.shortcut = relu_conv_bn(cin, out, 1)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class NB201Reduce(OpDef):
    """NAS-Bench-201's ResNet basic block between stages (stride 2: avg-pool + 1x1 shortcut)."""

    name = "nb201_reduce"

    def build(self, in_shape, *, out: int, stride: int = 2) -> nn.Module:
        _check_stride(stride)
        return _ReduceBlock(in_shape[0], out, stride)

    def out_shape(self, in_shape, *, out: int, stride: int = 2) -> tuple[int, ...]:
        _check_stride(stride)
        return (out, conv_out(in_shape[1], 3, stride, 1), conv_out(in_shape[2], 3, stride, 1))

    def cost(self, in_shape, *, out: int, stride: int = 2) -> Cost:
        cin, h, w = in_shape
        _, oh, ow = self.out_shape(in_shape, out=out, stride=stride)
        total = conv_cost(cin, out, 3, (oh, ow)) + conv_cost(out, out, 3, (oh, ow))
        total = total + norm_cost(out) * 2
        if stride == 2:
            total = total + conv_cost(cin, out, 1, (h // 2, w // 2))
        elif cin != out:
            total = total + conv_cost(cin, out, 1, (h, w)) + norm_cost(out)
        return total


def _check_stride(stride: int) -> None:
    if stride not in (1, 2):
        raise ValueError(f"nb201_reduce stride must be 1 or 2, got {stride}")


OP_DEFS: tuple[OpDef, ...] = (NB201Cell(), NB201Reduce())
