"""ResNet blocks (torchvision v1.5 conventions): `basic` and `bottleneck`, and `plain` (a basic
block without its shortcut: VGG style, the plain CNNs of EAS).

One block is one unit: its convs and BNs, the shortcut (identity, or a 1x1 conv with the
block's stride plus BN when the stride or the channel count changes), the add and the final
ReLU. All convs have no bias; `density` < 1 makes every conv of the block sparse.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from search_spaces.ops.base import Cost, OpDef, conv_cost, conv_out, norm_cost
from search_spaces.ops.sparse import make_conv


def _conv_bn(cin: int, cout: int, k: int, stride: int, density: float) -> nn.Sequential:
    return nn.Sequential(make_conv(cin, cout, k, stride, density=density), nn.BatchNorm2d(cout))


def _conv_bn_cost(cin: int, cout: int, k: int, out_hw: tuple[int, int], density: float) -> Cost:
    return conv_cost(cin, cout, k, out_hw, density=density) + norm_cost(cout)


def needs_projection(cin: int, cout: int, stride: int) -> bool:
    return stride != 1 or cin != cout


def _shortcut(cin: int, cout: int, stride: int, density: float) -> nn.Module:
    if needs_projection(cin, cout, stride):
        return _conv_bn(cin, cout, 1, stride, density)
    return nn.Identity()


def _shortcut_cost(cin: int, cout: int, stride: int, out_hw: tuple[int, int],
                   density: float) -> Cost:
    if needs_projection(cin, cout, stride):
        return _conv_bn_cost(cin, cout, 1, out_hw, density)
    return Cost()


def _out_hw(in_shape: tuple[int, ...], stride: int) -> tuple[int, int]:
    """Spatial size after a 3x3 pad-1 conv (a 1x1 pad-0 conv with the same stride agrees)."""
    return conv_out(in_shape[1], 3, stride, 1), conv_out(in_shape[2], 3, stride, 1)


class ResidualBlock(nn.Module):
    """relu(body(x) + shortcut(x))."""

    def __init__(self, body: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class PlainBlock(nn.Module):
    """relu(body(x)): no shortcut."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x))


def _two_convs(cin: int, out: int, stride: int, density: float) -> nn.Sequential:
    """3x3 (stride) - BN - ReLU - 3x3 - BN: the body of `basic` and `plain` blocks."""
    return nn.Sequential(_conv_bn(cin, out, 3, stride, density), nn.ReLU(inplace=True),
                         _conv_bn(out, out, 3, 1, density))


def _two_convs_cost(cin: int, out: int, hw: tuple[int, int], density: float) -> Cost:
    return _conv_bn_cost(cin, out, 3, hw, density) + _conv_bn_cost(out, out, 3, hw, density)


class Basic(OpDef):
    """3x3 (stride) - BN - ReLU - 3x3 - BN, + shortcut, ReLU. `out`: output channels."""

    name = "basic"

    def build(self, in_shape, *, out: int, stride: int = 1, density: float = 1.0) -> nn.Module:
        cin = in_shape[0]
        return ResidualBlock(_two_convs(cin, out, stride, density),
                             _shortcut(cin, out, stride, density))

    def out_shape(self, in_shape, *, out: int, stride: int = 1, **_: Any) -> tuple[int, ...]:
        return (out, *_out_hw(in_shape, stride))

    def cost(self, in_shape, *, out: int, stride: int = 1, density: float = 1.0,
             **_: Any) -> Cost:
        cin, hw = in_shape[0], _out_hw(in_shape, stride)
        return _two_convs_cost(cin, out, hw, density) + _shortcut_cost(cin, out, stride, hw,
                                                                       density)


class Plain(OpDef):
    """3x3 (stride) - BN - ReLU - 3x3 - BN - ReLU, no shortcut (VGG style). `out`: output
    channels."""

    name = "plain"

    def build(self, in_shape, *, out: int, stride: int = 1, density: float = 1.0) -> nn.Module:
        return PlainBlock(_two_convs(in_shape[0], out, stride, density))

    def out_shape(self, in_shape, *, out: int, stride: int = 1, **_: Any) -> tuple[int, ...]:
        return (out, *_out_hw(in_shape, stride))

    def cost(self, in_shape, *, out: int, stride: int = 1, density: float = 1.0,
             **_: Any) -> Cost:
        return _two_convs_cost(in_shape[0], out, _out_hw(in_shape, stride), density)


class Bottleneck(OpDef):
    """1x1 (`width`) - BN - ReLU - 3x3 (stride) - BN - ReLU - 1x1 (`out`) - BN, + shortcut, ReLU.

    The 3x3 conv carries the stride (ResNet v1.5)."""

    name = "bottleneck"

    def build(self, in_shape, *, out: int, width: int, stride: int = 1,
              density: float = 1.0) -> nn.Module:
        cin = in_shape[0]
        body = nn.Sequential(_conv_bn(cin, width, 1, 1, density), nn.ReLU(inplace=True),
                             _conv_bn(width, width, 3, stride, density), nn.ReLU(inplace=True),
                             _conv_bn(width, out, 1, 1, density))
        return ResidualBlock(body, _shortcut(cin, out, stride, density))

    def out_shape(self, in_shape, *, out: int, stride: int = 1, **_: Any) -> tuple[int, ...]:
        return (out, *_out_hw(in_shape, stride))

    def cost(self, in_shape, *, out: int, width: int, stride: int = 1, density: float = 1.0,
             **_: Any) -> Cost:
        cin, hw = in_shape[0], _out_hw(in_shape, stride)
        reduce = _conv_bn_cost(cin, width, 1, (in_shape[1], in_shape[2]), density)
        return (reduce + _conv_bn_cost(width, width, 3, hw, density)
                + _conv_bn_cost(width, out, 1, hw, density)
                + _shortcut_cost(cin, out, stride, hw, density))


OP_DEFS: tuple[OpDef, ...] = (Basic(), Bottleneck(), Plain())
