"""Ops shared by every family: conv-bn-act, norm-act, pooling, classifier, skip and zero."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from search_spaces.ops.activations import ACTIVATIONS, make_act  # noqa: F401 (re-exported)
from search_spaces.ops.base import ZERO, Cost, OpDef, conv_cost, conv_out, linear_cost
from search_spaces.ops.norm import DEFAULT_NORM, make_norm_act, norm_act_cost, norm_and_act
from search_spaces.ops.sparse import make_conv, make_linear


class ConvBnAct(OpDef):
    """Conv kxk (pad k//2) -> [norm] -> act. `bn=False` gives a plain conv (OFA's feature mix);
    `norm` (search_spaces.ops.norm.NORMS) is the normalization-activation in place of BN-act."""

    name = "conv_bn_act"
    separating_args = ("groups", "norm")

    def build(self, in_shape, *, out: int, k: int = 1, stride: int = 1, act: str = "relu",
              groups: int = 1, bn: bool = True, bias: bool = False, density: float = 1.0,
              padding: int | None = None, norm: str = DEFAULT_NORM) -> nn.Module:
        conv = make_conv(in_shape[0], out, k, stride, groups, bias, density, padding)
        if not bn:
            return nn.Sequential(conv, make_act(act))
        return nn.Sequential(conv, *norm_and_act(norm, out, act))

    def out_shape(self, in_shape, *, out: int, k: int = 1, stride: int = 1,
                  padding: int | None = None, **_: Any) -> tuple[int, ...]:
        pad = k // 2 if padding is None else padding
        return (out, conv_out(in_shape[1], k, stride, pad), conv_out(in_shape[2], k, stride, pad))

    def cost(self, in_shape, *, out: int, k: int = 1, stride: int = 1, groups: int = 1,
             bn: bool = True, bias: bool = False, density: float = 1.0,
             padding: int | None = None, act: str = "relu", norm: str = DEFAULT_NORM,
             **_: Any) -> Cost:
        _, h, w = self.out_shape(in_shape, out=out, k=k, stride=stride, padding=padding)
        cost = conv_cost(in_shape[0], out, k, (h, w), groups, bias, density)
        return cost + norm_act_cost(norm, out, act) if bn else cost


class NormAct(OpDef):
    """Normalization then activation (DenseNet's norm5, NB201's lastact: BatchNorm-act)."""

    name = "bn_act"
    separating_args = ("norm",)

    def build(self, in_shape, *, act: str = "relu", norm: str = DEFAULT_NORM) -> nn.Module:
        return make_norm_act(norm, in_shape[0], act)

    def out_shape(self, in_shape, **_: Any) -> tuple[int, ...]:
        return tuple(in_shape)

    def cost(self, in_shape, *, act: str = "relu", norm: str = DEFAULT_NORM, **_: Any) -> Cost:
        return norm_act_cost(norm, in_shape[0], act)


class Pool(OpDef):
    """Max or average pooling (stems, transitions)."""

    name = "pool"

    def build(self, in_shape, *, kind: str, k: int, stride: int, padding: int = 0) -> nn.Module:
        if kind == "max":
            return nn.MaxPool2d(k, stride, padding)
        return nn.AvgPool2d(k, stride, padding, count_include_pad=False)

    def out_shape(self, in_shape, *, k: int, stride: int, padding: int = 0, **_: Any):
        return (in_shape[0], conv_out(in_shape[1], k, stride, padding),
                conv_out(in_shape[2], k, stride, padding))

    def cost(self, in_shape, **_: Any) -> Cost:
        return ZERO


class _GlobalPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class GlobalPool(OpDef):
    name = "global_pool"

    def build(self, in_shape, **_: Any) -> nn.Module:
        return _GlobalPool()

    def out_shape(self, in_shape, **_: Any) -> tuple[int, ...]:
        return (in_shape[0], 1, 1)

    def cost(self, in_shape, **_: Any) -> Cost:
        return ZERO


class Classifier(OpDef):
    """Flatten -> [Dropout] -> Linear. Expects a pooled (C, 1, 1) or a (C,) input."""

    name = "classifier"

    def build(self, in_shape, *, classes: int, dropout: float = 0.0,
              density: float = 1.0) -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten(1)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(make_linear(in_shape[0], classes, bias=True, density=density))
        return nn.Sequential(*layers)

    def out_shape(self, in_shape, *, classes: int, **_: Any) -> tuple[int, ...]:
        return (classes,)

    def cost(self, in_shape, *, classes: int, density: float = 1.0, **_: Any) -> Cost:
        return linear_cost(in_shape[0], classes, density=density)


class Skip(OpDef):
    name = "skip"

    def build(self, in_shape, **_: Any) -> nn.Module:
        return nn.Identity()

    def out_shape(self, in_shape, **_: Any) -> tuple[int, ...]:
        return tuple(in_shape)

    def cost(self, in_shape, **_: Any) -> Cost:
        return ZERO


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class ZeroOp(OpDef):
    """Outputs zeros of the input's shape (NB201's `none`, a pruned edge)."""

    name = "zero"

    def build(self, in_shape, **_: Any) -> nn.Module:
        return _Zero()

    def out_shape(self, in_shape, **_: Any) -> tuple[int, ...]:
        return tuple(in_shape)

    def cost(self, in_shape, **_: Any) -> Cost:
        return ZERO

OP_DEFS: tuple[OpDef, ...] = (ConvBnAct(), NormAct(), Pool(), GlobalPool(), Classifier(), Skip(),
                              ZeroOp())
