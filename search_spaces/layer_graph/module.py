"""A layer graph as an `nn.Module`: (N, C, H, W) in, the same shape out, wherever a
normalization-activation layer goes.

Learned per-channel vectors (v0, v1, gamma, beta) are `nn.Parameter`s of shape (C,), made only
for those the graph reads. A batch aggregate (`mean_bwh`, `var_bwh`) of something that varies
along the batch keeps a running estimate, used in eval mode, updated in train mode as
BatchNorm does: `running = (1 - momentum) * running + momentum * batch_value`, momentum 0.1,
variances unbiased (times n / (n - 1)); running means start at 0, running variances at 1.
An output with NaN or inf raises `NonFiniteLayerError`, naming the first node that went
non-finite, so that a search can reject the layer.
"""
from __future__ import annotations

import torch
from torch import nn

from search_spaces.errors import NasError
from search_spaces.layer_graph.graph import LayerGraph
from search_spaces.layer_graph.primitives import INPUT, PARAMETERS, PRIMITIVES, ZERO

DEFAULT_GROUPS = 32  # as GroupNorm and EvoNorm-S0
BATCH_DIMS = (0, 2, 3)
SPACE_DIMS = (2, 3)


class NonFiniteLayerError(NasError):
    """A layer's output holds NaN or inf (`node`: the first node that did)."""

    def __init__(self, message: str, node: str):
        super().__init__(message)
        self.node = node


def default_groups(channels: int) -> int:
    """The largest divisor of `channels` that is at most 32."""
    return max(g for g in range(1, min(DEFAULT_GROUPS, channels) + 1) if channels % g == 0)


class LayerGraphModule(nn.Module):
    """The layer of `graph` for `channels` channels (group aggregates over `groups` groups)."""

    def __init__(self, graph: LayerGraph, channels: int, groups: int, eps: float = 1e-5,
                 momentum: float = 0.1, check_finite: bool = True, key: str = ""):
        super().__init__()
        self.graph = graph
        self.key = key or graph.text
        self.channels, self.groups = channels, groups
        self.eps, self.momentum, self.check_finite = eps, momentum, check_finite
        self._parameter_names = sorted(graph.uses() & set(PARAMETERS))
        for name in self._parameter_names:
            self.register_parameter(name, nn.Parameter(torch.full((channels,),
                                                                  PARAMETERS[name])))
        axes = graph.axes()
        self._steps = []  # (primitive name, input names, running-estimate buffer or None)
        for i, node in enumerate(graph.nodes, 1):
            primitive = PRIMITIVES[node.op]
            running = None
            if primitive.aggregate == "bwh" and "b" in axes[node.inputs[0]]:
                running = f"running_n{i}"
                start = 0.0 if primitive.moment == "mean" else 1.0
                self.register_buffer(running, torch.full((channels,), start))
            self._steps.append((node.op, node.inputs, running))

    def extra_repr(self) -> str:
        return f"{self.key!r}, channels={self.channels}, groups={self.groups}, eps={self.eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"layer for {self.channels} channels got input of shape "
                             f"{tuple(x.shape)}; expected (N, {self.channels}, H, W)")
        values: dict[str, torch.Tensor] = {INPUT: x, ZERO: x.new_zeros(1, 1, 1, 1)}
        for name in self._parameter_names:
            values[name] = getattr(self, name).view(1, -1, 1, 1)
        for i, (op, inputs, running) in enumerate(self._steps, 1):
            primitive = PRIMITIVES[op]  # looked up here: modules pickle without the lambdas
            args = [values[t] for t in inputs]
            if primitive.aggregate is None:
                values[f"n{i}"] = primitive.fn(*args, eps=self.eps)
            else:
                values[f"n{i}"] = self._aggregate(primitive.aggregate, primitive.moment,
                                                  args[0], running)
        out = values[self.graph.output]
        if self.check_finite and not bool(torch.isfinite(out).all()):
            self._raise_non_finite(values)
        return out

    def _aggregate(self, axes: str, moment: str, a: torch.Tensor,
                   running: str | None) -> torch.Tensor:
        if axes == "group" and a.shape[1] > 1:
            return _group_moment(a, moment, self.groups)
        dims = BATCH_DIMS if axes == "bwh" else SPACE_DIMS
        if running is not None and not self.training:
            return getattr(self, running).view(1, -1, 1, 1)
        value = a.mean(dims, keepdim=True) if moment == "mean" \
            else a.var(dims, unbiased=False, keepdim=True)
        if running is not None:
            self._update(running, moment, value, a)
        return value

    @torch.no_grad()
    def _update(self, running: str, moment: str, value: torch.Tensor, a: torch.Tensor) -> None:
        batch = value.detach().reshape(-1)
        if moment == "var":
            n = a.shape[0] * a.shape[2] * a.shape[3]
            batch = batch * (n / (n - 1) if n > 1 else 1.0)
        buffer = getattr(self, running)
        buffer.mul_(1 - self.momentum).add_(batch.to(buffer.dtype), alpha=self.momentum)

    def _raise_non_finite(self, values: dict[str, torch.Tensor]) -> None:
        for i in range(1, len(self._steps) + 1):
            if not bool(torch.isfinite(values[f"n{i}"]).all()):
                node = self.graph.nodes[i - 1]
                raise NonFiniteLayerError(f"layer {self.key}: node n{i} ({node.op}) gives NaN "
                                          f"or inf", f"n{i}")
        raise NonFiniteLayerError(f"layer {self.key}: its output gives NaN or inf",
                                  self.graph.output)


def _group_moment(a: torch.Tensor, moment: str, groups: int) -> torch.Tensor:
    """Mean or (biased) variance over height, width and the channels of each group."""
    n, c = a.shape[:2]
    grouped = a.reshape(n, groups, -1)
    value = grouped.mean(2, keepdim=True) if moment == "mean" \
        else grouped.var(2, unbiased=False, keepdim=True)
    return value.expand(n, groups, c // groups).reshape(n, c, 1, 1)


def build_graph(graph: LayerGraph, key: str, channels: int, groups: int | None = None, *,
                eps: float = 1e-5, momentum: float = 0.1,
                check_finite: bool = True) -> LayerGraphModule:
    """The module of the canonical `graph` (named `key` in errors) for `channels` channels;
    `groups` (default: the largest divisor of `channels` up to 32) is the number of groups of
    the group aggregates. `layer_graph.build` takes an `Arch` or a key."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise NasError(f"layer {key}: channels must be a positive integer, got {channels!r}")
    if groups is None:
        groups = default_groups(channels)
    elif isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 \
            or channels % groups:
        raise NasError(f"layer {key}: groups must be a positive divisor of the {channels} "
                       f"channels, got {groups!r}")
    return LayerGraphModule(graph, channels, groups, eps, momentum, check_finite, key)
