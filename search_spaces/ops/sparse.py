"""Masked sparse layers (as in DASS): a fixed fraction `density` of each output unit's weights
is kept. Masked weights are zero in the stored parameter and in the forward pass; since the
forward multiplies by the mask, they get zero gradient and stay zero through training."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.ops.base import kept_weights


class _Masked:
    """Shared mask logic for SparseConv2d and SparseLinear."""

    weight: nn.Parameter
    mask: torch.Tensor
    density: float

    def _init_mask(self, density: float) -> None:
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density}")
        self.density = float(density)
        self.register_buffer("mask", torch.ones_like(self.weight))  # type: ignore[attr-defined]
        self.reset_mask()

    @torch.no_grad()
    def reset_mask(self) -> None:
        """Keep the largest-magnitude weights of each output unit; zero the rest."""
        rows = self.weight.reshape(self.weight.shape[0], -1)
        keep = kept_weights(rows.shape[1], self.density)
        mask = torch.zeros_like(rows)
        mask.scatter_(1, rows.abs().topk(keep, dim=1).indices, 1.0)
        self.mask.copy_(mask.view_as(self.weight))
        self.weight.mul_(self.mask)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def extra_repr(self) -> str:
        return super().extra_repr() + f", density={self.density}"  # type: ignore[misc]


class SparseConv2d(_Masked, nn.Conv2d):
    def __init__(self, *args, density: float = 1.0, **kwargs) -> None:
        nn.Conv2d.__init__(self, *args, **kwargs)
        self._init_mask(density)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)


class SparseLinear(_Masked, nn.Linear):
    def __init__(self, *args, density: float = 1.0, **kwargs) -> None:
        nn.Linear.__init__(self, *args, **kwargs)
        self._init_mask(density)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


def make_conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
              bias: bool = False, density: float = 1.0, padding: int | None = None) -> nn.Conv2d:
    """A Conv2d, or a SparseConv2d when density < 1."""
    pad = kernel // 2 if padding is None else padding
    if density >= 1.0:
        return nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=bias)
    return SparseConv2d(cin, cout, kernel, stride, pad, groups=groups, bias=bias, density=density)


def make_linear(fin: int, fout: int, bias: bool = True, density: float = 1.0) -> nn.Linear:
    if density >= 1.0:
        return nn.Linear(fin, fout, bias=bias)
    return SparseLinear(fin, fout, bias=bias, density=density)
