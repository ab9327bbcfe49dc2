"""Timing a callable robustly: warm-up, rounds of calls, median and min over the rounds.

CPU: `time.perf_counter_ns` (wall) or `time.thread_time_ns` (CPU time of this thread, immune to
pre-emption on a shared machine; valid when one thread does the work). CUDA: events recorded on
the current stream after a synchronisation, so queued work is never billed to the next call.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

Thunk = Callable[[], object]


@dataclass(frozen=True)
class Timing:
    """Per-call latency in ms: median and min over `rounds` rounds of `calls` calls each."""

    median_ms: float
    min_ms: float
    rounds: int
    calls: int

    def stat(self, name: str) -> float:
        return self.min_ms if name == "min" else self.median_ms


@dataclass(frozen=True)
class TimingPlan:
    """How much to run: warm-up time, number of rounds, target duration of one round."""

    warmup_ms: float = 30.0
    rounds: int = 7
    round_ms: float = 5.0
    max_calls: int = 1000


class CpuClock:
    """Reads ns from the chosen clock."""

    def __init__(self, clock: str = "wall"):
        self.read = time.thread_time_ns if clock == "thread" else time.perf_counter_ns


def _round_ms(fn: Thunk, calls: int, clock: CpuClock) -> float:
    start = clock.read()
    for _ in range(calls):
        fn()
    return (clock.read() - start) / 1e6 / calls


def time_cpu(fn: Thunk, plan: TimingPlan = TimingPlan(), clock: str = "wall") -> Timing:
    """Warm up for `plan.warmup_ms` (at least 2 calls), size rounds to `plan.round_ms`, then
    time `plan.rounds` rounds."""
    reader = CpuClock(clock)
    warm = [_round_ms(fn, 1, reader) for _ in range(2)]
    spent = sum(warm)
    while spent < plan.warmup_ms and len(warm) < plan.max_calls:
        warm.append(_round_ms(fn, 1, reader))
        spent += warm[-1]
    per_call = max(min(warm[-3:]), 1e-4)
    calls = max(1, min(plan.max_calls, math.ceil(plan.round_ms / per_call)))
    rounds = [_round_ms(fn, calls, reader) for _ in range(plan.rounds)]
    return Timing(statistics.median(rounds), min(rounds), plan.rounds, calls)


def time_cuda(fn: Thunk, plan: TimingPlan = TimingPlan()) -> Timing:
    """The same protocol on the current CUDA stream, timed with CUDA events."""
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def one_round(calls: int) -> float:
        torch.cuda.synchronize()
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / calls

    warm = [one_round(1) for _ in range(2)]
    spent = sum(warm)
    while spent < plan.warmup_ms and len(warm) < plan.max_calls:
        warm.append(one_round(1))
        spent += warm[-1]
    calls = max(1, min(plan.max_calls, math.ceil(plan.round_ms / max(min(warm[-3:]), 1e-4))))
    rounds = [one_round(calls) for _ in range(plan.rounds)]
    return Timing(statistics.median(rounds), min(rounds), plan.rounds, calls)
