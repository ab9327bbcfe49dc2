"""FLOPs and parameters.

`flops` are multiply-accumulates of conv, linear and matmul only (the field's convention:
MobileNetV2-1.0 at 224 = 300.8M). Two counters: `fvcore_cost` traces a built module with
fvcore (plus a handle for scaled_dot_product_attention, which fvcore skips and which
nn.MultiheadAttention also lowers to); `analytical_cost` sums the closed-form cost of the
space's blocks and is the one used in search (microseconds per architecture).
"""
from __future__ import annotations

import logging
import warnings
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from search_spaces import Arch, BlockSpec, get_space
from search_spaces.ops import Cost, SparseConv2d, SparseLinear, block_cost, block_out_shape

# fvcore operator names that are multiply-accumulates of conv, linear or matmul.
MAC_OPERATORS = frozenset({"conv", "linear", "matmul", "bmm", "einsum", "addmm", "baddbmm",
                           "scaled_dot_product_attention"})


def _sdpa_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """q @ k^T and attn @ v: L*S*E + L*S*Ev per batch and head."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    length, emb = q[-2], q[-1]
    source, value_dim = k[-2], v[-1]
    return batch * length * source * (emb + value_dim)


def _baddbmm_handle(inputs: list[Any], outputs: list[Any]) -> int:
    from fvcore.nn.jit_handles import get_shape

    b, n, m = get_shape(inputs[1])
    p = get_shape(inputs[2])[-1]
    return b * n * m * p


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fvcore_cost(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> Cost:
    """Count a module by tracing it with fvcore (slow; the reference for `analytical_cost`)."""
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    was_training = model.training
    model.eval()
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # fvcore and torch.jit are noisy; nothing actionable
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, inputs)
        analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_handle,
                               "aten::baddbmm", _baddbmm_handle)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        macs = sum(v for k, v in analysis.by_operator().items() if k in MAC_OPERATORS)
        by_module = analysis.by_module_and_operator()
        pruned = 0.0
        for name, module in model.named_modules():
            if isinstance(module, (SparseConv2d, SparseLinear)):
                layer_macs = sum(v for k, v in by_module.get(name, {}).items()
                                 if k in MAC_OPERATORS)
                pruned += layer_macs * (1.0 - float(module.mask.mean()))
    model.train(was_training)
    return Cost(int(macs), int(round(macs - pruned)), count_params(model))


@lru_cache(maxsize=200_000)
def _cached_block_cost(spec: BlockSpec) -> Cost:
    return block_cost(spec)


def analytical_cost(arch: Arch, num_classes: int | None = None,
                    in_channels: int | None = None) -> Cost:
    """Sum of the closed-form costs of the arch's blocks (cached per block)."""
    specs = get_space(arch.space).blocks(arch, num_classes, in_channels)
    total = Cost()
    for spec in specs:
        total = total + _cached_block_cost(spec)
    return total


def layer_table(arch: Arch, num_classes: int | None = None,
                in_channels: int | None = None) -> list[dict[str, Any]]:
    """One row per block: name, op, arguments, input/output shape, flops, params."""
    rows = []
    for spec in get_space(arch.space).blocks(arch, num_classes, in_channels):
        cost = _cached_block_cost(spec)
        rows.append({
            "name": spec.name, "op": spec.op,
            "args": " ".join(f"{k}={v}" for k, v in spec.args),
            "in_shape": "x".join(map(str, spec.in_shape)),
            "out_shape": "x".join(map(str, block_out_shape(spec))),
            "flops": cost.macs, "flops_sparse": cost.sparse_macs, "params": cost.params,
        })
    return rows


class FlopsEstimator:
    """`flops`, `flops_sparse` and `params` of an arch, analytically, cached by key."""

    name = "flops"
    metrics = ("flops", "flops_sparse", "params")

    def __init__(self, num_classes: int | None = None, in_channels: int | None = None):
        self.num_classes = num_classes
        self.in_channels = in_channels
        self._cache: dict[str, dict[str, float]] = {}

    def __call__(self, arch: Arch) -> dict[str, float]:
        key = arch.key
        if key not in self._cache:
            cost = analytical_cost(arch, self.num_classes, self.in_channels)
            self._cache[key] = {"flops": float(cost.macs), "flops_sparse": float(cost.sparse_macs),
                                "params": float(cost.params)}
        return dict(self._cache[key])
