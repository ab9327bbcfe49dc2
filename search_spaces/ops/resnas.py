"""ViT-ResNAS ops (Liao et al. 2021): the convolutional patch embedding and the residual spatial
reduction between stages.

Token tensors are (batch, 1 + H*W, dim): the class token, then a square H x W grid of patch
tokens in row-major order; in_shape for token ops is (tokens, dim).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.ops.attention import LN_EPS
from search_spaces.ops.base import Cost, OpDef, conv_cost, conv_out, linear_cost, norm_cost
from search_spaces.ops.common import make_act
from search_spaces.ops.sparse import make_conv, make_linear


def _conv_bn_relu(cin: int, out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(make_conv(cin, out, 3, stride), nn.BatchNorm2d(out), make_act("relu"))


class ConvPatchEmbedding(nn.Module):
    """A 3x3 stride-2 conv-BN-ReLU, two 3x3 conv-BN-ReLU with a skip around them, then a
    (patch/2) x (patch/2) strided conv (bias) to `dim`; prepend the class token, add positions."""

    def __init__(self, cin: int, dim: int, patch: int, mid: int, tokens: int):
        super().__init__()
        self.conv1 = _conv_bn_relu(cin, mid, 2)
        self.conv2 = _conv_bn_relu(mid, mid, 1)
        self.conv3 = _conv_bn_relu(mid, mid, 1)
        self.proj = make_conv(mid, dim, patch // 2, patch // 2, bias=True, padding=0)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x + self.conv3(self.conv2(x))
        x = self.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed


class ConvPatchEmbed(OpDef):
    """(C, H, W) -> (patches + 1, dim). Args: dim, patch (even: the stem halves first), mid
    (the stem's width)."""

    name = "conv_patch_embed"
    separating_args = ("patch",)

    def build(self, in_shape, *, dim: int, patch: int, mid: int) -> nn.Module:
        h, w = self._grid(in_shape, patch)
        return ConvPatchEmbedding(in_shape[0], dim, patch, mid, h * w)

    def out_shape(self, in_shape, *, dim: int, patch: int, **_: Any) -> tuple[int, ...]:
        h, w = self._grid(in_shape, patch)
        return (h * w + 1, dim)

    def cost(self, in_shape, *, dim: int, patch: int, mid: int) -> Cost:
        half = (conv_out(in_shape[1], 3, 2, 1), conv_out(in_shape[2], 3, 2, 1))
        h, w = self._grid(in_shape, patch)
        stem = (conv_cost(in_shape[0], mid, 3, half) + conv_cost(mid, mid, 3, half) * 2
                + norm_cost(mid) * 3)
        proj = conv_cost(mid, dim, patch // 2, (h, w), bias=True)
        return stem + proj + Cost(0, 0, dim + (h * w + 1) * dim)

    @staticmethod
    def _grid(in_shape: tuple[int, ...], patch: int) -> tuple[int, int]:
        if patch < 2 or patch % 2:
            raise ValueError(f"conv patch embedding needs an even patch size, got {patch}")
        step = patch // 2
        h = conv_out(conv_out(in_shape[1], 3, 2, 1), step, step, 0)
        w = conv_out(conv_out(in_shape[2], 3, 2, 1), step, step, 0)
        if h < 1 or w < 1:
            raise ValueError(f"patch {patch} is larger than the input {in_shape[1]}x{in_shape[2]}")
        return h, w


class ResidualReductionBlock(nn.Module):
    """Halves the token grid and widens dim -> out. Main path: LayerNorm, then a 3x3 stride-2
    conv (bias) of the grid plus new position embeddings, and a Linear of the class token.
    Skip path: the 2x2-average-pooled grid and the class token, zero-padded to `out` channels,
    so a deep network stays close to an identity through the reduction."""

    def __init__(self, dim: int, out: int, side: int, density: float = 1.0):
        super().__init__()
        self.side, self.out = side, out
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.reduce = make_conv(dim, out, 3, 2, bias=True, density=density)
        self.token = make_linear(dim, out, bias=True, density=density)
        # named apart from `pos_embed`: no class-token row (the supernet resamples it as such)
        self.grid_pos_embed = nn.Parameter(torch.zeros(1, (side // 2) ** 2, out))
        nn.init.trunc_normal_(self.grid_pos_embed, std=0.02)

    def _grid(self, tokens: torch.Tensor) -> torch.Tensor:
        b, _, c = tokens.shape
        return tokens.transpose(1, 2).reshape(b, c, self.side, self.side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(self._grid(x[:, 1:]), 2).flatten(2).transpose(1, 2)
        skip = F.pad(torch.cat([x[:, :1], pooled], dim=1), (0, self.out - x.shape[2]))
        y = self.norm(x)
        grid = self.reduce(self._grid(y[:, 1:])).flatten(2).transpose(1, 2)
        return torch.cat([self.token(y[:, :1]), grid + self.grid_pos_embed], dim=1) + skip


class ResidualReduction(OpDef):
    """(1 + S*S, dim) -> (1 + (S/2)^2, out), S even, out >= dim. Args: out, density."""

    name = "residual_reduction"

    def build(self, in_shape, *, out: int, density: float = 1.0) -> nn.Module:
        return ResidualReductionBlock(in_shape[1], out, self._side(in_shape, out), density)

    def out_shape(self, in_shape, *, out: int, **_: Any) -> tuple[int, ...]:
        return (1 + (self._side(in_shape, out) // 2) ** 2, out)

    def cost(self, in_shape, *, out: int, density: float = 1.0) -> Cost:
        dim, half = in_shape[1], self._side(in_shape, out) // 2
        conv = conv_cost(dim, out, 3, (half, half), bias=True, density=density)
        token = linear_cost(dim, out, density=density)
        return conv + token + norm_cost(dim) + Cost(0, 0, half * half * out)

    @staticmethod
    def _side(in_shape: tuple[int, ...], out: int) -> int:
        tokens, dim = in_shape
        side = math.isqrt(max(tokens - 1, 0))
        if side * side != tokens - 1 or side < 2 or side % 2:
            raise ValueError(f"residual reduction needs a class token and an even square grid "
                             f"of patches, got {tokens} tokens")
        if out < dim:
            raise ValueError(f"residual reduction cannot narrow the tokens ({dim} -> {out}): "
                             f"its skip path zero-pads channels")
        return side


OP_DEFS: tuple[OpDef, ...] = (ConvPatchEmbed(), ResidualReduction())
