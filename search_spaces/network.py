"""`Network`: a built architecture (kept apart so spaces and strategies load without torch)."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class Network(nn.Sequential):
    """A built architecture: its blocks in order, plus the key and input size it was built for."""

    def __init__(self, blocks: Iterable[nn.Module], arch_key: str, input_shape: tuple[int, ...]):
        super().__init__(*blocks)
        self.arch_key = arch_key
        self.input_shape = input_shape

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return torch.randn(batch_size, *self.input_shape)
