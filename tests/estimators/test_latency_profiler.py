"""Timing protocol, clocks, fingerprints and profiler settings (no timed assertions: only
properties that hold on any machine, such as a sleep costing no CPU time)."""
from __future__ import annotations

import time

import pytest
import torch

from estimators.latency.errors import LatencyError
from estimators.latency.fingerprint import cpu_fingerprint, cuda_fingerprint, default_clock
from estimators.latency.profiler import Profiler
from estimators.latency.timing import TimingPlan, time_cpu

PLAN = TimingPlan(warmup_ms=1.0, rounds=3, round_ms=1.0, max_calls=20)


def test_thread_clock_ignores_waiting_and_wall_clock_counts_it():
    nap = lambda: time.sleep(0.002)  # noqa: E731
    wall = time_cpu(nap, PLAN, "wall")
    cpu = time_cpu(nap, PLAN, "thread")
    assert wall.min_ms >= 2.0  # a sleep lasts at least what was asked
    assert cpu.median_ms < wall.min_ms / 2  # and costs the thread (almost) no CPU time
    assert wall.rounds == 3 and wall.median_ms >= wall.min_ms


def test_rounds_are_sized_to_the_plan():
    x = torch.randn(64, 64)
    timing = time_cpu(lambda: x @ x, TimingPlan(warmup_ms=1.0, rounds=4, round_ms=2.0,
                                                max_calls=7), "thread")
    assert timing.rounds == 4 and 1 <= timing.calls <= 7
    assert 0 < timing.min_ms <= timing.median_ms


def test_fingerprint_names_model_threads_torch_and_clock():
    fp = cpu_fingerprint(1)
    assert fp.kind == "cpu" and fp.threads == 1 and fp.torch_version == torch.__version__
    assert fp.model in fp.key and torch.__version__ in fp.key and "threads=1" in fp.key
    assert cpu_fingerprint(2).key != fp.key
    assert cpu_fingerprint(1, "wall").key != cpu_fingerprint(1, "thread").key
    assert default_clock(4) == "wall"


def test_bad_settings_are_user_errors():
    for make in (lambda: cpu_fingerprint(2, "thread"), lambda: cpu_fingerprint(0),
                 lambda: cpu_fingerprint(1, "sundial"), lambda: Profiler("cpu", dtype="float16"),
                 lambda: Profiler("cpu", dtype="int3"), lambda: Profiler("cpu", batch_size=0),
                 lambda: Profiler("cpu", cuda_graphs=True), lambda: Profiler("tpu")):
        with pytest.raises(LatencyError) as info:
            make()
        assert "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(LatencyError, match="no CUDA device"):
        cuda_fingerprint()
    with pytest.raises(LatencyError, match="no CUDA device"):
        Profiler("cuda")


def test_session_sets_and_restores_threads():
    before = torch.get_num_threads()
    profiler = Profiler("cpu", threads=1, clock="wall")
    with profiler.session():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_batch_and_dtype_reach_the_module():
    profiler = Profiler("cpu", batch_size=3, dtype="bfloat16", plan=PLAN)
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append((x.shape[0], x.dtype))
            return x * 2

    profiler.time_module(Spy(), (4, 5, 5))
    assert seen and set(seen) == {(3, torch.bfloat16)}
