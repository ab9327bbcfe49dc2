"""Activation functions by name (the blocks' `act` arguments and the spaces' `acts` settings)."""
from __future__ import annotations

from torch import nn

ACTIVATIONS = ("relu", "relu6", "hswish", "gelu", "none")


def make_act(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    if name == "gelu":
        return nn.GELU()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; known: {ACTIVATIONS}")
