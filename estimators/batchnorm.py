"""BatchNorm for inherited weights: recalibrate the running statistics of a subnet on
training images, and fold BatchNorm into the preceding convolution for fast scoring."""
from __future__ import annotations

import torch
from torch import nn

# every layer with BatchNorm's running statistics, EvoNorm-B0 (search_spaces.ops.norm) included
_NORMS = (nn.modules.batchnorm._BatchNorm,)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor,
                          batch_size: int | None = None) -> None:
    """Replace every BatchNorm's running statistics by those of `images` (other layers in eval
    mode: no dropout). In one pass (`batch_size` None) they are exact; in batches, the mean is
    exact and the variance the image-weighted average of the batches' variances."""
    norms = [m for m in model.modules() if isinstance(m, _NORMS)]
    if not norms:
        return
    model.eval()
    saved = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.train()
    size = batch_size or images.shape[0]
    try:
        seen = 0
        for start in range(0, images.shape[0], size):
            batch = images[start:start + size]
            for norm in norms:  # weight each batch by its images (a cumulative average)
                norm.momentum = batch.shape[0] / (seen + batch.shape[0])
            model(batch)
            seen += batch.shape[0]
    finally:
        for norm, momentum in zip(norms, saved):
            norm.momentum = momentum
        model.eval()


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """In eval-only use: every Conv2d directly followed by a BatchNorm2d inside an
    nn.Sequential absorbs it (scaled weights, a bias) and the BatchNorm becomes an identity.
    The outputs are those of the unfolded model up to rounding. Returns how many folded."""
    folded = 0
    for parent in model.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent._modules.items())
        for (_, conv), (name, norm) in zip(children, children[1:]):
            if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
                    and norm.track_running_stats and norm.running_var is not None):
                continue
            scale = torch.rsqrt(norm.running_var + norm.eps)
            if norm.weight is not None:
                scale = scale * norm.weight
            shift = -norm.running_mean * scale
            if norm.bias is not None:
                shift = shift + norm.bias
            if conv.bias is not None:
                shift = shift + conv.bias * scale
            conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
            conv.bias = nn.Parameter(shift)
            parent._modules[name] = nn.Identity()
            folded += 1
    return folded
