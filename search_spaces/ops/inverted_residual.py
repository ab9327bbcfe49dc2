"""Inverted-residual (MBConv) blocks: MobileNetV2/V3, Once-for-All, FBNet, MOAT's conv part.

One block = [1x1 expand, BN, act] -> [channel shuffle] -> kxk depthwise, BN, act -> [SE] ->
1x1 project, BN (no act) -> [identity add]. Everything that runs as one unit is one module, so a
latency table times the block with its SE and residual add. `norm` (search_spaces.ops.norm)
replaces each BN-act by that normalization-activation, and the projection's BN by its form
without an activation.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from search_spaces.ops.base import Cost, OpDef, conv_cost, conv_out
from search_spaces.ops.norm import DEFAULT_NORM, norm_act_cost, norm_and_act, norm_layer
from search_spaces.ops.sparse import make_conv


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor` (MobileNet/OFA convention): to the
    nearest multiple, at least `min_value` (default `divisor`), and never more than 10% down."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: (N, g*c, H, W) -> view (N, g, c) -> swap -> flatten."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class SqueezeExcite(nn.Module):
    """Global mean -> 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) -> hard-sigmoid -> scale."""

    def __init__(self, channels: int, hidden: int, density: float = 1.0):
        super().__init__()
        self.reduce = make_conv(channels, hidden, 1, bias=True, density=density)
        self.act = nn.ReLU(inplace=True)
        self.expand = make_conv(hidden, channels, 1, bias=True, density=density)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(scale))))


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int, density: float,
             act: str | None, norm: str) -> nn.Sequential:
    """conv -> norm -> act; `act` None: conv -> norm (its form without an activation)."""
    conv = make_conv(cin, cout, k, stride, groups, False, density)
    if act is None:
        return nn.Sequential(conv, norm_layer(norm, cout, "none"))
    return nn.Sequential(conv, *norm_and_act(norm, cout, act))


class MBConv(nn.Module):
    """Inverted residual block. `mid` and `se` (SE hidden width, 0 = no SE) are given as
    computed by the caller's rounding convention; `expand=False` drops the expansion conv
    (then `mid` must equal `cin`). `groups` applies to both 1x1 convs (with a channel shuffle
    after the expansion when > 1). `density` < 1 makes the 1x1 and SE convs sparse; the
    depthwise conv stays dense. `norm`: the normalization-activation (search_spaces.ops.norm)."""

    def __init__(self, cin: int, out: int, mid: int, k: int, stride: int, act: str, se: int = 0,
                 groups: int = 1, expand: bool = True, density: float = 1.0,
                 norm: str = DEFAULT_NORM):
        super().__init__()
        _check_args(cin, out, mid, groups, expand)
        self.expand = _conv_bn(cin, mid, 1, 1, groups, density, act, norm) if expand else None
        self.shuffle = ChannelShuffle(groups) if groups > 1 else None
        self.depthwise = _conv_bn(mid, mid, k, stride, mid, 1.0, act, norm)
        self.se = SqueezeExcite(mid, se, density) if se > 0 else None
        self.project = _conv_bn(mid, out, 1, 1, groups, density, None, norm)
        self.residual = stride == 1 and cin == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand is not None:
            y = self.expand(y)
        if self.shuffle is not None:
            y = self.shuffle(y)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


def _check_args(cin: int, out: int, mid: int, groups: int, expand: bool) -> None:
    if not expand and mid != cin:
        raise ValueError(f"MBConv without expansion needs mid == cin, got mid={mid}, cin={cin}")
    for name, width in (("cin", cin), ("mid", mid), ("out", out)):
        if width % groups:
            raise ValueError(f"MBConv: {name}={width} is not divisible by groups={groups}")


class MBConvOp(OpDef):
    """OpDef of `MBConv`: args out, mid, k, stride, act, se, groups, expand, density, norm."""

    name = "mbconv"
    separating_args = ("groups", "norm")

    def build(self, in_shape, *, out: int, mid: int, k: int, stride: int = 1, act: str = "relu",
              se: int = 0, groups: int = 1, expand: bool = True, density: float = 1.0,
              norm: str = DEFAULT_NORM) -> nn.Module:
        return MBConv(in_shape[0], out, mid, k, stride, act, se, groups, expand, density, norm)

    def out_shape(self, in_shape, *, out: int, k: int, stride: int = 1,
                  **_: Any) -> tuple[int, ...]:
        pad = k // 2
        return (out, conv_out(in_shape[1], k, stride, pad), conv_out(in_shape[2], k, stride, pad))

    def cost(self, in_shape, *, out: int, mid: int, k: int, stride: int = 1, act: str = "relu",
             se: int = 0, groups: int = 1, expand: bool = True, density: float = 1.0,
             norm: str = DEFAULT_NORM, **_: Any) -> Cost:
        cin, h, w = in_shape
        _, ho, wo = self.out_shape(in_shape, out=out, k=k, stride=stride)
        activated = norm_act_cost(norm, mid, act)
        total = Cost()
        if expand:
            total += conv_cost(cin, mid, 1, (h, w), groups, density=density) + activated
        total += conv_cost(mid, mid, k, (ho, wo), mid) + activated
        if se > 0:
            total += conv_cost(mid, se, 1, (1, 1), bias=True, density=density)
            total += conv_cost(se, mid, 1, (1, 1), bias=True, density=density)
        return (total + conv_cost(mid, out, 1, (ho, wo), groups, density=density)
                + norm_act_cost(norm, out, "none"))


OP_DEFS: tuple[OpDef, ...] = (MBConvOp(),)
