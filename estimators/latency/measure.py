"""Timing whole random networks of a space on this machine, for a few-shot device fit.

`nas latency measure` writes what `nas latency fit` reads (`arch`, `latency_ms`). The timing is
the profiler's (`Profiler.time_call` with the interleaving pass plan of `interleave.py`: warm-up,
rounds, median), batch size and input as `build` and `validate` use them. The networks are
timed in alternation: pass 1 times every network once, pass 2 again, and so on; a network's
latency is the median over passes, so drift of a shared machine hits every network alike.
"""
from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from estimators.files import atomic_path
from estimators.latency.errors import LatencyError
from estimators.latency.interleave import PASS_PLAN
from estimators.latency.profiler import Profiler
from estimators.latency.timing import TimingPlan
from estimators.latency.validate import distinct_samples
from estimators.progress import CountProgress
from search_spaces import Arch, SearchSpace

MAX_NETWORKS = 10_000


@dataclass
class Measured:
    """Whole-network latencies (ms, median over passes) in the order of `archs`."""

    archs: list[Arch]
    latency_ms: list[float]
    seconds: float  # wall time of the whole measurement (building the networks included)
    settings: dict[str, object]


def time_networks(space: SearchSpace, profiler: Profiler, archs: Sequence[Arch],
                  passes: int = 3, num_classes: int | None = None, stat: str = "median",
                  plan: TimingPlan = PASS_PLAN,
                  progress: CountProgress | None = None) -> list[float]:
    """Per-call latency (ms) of each network, timed in alternation over `passes` passes."""
    if passes < 1:
        raise LatencyError(f"--passes must be at least 1, got {passes}")
    runners = []
    for arch in archs:
        network = profiler.prepare(space.build(arch, num_classes))
        runners.append(profiler.runner(network, profiler.example(network.input_shape)))
    runs: list[list[float]] = [[] for _ in runners]
    total, done = passes * len(runners), 0
    with profiler.session():
        for _ in range(passes):
            for i, run in enumerate(runners):
                runs[i].append(profiler.time_call(run, plan).stat(stat))
                done += 1
                if progress:
                    progress(done, total)
    return [statistics.median(r) for r in runs]


def measure_random(space: SearchSpace, profiler: Profiler, n: int, seed: int = 0,
                   passes: int = 3, num_classes: int | None = None,
                   progress: CountProgress | None = None) -> Measured:
    """`n` distinct random networks of `space` (seeded), timed with `time_networks`."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NETWORKS:
        raise LatencyError(f"-n must be a whole number between 1 and {MAX_NETWORKS}, got {n!r}")
    start = time.perf_counter()
    archs = distinct_samples(space, n, seed)
    latencies = time_networks(space, profiler, archs, passes, num_classes, progress=progress)
    return Measured(archs, latencies, time.perf_counter() - start,
                    {"space": space.name, "fingerprint": profiler.fingerprint.key,
                     "batch_size": profiler.batch_size, "dtype": profiler.dtype_name,
                     "passes": passes, "seed": seed})


def write_measurements(measured: Measured, path: str | Path) -> Path:
    """Atomically write `arch,latency_ms` rows (the format `nas latency fit` reads)."""
    path = Path(path)
    if path.is_dir():
        raise LatencyError(f"--out {path} is a folder; give a CSV file name")
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["arch", "latency_ms"])
        writer.writerows((a.key, f"{ms:.6g}") for a, ms in zip(measured.archs,
                                                                measured.latency_ms))
    return path
