"""Concatenating blocks: DenseNet's `dense_layer` and `transition`, VoVNet's `osa`.

All convs have no bias; `density` < 1 makes every conv of the block sparse.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from search_spaces.ops.base import Cost, OpDef, conv_cost, norm_cost
from search_spaces.ops.sparse import make_conv


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


def _conv_bn_relu(cin: int, cout: int, k: int, density: float) -> nn.Sequential:
    return nn.Sequential(make_conv(cin, cout, k, density=density), *_bn_relu(cout))


class _Concat(nn.Module):
    """cat(x, body(x)) along channels."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class DenseLayer(OpDef):
    """Pre-activation BN-ReLU-Conv1x1(bn_size*growth)-BN-ReLU-Conv3x3(growth), concatenated
    onto the input: `in + growth` channels out."""

    name = "dense_layer"

    def build(self, in_shape, *, growth: int, bn_size: int = 4,
              density: float = 1.0) -> nn.Module:
        cin, mid = in_shape[0], bn_size * growth
        return _Concat(nn.Sequential(*_bn_relu(cin), make_conv(cin, mid, 1, density=density),
                                     *_bn_relu(mid), make_conv(mid, growth, 3, density=density)))

    def out_shape(self, in_shape, *, growth: int, **_: Any) -> tuple[int, ...]:
        return (in_shape[0] + growth, in_shape[1], in_shape[2])

    def cost(self, in_shape, *, growth: int, bn_size: int = 4, density: float = 1.0,
             **_: Any) -> Cost:
        cin, hw, mid = in_shape[0], (in_shape[1], in_shape[2]), bn_size * growth
        return (norm_cost(cin) + conv_cost(cin, mid, 1, hw, density=density) + norm_cost(mid)
                + conv_cost(mid, growth, 3, hw, density=density))


class Transition(OpDef):
    """BN-ReLU-Conv1x1(`out`)-AvgPool 2x2 stride 2 (between DenseNet blocks)."""

    name = "transition"

    def build(self, in_shape, *, out: int, density: float = 1.0) -> nn.Module:
        conv = make_conv(in_shape[0], out, 1, density=density)
        return nn.Sequential(*_bn_relu(in_shape[0]), conv, nn.AvgPool2d(2, 2))

    def out_shape(self, in_shape, *, out: int, **_: Any) -> tuple[int, ...]:
        return (out, in_shape[1] // 2, in_shape[2] // 2)

    def cost(self, in_shape, *, out: int, density: float = 1.0, **_: Any) -> Cost:
        # The conv runs before the pooling, at the input resolution.
        hw = (in_shape[1], in_shape[2])
        return norm_cost(in_shape[0]) + conv_cost(in_shape[0], out, 1, hw, density=density)


class _OneShotAggregation(nn.Module):
    def __init__(self, cin: int, stage: int, n: int, out: int, density: float):
        super().__init__()
        self.layers = nn.ModuleList(
            _conv_bn_relu(cin if i == 0 else stage, stage, 3, density) for i in range(n))
        self.concat = _conv_bn_relu(cin + n * stage, out, 1, density)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features[-1]))
        return self.concat(torch.cat(features, 1))


class OneShotAggregation(OpDef):
    """VoVNet OSA module: `n` successive Conv3x3-BN-ReLU layers of `stage` channels, the input
    and all their outputs concatenated once, then Conv1x1-BN-ReLU to `out` channels."""

    name = "osa"

    def build(self, in_shape, *, stage: int, n: int, out: int,
              density: float = 1.0) -> nn.Module:
        return _OneShotAggregation(in_shape[0], stage, n, out, density)

    def out_shape(self, in_shape, *, out: int, **_: Any) -> tuple[int, ...]:
        return (out, in_shape[1], in_shape[2])

    def cost(self, in_shape, *, stage: int, n: int, out: int, density: float = 1.0,
             **_: Any) -> Cost:
        cin, hw = in_shape[0], (in_shape[1], in_shape[2])
        total = Cost()
        for i in range(n):
            total = total + conv_cost(cin if i == 0 else stage, stage, 3, hw, density=density)
            total = total + norm_cost(stage)
        return total + conv_cost(cin + n * stage, out, 1, hw, density=density) + norm_cost(out)


OP_DEFS: tuple[OpDef, ...] = (DenseLayer(), Transition(), OneShotAggregation())
