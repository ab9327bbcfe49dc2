"""Whole network and its blocks measured in alternation, so machine drift hits both alike.

The blocks are the network's own modules (same weights), each timed at its input shape. Each
pass times the network once, then every block once; the result is the median over passes.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from estimators.latency.profiler import Profiler
from estimators.latency.timing import TimingPlan
from search_spaces import Arch, SearchSpace

PASS_PLAN = TimingPlan(warmup_ms=5.0, rounds=3, round_ms=4.0)


@dataclass(frozen=True)
class Paired:
    """One network's measured latency and its blocks' latencies from the same passes."""

    arch: Arch
    network_ms: float
    block_ms: tuple[float, ...]
    signatures: tuple[str, ...]

    @property
    def block_sum_ms(self) -> float:
        return float(sum(self.block_ms))


def measure_paired(profiler: Profiler, space: SearchSpace, arch: Arch, passes: int = 3,
                   num_classes: int | None = None, stat: str = "median",
                   plan: TimingPlan = PASS_PLAN) -> Paired:
    specs = space.blocks(arch, num_classes)
    network = profiler.prepare(space.build(arch, num_classes))
    x = profiler.example(network.input_shape)
    blocks = [(profiler.runner(module, profiler.example(spec.in_shape, i + 1)))
              for i, (module, spec) in enumerate(zip(network, specs))]
    run_network = profiler.runner(network, x)
    network_runs: list[float] = []
    block_runs: list[list[float]] = [[] for _ in specs]
    for _ in range(passes):
        network_runs.append(profiler.time_call(run_network, plan).stat(stat))
        for i, run in enumerate(blocks):
            block_runs[i].append(profiler.time_call(run, plan).stat(stat))
    return Paired(arch, statistics.median(network_runs),
                  tuple(statistics.median(r) for r in block_runs),
                  tuple(s.signature for s in specs))
