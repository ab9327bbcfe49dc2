"""Elastic ops as tensor transforms: how a subnet's tensor is cut from the shared one.

Every transform is differentiable, so the gradient of a subnet's loss reaches the shared
tensor. Kernels follow Once-for-All: a smaller kernel is the centre of the larger one, and
with kernel transform matrices (one per layer and size step, initialised to the identity) the
centre passes through a learned linear map first, so the small kernel need not equal the
centre of the large one.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def leading(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The first `shape[d]` entries of every dimension d (channel, width or depth slicing)."""
    if tuple(tensor.shape) == tuple(shape):
        return tensor
    return tensor[tuple(slice(0, s) for s in shape)]


def centre(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Conv weight (O, I, K, K): leading O and I, the centre k x k of the kernel."""
    out, cin, kh, kw = shape
    top = (tensor.shape[2] - kh) // 2
    left = (tensor.shape[3] - kw) // 2
    return tensor[:out, :cin, top:top + kh, left:left + kw]


def transformed_kernel(tensor: torch.Tensor, shape: tuple[int, ...],
                       matrices: dict[tuple[int, int], torch.Tensor]) -> torch.Tensor:
    """A depthwise kernel (C, 1, K, K) shrunk to `shape` one size step at a time (7 -> 5 ->
    3): centre crop, then the step's transform matrix (k*k x k*k, shared by all channels)
    where one exists."""
    channels, _, k, _ = shape
    weight = tensor[:channels]
    size = weight.shape[2]
    for big, small in sorted(matrices, reverse=True):
        if big != size or small < k:
            continue
        weight = centre(weight, (channels, 1, small, small))
        flat = weight.reshape(channels, small * small) @ matrices[(big, small)].t()
        weight = flat.reshape(channels, 1, small, small)
        size = small
    return weight if size == k else centre(weight, shape)


def qkv(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A fused q/k/v projection ((3*D, D) weight or (3*D,) bias): q, k and v sliced apiece,
    so a narrower subnet's q rows come from the shared q rows, never from k's."""
    dim = shape[0] // 3
    parts = tensor.reshape(3, tensor.shape[0] // 3, *tensor.shape[1:])
    cut = parts[(slice(None), slice(0, dim), *(slice(0, s) for s in shape[1:]))]
    return cut.reshape(shape)


def position_grid(tensor: torch.Tensor, shape: tuple[int, ...],
                  cls: bool = True) -> torch.Tensor:
    """ViT position embeddings (1, 1 + G*G, D), or (1, G*G, D) without a class token row
    (`cls` False: ViT-ResNAS's reductions): the class token's row and the first D channels
    kept; the G x G grid resampled bilinearly from the shared one (as timm resizes position
    embeddings for another resolution)."""
    _, tokens, dim = shape
    if tokens == tensor.shape[1]:
        return tensor[:, :, :dim]
    first = 1 if cls else 0
    grid, shared = _side(tokens - first), _side(tensor.shape[1] - first)
    head, rest = tensor[:, :first, :dim], tensor[:, first:, :dim]
    image = rest.reshape(1, shared, shared, dim).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=(grid, grid), mode="bilinear", align_corners=False)
    return torch.cat([head, image.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)], dim=1)


def _side(count: int) -> int:
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"position embeddings of {count} patches are not a square grid")
    return side
