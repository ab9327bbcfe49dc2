"""The contract every op obeys, and exact cost formulas shared by all ops.

Cost convention (the field's): `macs` are multiply-accumulates of conv, linear and matmul only
(BatchNorm and the other norms of ops/norm.py, activations, pooling, SE scaling, residual adds,
softmax and LayerNorm are free); `sparse_macs` counts only the non-zero weights of sparse
layers; `params` counts every parameter (BN gamma/beta and EvoNorm's v1 included, buffers
excluded), as torchvision and timm do.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn


@dataclass(frozen=True)
class Cost:
    macs: int = 0
    sparse_macs: int = 0
    params: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.sparse_macs + other.sparse_macs,
                    self.params + other.params)

    def __mul__(self, n: int) -> Cost:
        return Cost(self.macs * n, self.sparse_macs * n, self.params * n)


ZERO = Cost()


class OpDef(ABC):
    """How one op is built and what it costs at a given input shape (batch excluded), and what
    the supernet and the differentiable relaxation need to know about it."""

    name: str
    # Supernet: arguments whose differing values make separate candidates (their weights do
    # not nest: a grouped conv sees another slice of the input than a dense one).
    separating_args: ClassVar[tuple[str, ...]] = ()
    # Differentiable relaxation: a block may be relaxed argument by argument, each argument
    # being a dimension of its own (NB201's edges), instead of over all joint combinations.
    decomposable: ClassVar[bool] = False

    def candidate_of(self, tensor: str, args: dict[str, Any]) -> str | None:
        """Supernet: a finer candidate name for one `tensor` of the block (None: the block's
        candidates share it), e.g. the op chosen on the edge that owns it."""
        return None

    @abstractmethod
    def build(self, in_shape: tuple[int, ...], **args: Any) -> nn.Module: ...

    @abstractmethod
    def out_shape(self, in_shape: tuple[int, ...], **args: Any) -> tuple[int, ...]: ...

    @abstractmethod
    def cost(self, in_shape: tuple[int, ...], **args: Any) -> Cost: ...


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def kept_weights(fan_in: int, density: float) -> int:
    """Non-zero weights per output unit of a sparse layer (at least one)."""
    return fan_in if density >= 1.0 else max(1, int(round(fan_in * density)))


def conv_cost(cin: int, cout: int, kernel: int, out_hw: tuple[int, int], groups: int = 1,
              bias: bool = False, density: float = 1.0) -> Cost:
    fan_in = cin // groups * kernel * kernel
    outputs = cout * out_hw[0] * out_hw[1]
    params = cout * fan_in + (cout if bias else 0)
    return Cost(outputs * fan_in, outputs * kept_weights(fan_in, density), params)


def linear_cost(fin: int, fout: int, tokens: int = 1, bias: bool = True,
                density: float = 1.0) -> Cost:
    return Cost(tokens * fout * fin, tokens * fout * kept_weights(fin, density),
                fout * fin + (fout if bias else 0))


def norm_cost(channels: int) -> Cost:
    """BatchNorm/LayerNorm: gamma and beta are parameters; no MACs by convention."""
    return Cost(0, 0, 2 * channels)
