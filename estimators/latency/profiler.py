"""Profiler: times blocks and whole networks on this machine's CPU or CUDA device.

A block is what `search_spaces.ops.build_block(spec)` builds (a fused conv-bn-act, an MBConv
with its SE and residual add, an attention block...), timed at its exact input shape with a
random input of the chosen batch size and dtype, in eval mode under `torch.inference_mode()`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from estimators.latency.errors import LatencyError
from estimators.latency.fingerprint import Fingerprint, local_fingerprint
from estimators.latency.timing import Timing, TimingPlan, time_cpu, time_cuda
from search_spaces import BlockSpec

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16,
                                   "bfloat16": torch.bfloat16}


def check_dtype(device: str, dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise LatencyError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    if device == "cpu" and dtype == "float16":
        raise LatencyError("float16 is for --device cuda; on cpu use float32 or bfloat16")
    return DTYPES[dtype]


class Profiler:
    """Times modules on one local device with fixed settings (threads, batch, dtype, clock)."""

    def __init__(self, device: str = "cpu", threads: int | None = None, batch_size: int = 1,
                 dtype: str = "float32", clock: str | None = None, cuda_graphs: bool = False,
                 plan: TimingPlan = TimingPlan(), high_priority: bool = False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise LatencyError(f"--batch-size must be a whole number >= 1, got {batch_size!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):
            raise LatencyError(f"--threads must be a whole number >= 1, got {threads!r}")
        if cuda_graphs and device != "cuda":
            raise LatencyError("CUDA graphs need --device cuda")
        self.device = device
        self.threads = threads or 1
        self.batch_size = batch_size
        self.dtype_name = dtype
        self.dtype = check_dtype(device, dtype)
        self.cuda_graphs = cuda_graphs
        self.plan = plan
        self.high_priority = high_priority
        self.raised_priority = False  # whether the last session could raise it
        self.fingerprint: Fingerprint = local_fingerprint(device, self.threads, clock, cuda_graphs)
        self.torch_device = torch.device("cuda" if device == "cuda" else "cpu")

    @contextmanager
    def session(self) -> Iterator[Profiler]:
        """Apply the thread count (and, if asked and permitted, the highest scheduling priority)
        for the duration of a measurement session, then restore both."""
        previous = torch.get_num_threads()
        if self.device == "cpu":
            torch.set_num_threads(self.threads)
        niceness = _raise_priority() if self.high_priority else None
        self.raised_priority = niceness is not None
        try:
            yield self
        finally:
            torch.set_num_threads(previous)
            if niceness is not None:
                os.setpriority(os.PRIO_PROCESS, 0, niceness)

    # --- preparing work -----------------------------------------------------------------------
    def prepare(self, module: nn.Module) -> nn.Module:
        return module.to(device=self.torch_device, dtype=self.dtype).eval()

    def example(self, in_shape: Sequence[int], seed: int = 0) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(self.batch_size, *in_shape, generator=generator)
        return x.to(device=self.torch_device, dtype=self.dtype)

    def runner(self, module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
        """A no-argument callable that runs `module(x)` once (a CUDA graph replay if enabled)."""
        if self.device == "cuda" and self.cuda_graphs:
            return _cuda_graph(module, x)
        return lambda: module(x)

    # --- timing -------------------------------------------------------------------------------
    def time_call(self, fn: Callable[[], object], plan: TimingPlan | None = None) -> Timing:
        plan = plan or self.plan
        with torch.inference_mode():
            if self.device == "cuda":
                return time_cuda(fn, plan)
            return time_cpu(fn, plan, self.fingerprint.clock)

    def time_module(self, module: nn.Module, in_shape: Sequence[int],
                    plan: TimingPlan | None = None) -> Timing:
        module = self.prepare(module)
        x = self.example(in_shape)
        with torch.inference_mode():
            fn = self.runner(module, x)
        return self.time_call(fn, plan)

    def time_block(self, spec: BlockSpec, plan: TimingPlan | None = None) -> Timing:
        from search_spaces.ops import build_block

        return self.time_module(build_block(spec), spec.in_shape, plan)


def _raise_priority() -> int | None:
    """Set this process to niceness -20 (fewer pre-emptions, so fewer cold caches mid-run);
    returns the niceness to restore, or None where not permitted or not supported."""
    if not hasattr(os, "setpriority"):
        return None
    previous = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -20)
    except OSError:
        return None
    return previous


def _cuda_graph(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """Capture one forward into a CUDA graph (after warm-up on a side stream); returns replay."""
    with torch.inference_mode():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                module(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            module(x)
    return graph.replay
