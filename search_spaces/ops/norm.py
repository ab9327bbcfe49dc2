"""Normalization-activation layers: BatchNorm-ReLU, GroupNorm-ReLU, EvoNorm-B0 and EvoNorm-S0.

A block asks for the pair `(norm, act) = norm_and_act(kind, channels, act)` (or each half:
`norm_layer`, `act_layer`) and places both modules where BatchNorm and the activation sit
today, so `bn_relu` networks keep their module layout, state-dict names and initial weights.
`bn_relu` and `gn_relu` (named after the paper's baselines) normalise, then apply the block's
own activation (ReLU, ReLU6, h-swish...). An EvoNorm is one layer that does both: its own
nonlinearity replaces the block's activation, whichever it is, and the second module of the
pair is an identity.

EvoNorm: Liu, Brock, Simonyan, Le, "Evolving Normalization-Activation Layers", NeurIPS 2020
(arXiv:2004.02967). The paper gives B0 and S0 as expressions in its table of the discovered
layers (not as numbered equations) and draws S0's computation graph in Figure 1; the details
below are those of the authors' reference code, which the paper links (tensorflow/tpu
`models/official/resnet/resnet_model.py`: `evonorm`, `_batch_std`, `_instance_std`,
`_group_std`):

- where a block has no activation (the projection conv of an MBConv, the last conv of a
  residual block, a projection shortcut), EvoNorm is its affine part only, `x * gamma + beta`:
  the reference code's `nonlinearity=False` ("apply an affine transform only"), as timm's
  `EvoNorm2dB0/S0(apply_act=False)`;
- eps 1e-5 in every square root; B0's moving average has decay 0.9 (momentum 0.1) and averages
  the biased batch variance (`tf.nn.moments`), which B0 reads in eval mode;
- S0 and GroupNorm use the largest number of groups not above 32 that divides the channels
  and leaves at least two channels per group: 32 for 64 or 960 channels, 20 for 40, 12 for
  24, 8 for 16. The reference code counts down from 32 without the second condition, which
  differs only for 32 channels or fewer, where it makes one-channel groups (24 for 24): on the
  1x1 maps a small input reaches in late stages their variance is 0, so the layer's output no
  longer depends on its input (and torch's GroupNorm refuses a batch of one there).

Costs follow the engine's convention (base.py): no MACs; gamma, beta and v1 are parameters
(2 or 3 per channel), running statistics are buffers.
"""
from __future__ import annotations

import torch
from torch import nn

from search_spaces.ops.activations import make_act
from search_spaces.ops.base import Cost

NORMS = ("bn_relu", "gn_relu", "evonorm_b0", "evonorm_s0")
DEFAULT_NORM = "bn_relu"  # what every network had before norms were a choice
EVONORMS = ("evonorm_b0", "evonorm_s0")
MAX_GROUPS = 32
MIN_GROUP_SIZE = 2  # channels per group (see above)
EPS = 1e-5
MOMENTUM = 0.1


def check_norm(kind: str) -> str:
    if kind not in NORMS:
        raise ValueError(f"unknown normalization-activation {kind!r}; known: {list(NORMS)}")
    return kind


def group_count(channels: int, limit: int = MAX_GROUPS, size: int = MIN_GROUP_SIZE) -> int:
    """GroupNorm and EvoNorm-S0 groups: the largest divisor of `channels` not above `limit`
    with at least `size` channels per group (1 if there is none)."""
    return next((g for g in range(min(limit, channels // size), 1, -1) if channels % g == 0), 1)


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    return t.view(1, -1, 1, 1)


class EvoNormB0(nn.modules.batchnorm._BatchNorm):
    """EvoNorm-B0 (the paper's table of discovered layers):
    `y = x / max(sqrt(s2_bwh(x) + eps), v1 * x + sqrt(s2_wh(x) + eps)) * gamma + beta`,
    s2_bwh the per-channel variance over batch, height and width (in eval mode the moving
    average of it), s2_wh the per-sample per-channel variance over height and width.

    A `_BatchNorm`, so the engine's BatchNorm tools (recalibration of running statistics,
    `momentum=None` for a cumulative average, reset) treat it as they treat BatchNorm. It keeps
    BatchNorm's `running_mean` (updated, never read by the formula) for the same reason."""

    def __init__(self, channels: int, eps: float = EPS, momentum: float | None = MOMENTUM):
        super().__init__(channels, eps, momentum, affine=True, track_running_stats=True)
        self.v = nn.Parameter(torch.ones(channels))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "v"):  # _BatchNorm's __init__ calls this before v exists
            nn.init.ones_(self.v)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"EvoNormB0 expects a 4-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if self.training:
            var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
            self._update_running_stats(mean, var)
        else:
            var = self.running_var
        batch_std = _per_channel(var + self.eps).sqrt()
        instance_std = (torch.var(x, dim=(2, 3), correction=0, keepdim=True) + self.eps).sqrt()
        y = x / torch.maximum(batch_std, _per_channel(self.v) * x + instance_std)
        return y * _per_channel(self.weight) + _per_channel(self.bias)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """BatchNorm's rule: factor `momentum`, or 1/n over n batches when it is None."""
        self.num_batches_tracked.add_(1)
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                  else self.momentum)
        self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
        self.running_var.mul_(1 - factor).add_(var.detach(), alpha=factor)


class EvoNormS0(nn.Module):
    """EvoNorm-S0 (the paper's table of discovered layers; its graph is the paper's Figure 1):
    `y = x * sigmoid(v1 * x) / sqrt(s2_whc/g(x) + eps) * gamma + beta`, s2_whc/g the
    per-sample variance over height, width and the channels of each of `groups` groups."""

    def __init__(self, channels: int, groups: int | None = None, eps: float = EPS):
        super().__init__()
        self.groups = group_count(channels) if groups is None else groups
        if channels % self.groups:
            raise ValueError(f"EvoNormS0: {channels} channels do not split into "
                             f"{self.groups} groups")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.v = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        grouped = x.reshape(n, self.groups, c // self.groups * h * w)
        std = (torch.var(grouped, dim=2, correction=0, keepdim=True) + self.eps).sqrt()
        std = std.expand(n, self.groups, c // self.groups * h * w).reshape(n, c, h, w)
        y = x * torch.sigmoid(_per_channel(self.v) * x) / std
        return y * _per_channel(self.weight) + _per_channel(self.bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, groups={self.groups}, eps={self.eps}"


class ChannelAffine(nn.Module):
    """`x * gamma + beta` per channel: EvoNorm (B0 and S0) where the block has no activation,
    as in the paper's reference code."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * _per_channel(self.weight) + _per_channel(self.bias)

    def extra_repr(self) -> str:
        return str(self.weight.shape[0])


def norm_layer(kind: str, channels: int, act: str = "relu") -> nn.Module:
    """The normalisation of one norm-act followed by `act` ("none": the form a block needs
    where it has no activation); for an EvoNorm it applies its own nonlinearity too."""
    check_norm(kind)
    if kind == "bn_relu":
        return nn.BatchNorm2d(channels)
    if kind == "gn_relu":
        return nn.GroupNorm(group_count(channels), channels)
    if act == "none":
        return ChannelAffine(channels)
    return EvoNormB0(channels) if kind == "evonorm_b0" else EvoNormS0(channels)


def act_layer(kind: str, act: str = "relu") -> nn.Module:
    """The activation after `norm_layer(kind, ..., act)`: an identity for an EvoNorm."""
    return nn.Identity() if check_norm(kind) in EVONORMS else make_act(act)


def norm_and_act(kind: str, channels: int, act: str = "relu") -> tuple[nn.Module, nn.Module]:
    """`(norm_layer, act_layer)` of one norm-act, to place where BatchNorm and the activation
    sit in a block."""
    return norm_layer(kind, channels, act), act_layer(kind, act)


def make_norm_act(kind: str, channels: int, act: str = "relu") -> nn.Module:
    """One module that normalises and applies the activation: `Sequential(norm, act)` (for
    `bn_relu` today's `Sequential(BatchNorm2d, act)`)."""
    return nn.Sequential(*norm_and_act(kind, channels, act))


def norm_act_cost(kind: str, channels: int, act: str = "relu") -> Cost:
    """Parameters of one norm-act: gamma and beta, plus v1 for an EvoNorm with its
    nonlinearity; no MACs by convention."""
    per_channel = 3 if check_norm(kind) in EVONORMS and act != "none" else 2
    return Cost(0, 0, per_channel * channels)
