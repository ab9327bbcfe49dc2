"""Exact speed-up for small feature maps: kernel taps that only ever read padding are cut.

At Fashion-MNIST's 28x28 a mobile network's later stages run on 2x2 and 1x1 maps, where a
7x7 depthwise kernel reads zeros with 40 of its 49 taps (and pays for them, above all in the
weight gradient). Inside `dead_taps_trimmed()`, every 2-D convolution whose outer taps read
nothing but zero padding runs with those taps cut and its padding reduced to match: the same
sums (up to the order of floating-point addition) and the same gradients (a dead tap's
gradient is zero either way), at a fraction of the cost.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_CONV2D = {F.conv2d, torch.conv2d}


def dead_taps(size: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    """(taps cut from the start, taps cut from the end) of one dimension: taps that read
    outside [0, size) for every output position."""
    outputs = (size + 2 * padding - kernel) // stride + 1
    if outputs < 1:
        return 0, 0
    rows = [stride * i - padding for i in range(outputs)]
    live = [any(0 <= r + tap < size for r in rows) for tap in range(kernel)]
    if not any(live):
        return 0, 0
    return live.index(True), live[::-1].index(True)


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None


def trimmed_conv2d(args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """The arguments of an equivalent conv2d with dead taps cut, or None when none are."""
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    bound = dict(zip(names, args), **kwargs)
    x, w = bound.get("input"), bound.get("weight")
    stride, padding = _pair(bound.get("stride", 1)), _pair(bound.get("padding", 0))
    dilation = _pair(bound.get("dilation", 1))
    if x is None or w is None or x.dim() != 4 or stride is None or padding is None \
            or dilation != (1, 1):
        return None
    cuts = [dead_taps(x.shape[2 + d], w.shape[2 + d], stride[d], padding[d]) for d in (0, 1)]
    # cut the same number on both sides so the remaining taps keep their alignment
    cuts = [min(low, high) for low, high in cuts]
    if not any(cuts):
        return None
    (ch, cw) = cuts
    weight = w[:, :, ch:w.shape[2] - ch, cw:w.shape[3] - cw]
    new = dict(bound, weight=weight, padding=(padding[0] - ch, padding[1] - cw),
               stride=stride, dilation=(1, 1))
    return (), new


class _Trim(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func in _CONV2D:
            trimmed = trimmed_conv2d(args, kwargs)
            if trimmed is not None:
                args, kwargs = trimmed
        return func(*args, **kwargs)


def dead_taps_trimmed() -> _Trim:
    """A context in which conv2d calls skip the kernel taps that read only padding."""
    return _Trim()
