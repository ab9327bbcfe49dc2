"""Attention ops: ViT patch embedding, pre-norm transformer block, class-token head, and the
MOAT block (MBConv without SE, then pre-norm self-attention over the feature map).

Token tensors are (batch, tokens, dim); in_shape for token ops is (tokens, dim). Attention
runs through `scaled_dot_product_attention`, whose q@k^T and attn@v the FLOP counter counts
as 2 * tokens^2 * width MACs per block (all heads together: dim, or heads x head_dim).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.ops.base import Cost, OpDef, conv_cost, conv_out, linear_cost, norm_cost
from search_spaces.ops.inverted_residual import MBConv, MBConvOp
from search_spaces.ops.sparse import make_conv, make_linear

LN_EPS = 1e-6


class SelfAttention(nn.Module):
    """Multi-head self-attention: qkv Linear (bias) -> SDPA (scale head_dim^-0.5) -> proj.
    The heads split `dim` unless `head_dim` is given (ViT-ResNAS: heads x head_dim wide)."""

    def __init__(self, dim: int, heads: int, density: float = 1.0, head_dim: int | None = None):
        super().__init__()
        inner = _inner_width(dim, heads, head_dim)
        self.heads, self.inner = heads, inner
        self.qkv = make_linear(dim, 3 * inner, bias=True, density=density)
        self.proj = make_linear(inner, dim, bias=True, density=density)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.inner // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, self.inner))

    def extra_repr(self) -> str:
        return f"heads={self.heads}"


def attention_cost(tokens: int, dim: int, density: float = 1.0,
                   inner: int | None = None) -> Cost:
    """qkv and proj linears plus the two attention matmuls (activations: never sparse);
    `inner`: the heads' total width when it is not `dim`."""
    inner = inner or dim
    matmuls = 2 * tokens * tokens * inner
    return (linear_cost(dim, 3 * inner, tokens, density=density)
            + linear_cost(inner, dim, tokens, density=density) + Cost(matmuls, matmuls, 0))


def _inner_width(dim: int, heads: int, head_dim: int | None) -> int:
    """The heads' total width: `dim` split among them, or heads x head_dim."""
    if head_dim is not None:
        if heads < 1 or head_dim < 1:
            raise ValueError(f"heads={heads} and head_dim={head_dim} must be positive")
        return heads * head_dim
    _check_heads(dim, heads)
    return dim


def _check_heads(dim: int, heads: int) -> None:
    if heads < 1 or dim % heads:
        raise ValueError(f"attention width {dim} is not divisible by heads={heads}")


class PatchEmbedding(nn.Module):
    """Conv patch x patch (stride patch, bias) -> tokens; prepend cls token; add position."""

    def __init__(self, cin: int, dim: int, patch: int, tokens: int, density: float = 1.0):
        super().__init__()
        self.proj = make_conv(cin, dim, patch, patch, bias=True, density=density, padding=0)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, dim))
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed


class PatchEmbed(OpDef):
    """(C, H, W) -> (patches + 1, dim). Args: dim, patch, density."""

    name = "patch_embed"
    separating_args = ("patch",)

    def build(self, in_shape, *, dim: int, patch: int, density: float = 1.0) -> nn.Module:
        tokens = _grid(in_shape, patch)
        return PatchEmbedding(in_shape[0], dim, patch, tokens[0] * tokens[1], density)

    def out_shape(self, in_shape, *, dim: int, patch: int, **_: Any) -> tuple[int, ...]:
        h, w = _grid(in_shape, patch)
        return (h * w + 1, dim)

    def cost(self, in_shape, *, dim: int, patch: int, density: float = 1.0) -> Cost:
        h, w = _grid(in_shape, patch)
        conv = conv_cost(in_shape[0], dim, patch, (h, w), bias=True, density=density)
        return conv + Cost(0, 0, dim + (h * w + 1) * dim)


def _grid(in_shape: tuple[int, ...], patch: int) -> tuple[int, int]:
    h, w = conv_out(in_shape[1], patch, patch, 0), conv_out(in_shape[2], patch, patch, 0)
    if h < 1 or w < 1:
        raise ValueError(f"patch {patch} is larger than the input {in_shape[1]}x{in_shape[2]}")
    return h, w


class TransformerBlock(nn.Module):
    """x + Attn(LN(x)); then x + fc2(GELU(fc1(LN(x)))). LayerNorm eps 1e-6 (timm ViT/DeiT)."""

    def __init__(self, dim: int, heads: int, hidden: int, density: float = 1.0,
                 head_dim: int | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = SelfAttention(dim, heads, density, head_dim)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.fc1 = make_linear(dim, hidden, bias=True, density=density)
        self.act = nn.GELU()
        self.fc2 = make_linear(hidden, dim, bias=True, density=density)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class Transformer(OpDef):
    """Pre-norm ViT block on (tokens, dim). Args: heads, hidden (MLP width), density, and
    head_dim (heads x head_dim wide attention; default: the heads split dim)."""

    name = "transformer"

    def build(self, in_shape, *, heads: int, hidden: int, density: float = 1.0,
              head_dim: int | None = None) -> nn.Module:
        return TransformerBlock(in_shape[1], heads, hidden, density, head_dim)

    def out_shape(self, in_shape, **_: Any) -> tuple[int, ...]:
        return tuple(in_shape)

    def cost(self, in_shape, *, heads: int, hidden: int, density: float = 1.0,
             head_dim: int | None = None) -> Cost:
        tokens, dim = in_shape
        inner = _inner_width(dim, heads, head_dim)
        mlp = (linear_cost(dim, hidden, tokens, density=density)
               + linear_cost(hidden, dim, tokens, density=density))
        return attention_cost(tokens, dim, density, inner) + mlp + norm_cost(dim) * 2


class TokenClassifier(nn.Module):
    def __init__(self, dim: int, classes: int, density: float = 1.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head = make_linear(dim, classes, bias=True, density=density)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(x)[:, 0])


class TokenHead(OpDef):
    """Final LayerNorm -> cls token -> Linear to classes. Args: classes, density."""

    name = "token_head"

    def build(self, in_shape, *, classes: int, density: float = 1.0) -> nn.Module:
        return TokenClassifier(in_shape[1], classes, density)

    def out_shape(self, in_shape, *, classes: int, **_: Any) -> tuple[int, ...]:
        return (classes,)

    def cost(self, in_shape, *, classes: int, density: float = 1.0) -> Cost:
        return norm_cost(in_shape[1]) + linear_cost(in_shape[1], classes, density=density)


class MOATBlock(nn.Module):
    """MBConv (no SE) then x + Attn(LN(x)) over the flattened (H*W, C) map, back to (C, H, W).
    Plain global attention: MOAT's relative position bias is left out."""

    def __init__(self, cin: int, out: int, mid: int, k: int, stride: int, act: str, heads: int,
                 density: float = 1.0):
        super().__init__()
        self.mbconv = MBConv(cin, out, mid, k, stride, act, se=0, density=density)
        self.norm = nn.LayerNorm(out, eps=LN_EPS)
        self.attn = SelfAttention(out, heads, density)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mbconv(x)
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.attn(self.norm(tokens))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class MOAT(OpDef):
    """MOAT block on (C, H, W). Args: out, mid, k, stride, act, heads, density."""

    name = "moat"

    def build(self, in_shape, *, out: int, mid: int, heads: int, k: int = 3, stride: int = 1,
              act: str = "gelu", density: float = 1.0) -> nn.Module:
        return MOATBlock(in_shape[0], out, mid, k, stride, act, heads, density)

    def out_shape(self, in_shape, *, out: int, k: int = 3, stride: int = 1,
                  **_: Any) -> tuple[int, ...]:
        return (out, conv_out(in_shape[1], k, stride, k // 2),
                conv_out(in_shape[2], k, stride, k // 2))

    def cost(self, in_shape, *, out: int, mid: int, heads: int, k: int = 3, stride: int = 1,
             act: str = "gelu", density: float = 1.0) -> Cost:
        _check_heads(out, heads)
        conv = _MBCONV.cost(in_shape, out=out, mid=mid, k=k, stride=stride, act=act,
                               density=density)
        _, h, w = self.out_shape(in_shape, out=out, k=k, stride=stride)
        return conv + norm_cost(out) + attention_cost(h * w, out, density)


_MBCONV = MBConvOp()

OP_DEFS: tuple[OpDef, ...] = (PatchEmbed(), Transformer(), TokenHead(), MOAT())
