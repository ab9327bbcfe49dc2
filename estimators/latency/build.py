"""Building a space's lookup table on this machine: measure what is missing, then calibrate.

Resumable: entries already in the store for this fingerprint/batch/dtype are skipped, and each
measurement is committed as soon as it is taken. Several processes may build at once (they
may measure a block twice; the last write wins, which is harmless).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from estimators.latency.blockset import distinct_blocks
from estimators.latency.correction import fit_correction
from estimators.latency.interleave import measure_paired
from estimators.latency.profiler import Profiler
from estimators.latency.store import Entry, LatencyStore
from estimators.progress import CountProgress
from search_spaces import Arch, SearchSpace


@dataclass
class BuildReport:
    space: str
    fingerprint: str
    batch_size: int
    dtype: str
    distinct_blocks: int
    measured: int
    entries: int
    seconds: float
    enumeration: str
    correction: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def calibration_archs(space: SearchSpace, count: int, seed: int = 0) -> list[Arch]:
    """The smallest and largest networks plus random ones: spread over the latency range."""
    archs = [space.min_arch(), space.max_arch()]
    rng = np.random.default_rng(seed)
    tries = 0
    while len(archs) < count and tries < 100 * count:
        arch = space.sample(rng)
        tries += 1
        if arch not in archs:
            archs.append(arch)
    return archs[:count]


def measure_missing(profiler: Profiler, store: LatencyStore, specs: list,
                    progress: CountProgress | None = None, chunk: int = 8) -> int:
    """Time every spec without an entry for this profiler; commit every `chunk` entries."""
    fp = profiler.fingerprint.key
    have = store.entries(fp, profiler.batch_size, profiler.dtype_name)
    todo = [s for s in specs if s.signature not in have]
    pending: list[Entry] = []
    with profiler.session():
        for done, spec in enumerate(todo, 1):
            timing = profiler.time_block(spec)
            pending.append(Entry(spec.signature, timing.median_ms, timing.min_ms, timing.rounds,
                                 timing.calls))
            if len(pending) >= chunk or done == len(todo):
                store.put(fp, profiler.batch_size, profiler.dtype_name, pending)
                pending = []
            if progress:
                progress(done, len(todo))
    return len(todo)


def calibrate(profiler: Profiler, store: LatencyStore, space: SearchSpace, count: int = 12,
              passes: int = 3, seed: int = 0, num_classes: int | None = None,
              stat: str = "median") -> dict[str, float]:
    """Measure `count` whole networks interleaved with their blocks, fit and store the
    correction for this space."""
    archs = calibration_archs(space, count, seed)
    with profiler.session():
        pairs = [measure_paired(profiler, space, a, passes, num_classes, stat) for a in archs]
    sums = [p.block_sum_ms for p in pairs]
    measured = [p.network_ms for p in pairs]
    correction = fit_correction(sums, measured)
    errors = [abs(correction.apply(s) - m) / m for s, m in zip(sums, measured)]
    info = {"networks": len(pairs), "passes": passes, "stat": stat,
            "max_rel_error": float(max(errors)),
            "mean_ratio": float(np.mean(np.divide(measured, sums))),
            "archs": [a.key for a in archs], "fitted_at": time.time()}
    store.put_correction(profiler.fingerprint.key, space.name, profiler.batch_size,
                         profiler.dtype_name, correction, info)
    return {"overhead_ms": correction.overhead_ms, "scale": correction.scale,
            "networks": float(len(pairs)), "max_rel_error": info["max_rel_error"]}


def build_table(space: SearchSpace, profiler: Profiler, store: LatencyStore,
                num_classes: int | None = None, calibration: int = 12, seed: int = 0,
                progress: CountProgress | None = None, passes: int = 3) -> BuildReport:
    """Measure every missing distinct block of `space`, then (re)fit the correction."""
    start = time.perf_counter()
    store.put_device(profiler.fingerprint.key, profiler.fingerprint.describe())
    found = distinct_blocks(space, num_classes, seed)
    measured = measure_missing(profiler, store, list(found.blocks.values()), progress)
    correction = calibrate(profiler, store, space, calibration, passes, seed,
                           num_classes) if calibration > 0 else {}
    entries = store.count(profiler.fingerprint.key, profiler.batch_size, profiler.dtype_name)
    return BuildReport(space.name, profiler.fingerprint.key, profiler.batch_size,
                       profiler.dtype_name, len(found.blocks), measured, entries,
                       time.perf_counter() - start, found.method, correction)
