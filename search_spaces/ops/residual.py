"""ResNet blocks (torchvision v1.5 conventions): `basic` and `bottleneck`, and `plain` (a basic
block without its shortcut: VGG style, the plain CNNs of EAS).

One block is one unit: its convs and BNs, the shortcut (identity, or a 1x1 conv with the
block's stride plus BN when the stride or the channel count changes), the add and the final
ReLU. All convs have no bias; `density` < 1 makes every conv of the block sparse.

`norm` (search_spaces.ops.norm.NORMS) replaces every BN-ReLU pair and every BN without a ReLU
(the last one of the body, the shortcut's) by that normalization-activation's two forms; the
ReLU after the residual add stays (as in the EvoNorm reference ResNets). A plain block has no
add: its last BN and the ReLU after it are one norm-act.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from search_spaces.ops.base import Cost, OpDef, conv_cost, conv_out
from search_spaces.ops.norm import DEFAULT_NORM, act_layer, norm_act_cost, norm_layer
from search_spaces.ops.sparse import make_conv

RELU, LINEAR = "relu", "none"  # a norm followed by a ReLU, and one without


def _conv_bn(cin: int, cout: int, k: int, stride: int, density: float, norm: str = DEFAULT_NORM,
             act: str = LINEAR) -> nn.Sequential:
    """conv -> norm, where `act` is the activation that follows the pair (`_act_after`)."""
    return nn.Sequential(make_conv(cin, cout, k, stride, density=density),
                         norm_layer(norm, cout, act))


def _act_after(norm: str) -> nn.Module:
    """The ReLU after a `_conv_bn(..., act=RELU)`: an identity where the norm applies it."""
    return act_layer(norm, RELU)


def _conv_bn_cost(cin: int, cout: int, k: int, out_hw: tuple[int, int], density: float,
                  norm: str = DEFAULT_NORM, act: str = LINEAR) -> Cost:
    return conv_cost(cin, cout, k, out_hw, density=density) + norm_act_cost(norm, cout, act)


def needs_projection(cin: int, cout: int, stride: int) -> bool:
    return stride != 1 or cin != cout


def _shortcut(cin: int, cout: int, stride: int, density: float, norm: str) -> nn.Module:
    if needs_projection(cin, cout, stride):
        return _conv_bn(cin, cout, 1, stride, density, norm)
    return nn.Identity()


def _shortcut_cost(cin: int, cout: int, stride: int, out_hw: tuple[int, int],
                   density: float, norm: str) -> Cost:
    if needs_projection(cin, cout, stride):
        return _conv_bn_cost(cin, cout, 1, out_hw, density, norm)
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
    """relu(body(x)): no shortcut (`act` an identity where the body's last norm applies it)."""

    def __init__(self, body: nn.Module, act: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.act = nn.ReLU(inplace=True) if act is None else act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x))


def _two_convs(cin: int, out: int, stride: int, density: float, norm: str,
               last_act: str) -> nn.Sequential:
    """3x3 (stride) - BN - ReLU - 3x3 - BN: the body of `basic` and `plain` blocks (`last_act`:
    what follows the last BN)."""
    return nn.Sequential(_conv_bn(cin, out, 3, stride, density, norm, RELU), _act_after(norm),
                         _conv_bn(out, out, 3, 1, density, norm, last_act))


def _two_convs_cost(cin: int, out: int, hw: tuple[int, int], density: float, norm: str,
                    last_act: str) -> Cost:
    return (_conv_bn_cost(cin, out, 3, hw, density, norm, RELU)
            + _conv_bn_cost(out, out, 3, hw, density, norm, last_act))


class Basic(OpDef):
    """3x3 (stride) - BN - ReLU - 3x3 - BN, + shortcut, ReLU. `out`: output channels."""

    name = "basic"
    separating_args = ("norm",)

    def build(self, in_shape, *, out: int, stride: int = 1, density: float = 1.0,
              norm: str = DEFAULT_NORM) -> nn.Module:
        cin = in_shape[0]
        return ResidualBlock(_two_convs(cin, out, stride, density, norm, LINEAR),
                             _shortcut(cin, out, stride, density, norm))

    def out_shape(self, in_shape, *, out: int, stride: int = 1, **_: Any) -> tuple[int, ...]:
        return (out, *_out_hw(in_shape, stride))

    def cost(self, in_shape, *, out: int, stride: int = 1, density: float = 1.0,
             norm: str = DEFAULT_NORM, **_: Any) -> Cost:
        cin, hw = in_shape[0], _out_hw(in_shape, stride)
        return (_two_convs_cost(cin, out, hw, density, norm, LINEAR)
                + _shortcut_cost(cin, out, stride, hw, density, norm))


class Plain(OpDef):
    """3x3 (stride) - BN - ReLU - 3x3 - BN - ReLU, no shortcut (VGG style). `out`: output
    channels."""

    name = "plain"
    separating_args = ("norm",)

    def build(self, in_shape, *, out: int, stride: int = 1, density: float = 1.0,
              norm: str = DEFAULT_NORM) -> nn.Module:
        return PlainBlock(_two_convs(in_shape[0], out, stride, density, norm, RELU),
                          _act_after(norm))

    def out_shape(self, in_shape, *, out: int, stride: int = 1, **_: Any) -> tuple[int, ...]:
        return (out, *_out_hw(in_shape, stride))

    def cost(self, in_shape, *, out: int, stride: int = 1, density: float = 1.0,
             norm: str = DEFAULT_NORM, **_: Any) -> Cost:
        return _two_convs_cost(in_shape[0], out, _out_hw(in_shape, stride), density, norm, RELU)


class Bottleneck(OpDef):
    """1x1 (`width`) - BN - ReLU - 3x3 (stride) - BN - ReLU - 1x1 (`out`) - BN, + shortcut, ReLU.

    The 3x3 conv carries the stride (ResNet v1.5)."""

    name = "bottleneck"
    separating_args = ("norm",)

    def build(self, in_shape, *, out: int, width: int, stride: int = 1,
              density: float = 1.0, norm: str = DEFAULT_NORM) -> nn.Module:
        cin = in_shape[0]
        body = nn.Sequential(_conv_bn(cin, width, 1, 1, density, norm, RELU), _act_after(norm),
                             _conv_bn(width, width, 3, stride, density, norm, RELU),
                             _act_after(norm), _conv_bn(width, out, 1, 1, density, norm))
        return ResidualBlock(body, _shortcut(cin, out, stride, density, norm))

    def out_shape(self, in_shape, *, out: int, stride: int = 1, **_: Any) -> tuple[int, ...]:
        return (out, *_out_hw(in_shape, stride))

    def cost(self, in_shape, *, out: int, width: int, stride: int = 1, density: float = 1.0,
             norm: str = DEFAULT_NORM, **_: Any) -> Cost:
        cin, hw = in_shape[0], _out_hw(in_shape, stride)
        reduce = _conv_bn_cost(cin, width, 1, (in_shape[1], in_shape[2]), density, norm, RELU)
        return (reduce + _conv_bn_cost(width, width, 3, hw, density, norm, RELU)
                + _conv_bn_cost(width, out, 1, hw, density, norm)
                + _shortcut_cost(cin, out, stride, hw, density, norm))


OP_DEFS: tuple[OpDef, ...] = (Basic(), Bottleneck(), Plain())
