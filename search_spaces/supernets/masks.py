"""Sparse layers share the dense weight: a density is a mask over the shared tensor.

The mask keeps the largest-magnitude weights of each output unit, the rule `SparseConv2d`
and `SparseLinear` use at initialisation, recomputed from the current shared weight whenever a
subnet is materialised, so every density trains (and is scored with) the same weights.
"""
from __future__ import annotations

import torch

from search_spaces.ops.base import kept_weights


@torch.no_grad()
def magnitude_mask(weight: torch.Tensor, density: float) -> torch.Tensor:
    """1.0 for the `kept_weights(fan_in, density)` largest |w| of each output row, else 0.0."""
    rows = weight.detach().reshape(weight.shape[0], -1)
    keep = kept_weights(rows.shape[1], density)
    mask = torch.zeros_like(rows)
    mask.scatter_(1, rows.abs().topk(keep, dim=1).indices, 1.0)
    return mask.view(weight.shape).contiguous()
