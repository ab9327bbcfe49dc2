"""CPU latency on this machine for the `mobile` space: table build time, interpolation across
resolution, validation on random networks, repeatability of the ground truth, prediction cost.

    python bench/latency_cpu.py [--space mobile] [-n 100] [--calibration 20] [--cache-dir DIR]

Steps (figures printed as they come):
1. build: measure every distinct block (fresh cache dir unless --cache-dir), then fit the
   correction; wall time of the whole build.
2. interpolation: for blocks measured at several input sizes, predict each interior size by
   linear interpolation in area from its neighbours two resolution steps apart, and compare
   with the measured entry (is measuring half the resolutions honest?).
3. validate: n random networks measured end to end interleaved with their blocks; accuracy of
   blocks + correction (fitted on --calibration other networks), of the stored table, and of
   a FLOPs-only model fitted on the same calibration networks.
4. repeatability: 10 of the networks measured again; share of pairs within +-10% of each
   other (what this machine's noise allows any predictor).
5. prediction cost per architecture (fresh architectures, no cache).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from estimators.latency import LatencyStore, Profiler, build_table, open_predictor  # noqa: E402
from estimators.latency.interleave import measure_paired  # noqa: E402
from estimators.latency.validate import validate, write_csv, write_scatter  # noqa: E402
from search_spaces import BlockSpec, get_space  # noqa: E402


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def interpolation_study(entries: dict[str, float], specs: dict[str, BlockSpec]) -> dict[str, float]:
    """Leave-one-out: each block family (same op, args, channels) by input side; interior
    sides predicted from the nearest measured sides on each side, linear in area."""
    families: dict[tuple, dict[int, float]] = defaultdict(dict)
    for sig, spec in specs.items():
        if sig in entries and len(spec.in_shape) == 3 and spec.in_shape[1] > 1:
            families[(spec.op, spec.args, spec.in_shape[0])][spec.in_shape[1]] = entries[sig]
    errors = []
    for sides in families.values():
        ordered = sorted(sides)
        for i in range(2, len(ordered) - 2, 2):  # predict every other size from sizes +-2 steps
            lo, mid, hi = ordered[i - 2], ordered[i], ordered[i + 2]
            t = (mid ** 2 - lo ** 2) / (hi ** 2 - lo ** 2)
            guess = sides[lo] + t * (sides[hi] - sides[lo])
            errors.append(abs(guess - sides[mid]) / sides[mid])
    e = np.array(errors)
    return {"interpolated": len(e), "median_error_pct": 100 * float(np.median(e)),
            "p90_error_pct": 100 * float(np.quantile(e, 0.9)),
            "within_5pct": float(np.mean(e <= 0.05)), "within_10pct": float(np.mean(e <= 0.10))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="mobile")
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--calibration", type=int, default=20)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder")
    parser.add_argument("--out", default=str(ROOT / "results" / "latency" / "bench-cpu"))
    parser.add_argument("--normal-priority", action="store_true",
                        help="do not try niceness -20 while measuring")
    args = parser.parse_args()
    cache = args.cache_dir or tempfile.mkdtemp(prefix="nas-latency-bench-")
    space = get_space(args.space)
    profiler = Profiler("cpu", high_priority=not args.normal_priority)
    store = LatencyStore(cache_dir=cache)
    print(f"{profiler.fingerprint.key}; cache {cache}; {load()}", flush=True)

    start = time.perf_counter()
    report = build_table(space, profiler, store)
    print(f"1. build: {report.distinct_blocks} distinct blocks, {report.measured} measured, "
          f"{report.entries} entries, {time.perf_counter() - start:.0f} s wall "
          f"(priority raised: {profiler.raised_priority}); correction {report.correction}; "
          f"{load()}", flush=True)

    from estimators.latency.blockset import distinct_blocks

    specs = distinct_blocks(space).blocks
    entries = {s: e.median_ms for s, e in store.entries(profiler.fingerprint.key, 1,
                                                        "float32").items()}
    interp = interpolation_study(entries, specs)
    print(f"2. interpolation across resolution (every other size from +-2 steps): {interp}",
          flush=True)

    table = open_predictor(space, "cpu", cache_dir=cache)
    start = time.perf_counter()
    result = validate(space, profiler, args.n, args.calibration, args.passes, 0, None, table)
    out = Path(args.out)
    write_csv(result.rows, out / "validation.csv")
    write_scatter(result.rows, out / "validation.png", f"{space.name}: {args.n} networks")
    for label, acc in (("blocks + correction (interleaved)", result.interleaved),
                       ("stored table + stored correction", result.table),
                       ("FLOPs-only linear", result.flops_baseline)):
        print(f"3. {label:34s} within 5% {100 * acc['within_5pct']:5.1f}%  within 10% "
              f"{100 * acc['within_10pct']:5.1f}%  MAPE {acc['mape']:5.2f}%  "
              f"tau {acc['kendall_tau']:.3f}", flush=True)
    print(f"   validation took {time.perf_counter() - start:.0f} s; correction "
          f"{result.correction}; wrote {out}; {load()}", flush=True)

    again = [r for r in result.rows if r["split"] == "test"][:10]
    agree = []
    with profiler.session():
        for row in again:
            arch = space.parse(row["key"])
            second = measure_paired(profiler, space, arch, args.passes).network_ms
            agree.append(abs(second - row["measured_ms"]) / row["measured_ms"])
    print(f"4. repeatability: {sum(a <= 0.10 for a in agree)}/{len(agree)} networks measured "
          f"twice agree within 10% (median gap {100 * statistics.median(agree):.1f}%); {load()}",
          flush=True)

    fresh = open_predictor(space, "cpu", cache_dir=cache)
    archs = [space.sample(s) for s in range(10_000, 11_000)]
    costs = []
    for arch in archs:
        t0 = time.perf_counter()
        fresh.latency_ms(arch)
        costs.append((time.perf_counter() - t0) * 1e3)
    print(f"5. prediction cost: median {statistics.median(costs):.3f} ms, p90 "
          f"{np.quantile(costs, 0.9):.3f} ms per architecture over {len(archs)} fresh ones",
          flush=True)


if __name__ == "__main__":
    main()
