"""Stitching layers: an affine map from the front anchor's activations at the cut to what the
back anchor expects where it resumes, and their least-squares initialisation (SN-Net).

- Feature maps (C1, H1, W1) -> (C2, H2, W2): a 1x1 convolution C1 -> C2 (with bias), and a
  resize where the spatial sizes differ (adaptive average pooling to shrink, bilinear
  interpolation to grow).
- Token sequences (T1, D1) -> (T2, D2): a Linear D1 -> D2 on every token, and, where the
  token counts differ, the patch grid resampled the same way (the class token, first in this
  engine's token sequences, is kept as it is).

Both resizes average with weights that sum to one, so they commute with the affine map: the
layer resizes before the map when it shrinks and after it when it grows (the map runs on the
fewer positions), and least squares can fit the map on the resized front activations:
min ||X W^T + b - Y||^2 over all positions of a few batches (torch.linalg.lstsq), with a
small ridge penalty where positions are few.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.ops import Cost

Shape = tuple[int, ...]
MAX_FIT_ROWS = 200_000  # positions used by the least-squares fit (a random subset beyond)
RIDGE = 1e-2  # relative ridge penalty of the fit (see fit_least_squares)


def resize_grid(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) to (N, C, *size): averaged down, or bilinearly up."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if size[0] <= x.shape[-2] and size[1] <= x.shape[-1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class StitchLayer(nn.Module, ABC):
    """What both forms share: an affine `proj` on the channels, a resize of the positions,
    and what the fit and the cost need."""

    POSITIONS: slice  # the dimensions of a shape (no batch) that are positions
    CHANNEL: int  # the dimension that is channels
    proj: nn.Conv2d | nn.Linear

    def __init__(self, in_shape: Shape, out_shape: Shape):
        super().__init__()
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        # resize first when it shrinks, so the map runs on the fewer positions
        self.resize_first = math.prod(out_shape[self.POSITIONS]) <= \
            math.prod(in_shape[self.POSITIONS])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize_first:
            return self.proj(self.resize(x))
        return self.resize(self.proj(x))

    @abstractmethod
    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of front activations at the back's positions."""

    @abstractmethod
    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """(positions, channels) of a batch, the positions of every image stacked."""

    def set_affine(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Set the map to y = weight @ x + bias (weight: out x in)."""
        with torch.no_grad():
            self.proj.weight.copy_(weight.reshape(self.proj.weight.shape))
            self.proj.bias.copy_(bias)

    def cost(self, in_shape: Shape, out_shape: Shape) -> Cost:
        """MACs and parameters between activations of these shapes (the map runs on the
        fewer positions; resizing is not counted, as pooling is not)."""
        positions = min(math.prod(in_shape[self.POSITIONS]),
                        math.prod(out_shape[self.POSITIONS]))
        c_in, c_out = in_shape[self.CHANNEL], out_shape[self.CHANNEL]
        macs = positions * c_in * c_out
        return Cost(macs, macs, c_in * c_out + c_out)


class MapStitch(StitchLayer):
    """(C1, H1, W1) -> (C2, H2, W2): 1x1 convolution and resize."""

    POSITIONS = slice(1, 3)
    CHANNEL = 0

    def __init__(self, in_shape: Shape, out_shape: Shape):
        super().__init__(in_shape, out_shape)
        self.proj = nn.Conv2d(in_shape[0], out_shape[0], 1, bias=True)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        return resize_grid(x, self.out_shape[1:3])

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


class TokenStitch(StitchLayer):
    """(T1, D1) -> (T2, D2): a Linear on each token and the patch grid resampled."""

    POSITIONS = slice(0, 1)
    CHANNEL = 1

    def __init__(self, in_shape: Shape, out_shape: Shape):
        super().__init__(in_shape, out_shape)
        self.proj = nn.Linear(in_shape[1], out_shape[1])

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.out_shape[0]
        if x.shape[1] == tokens:
            return x
        cls, patches = x[:, :1], x[:, 1:].transpose(1, 2)  # (N, D, T - 1)
        side_in, side_out = math.isqrt(patches.shape[2]), math.isqrt(tokens - 1)
        if side_in ** 2 == patches.shape[2] and side_out ** 2 == tokens - 1:
            grid = patches.reshape(*patches.shape[:2], side_in, side_in)
            patches = resize_grid(grid, (side_out, side_out)).flatten(2)
        else:  # not a square grid: resample the sequence
            patches = F.interpolate(patches, size=tokens - 1, mode="linear",
                                    align_corners=False)
        return torch.cat([cls, patches.transpose(1, 2)], dim=1)

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, x.shape[-1])


def make_layer(in_shape: Shape, out_shape: Shape) -> StitchLayer:
    """The stitching layer between activations of these shapes (no batch)."""
    if len(in_shape) == len(out_shape) == 3:
        return MapStitch(in_shape, out_shape)
    if len(in_shape) == len(out_shape) == 2:
        return TokenStitch(in_shape, out_shape)
    raise ValueError(f"cannot stitch activations of shape {in_shape} to {out_shape}")


@torch.no_grad()
def fit_least_squares(layer: StitchLayer, front: torch.Tensor, target: torch.Tensor,
                      seed: int = 0, ridge: float = RIDGE) -> float:
    """Set `layer`'s map to the least-squares fit of `target` (the back anchor's own input at
    the resume block) from `front` (the front anchor's output at the cut, same images);
    returns the fit's relative residual ||XW^T + b - Y|| / ||Y - mean(Y)||.

    `ridge` adds ridge * mean(eigenvalues of X^T X) * ||W||^2 (X, Y centred; the bias is the
    mean difference): where positions are few against channels (a 1x1 map late in a network
    at low resolution), the plain solution fits exactly with huge weights that wreck training.
    """
    x = layer.rows(layer.resize(front)).double()
    y = layer.rows(target).double()
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} front positions against {y.shape[0]} target ones")
    if x.shape[0] > MAX_FIT_ROWS:
        keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
        x, y = x[keep[:MAX_FIT_ROWS]], y[keep[:MAX_FIT_ROWS]]
    x_mean, y_mean = x.mean(dim=0), y.mean(dim=0)
    xc, yc = x - x_mean, y - y_mean
    scale = float((xc * xc).sum()) / x.shape[1]  # mean eigenvalue of X^T X
    penalty = math.sqrt(ridge * scale) * torch.eye(x.shape[1], dtype=x.dtype)
    design = torch.cat([xc, penalty])
    goal = torch.cat([yc, torch.zeros(x.shape[1], y.shape[1], dtype=y.dtype)])
    weight = torch.linalg.lstsq(design, goal).solution.T  # (out, in)
    bias = y_mean - weight @ x_mean
    layer.set_affine(weight.float(), bias.float())
    spread = yc.norm()
    residual = (xc @ weight.T - yc).norm()
    return float(residual / spread) if spread > 0 else float(residual)


__all__ = ["MapStitch", "StitchLayer", "TokenStitch", "fit_least_squares", "make_layer",
           "resize_grid"]
