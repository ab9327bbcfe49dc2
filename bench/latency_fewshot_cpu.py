"""This CPU few-shot from ten timed networks, against its block table, on 50 fresh networks.

    python bench/latency_fewshot_cpu.py [--space nb201] [--repeats 3] [-n 50] [--train 10]

Per repeat (seeds differ per repeat):
1. few-shot: `measure_random` times `--train` random networks (what `nas latency measure`
   does), `fit_from_csv(..., method="fewshot")` fits this CPU from them (what `nas latency fit`
   does); seconds of timing and of fitting.
2. block table: `validate` measures `--calibration` + `-n` fresh networks end to end, each
   interleaved with its own blocks (what a complete table of this CPU gives, without the drift
   between building a table and using it); the correction is fitted on the calibration
   networks. The few-shot device predicts the same `-n` test networks.
3. both scored on the test networks: share within +-5/10%, MAPE, Kendall tau, Spearman.
Cost of the full table: the space's distinct blocks (`distinct_blocks`) times the median time
`build` spends per block (the default plan, timed here on `--cost-sample` random blocks), plus
the 12 calibration networks `build` measures.
Writes results/bench/latency-fewshot-cpu/report.json (medians over repeats and every repeat).
`--diagnose` afterwards adds: the few-shot fit from 10 of each repeat's 50 test networks
(their own interleaved measurements; tested on the other 40), and the first repeat's test
networks timed again the way `measure` times them (level against validate's timing).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from estimators.latency import Profiler, open_predictor  # noqa: E402
from estimators.latency.blockset import distinct_blocks  # noqa: E402
from estimators.latency.fit_cli import fit_from_csv  # noqa: E402
from estimators.latency.interleave import measure_paired  # noqa: E402
from estimators.latency.measure import (  # noqa: E402
    measure_random,
    time_networks,
    write_measurements,
)
from estimators.latency.metrics import accuracy  # noqa: E402
from estimators.latency.validate import validate, write_csv  # noqa: E402
from search_spaces import get_space  # noqa: E402

OUT = ROOT / "results" / "bench" / "latency-fewshot-cpu"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def score(predicted: list[float], measured: list[float]) -> dict[str, float]:
    from scipy.stats import spearmanr

    out = accuracy(predicted, measured)
    out["spearman"] = float(spearmanr(predicted, measured)[0])
    return out


def one_repeat(space, profiler: Profiler, args, seed: int, cache: str) -> dict:
    start_load = load()
    measured = measure_random(space, profiler, args.train, seed=seed, passes=args.passes)
    csv_path = OUT / f"train-seed{seed}.csv"
    write_measurements(measured, csv_path)
    t0 = time.perf_counter()
    fit = fit_from_csv(space, str(csv_path), "latency_ms", args.train, name=f"bench_cpu_{seed}",
                       cache_dir=cache, method="fewshot")
    fit_s = time.perf_counter() - t0
    fewshot = open_predictor(space, f"bench_cpu_{seed}", cache_dir=cache)

    t0 = time.perf_counter()
    val = validate(space, profiler, args.n, args.calibration, args.passes, seed + 1000)
    validate_s = time.perf_counter() - t0
    tests = [r for r in val.rows if r["split"] == "test"]
    train_keys = {a.key for a in measured.archs}
    for row in val.rows:
        row["fewshot_ms"] = float(fewshot.latency_ms(space.parse(row["key"])))
    write_csv(val.rows, OUT / f"validation-seed{seed}.csv")
    m = [r["measured_ms"] for r in tests]
    result = {
        "seed": seed, "load_before": start_load, "load_after": load(),
        "fewshot": {**score([r["fewshot_ms"] for r in tests], m),
                    "timing_seconds": measured.seconds, "fit_seconds": fit_s,
                    "references": fit["references"], "strength": fit["strength"]},
        "block_table": {**score([r["predicted_ms"] for r in tests], m),
                        "correction": val.correction},
        "flops_linear": score([r["flops_model_ms"] for r in tests], m),
        "validate_seconds": validate_s,
        "test_overlap_with_train": sum(r["key"] in train_keys for r in tests),
        "measured_ms": {"min": min(m), "median": statistics.median(m), "max": max(m)},
        "train_measured_ms": measured.latency_ms,
    }
    print(json.dumps({k: result[k] for k in ("seed", "fewshot", "block_table",
                                             "validate_seconds")}, indent=1), flush=True)
    return result


def table_cost(space, profiler: Profiler, sample: int, passes: int) -> dict:
    """Estimated seconds to build the space's full table here."""
    found = distinct_blocks(space)
    specs = list(found.blocks.values())
    rng = np.random.default_rng(0)
    chosen = [specs[i] for i in rng.choice(len(specs), size=min(sample, len(specs)),
                                            replace=False)]
    per_block = []
    with profiler.session():
        for spec in chosen:
            t0 = time.perf_counter()
            profiler.time_block(spec)
            per_block.append(time.perf_counter() - t0)
        archs = [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(2)]
        calib = []
        for arch in archs:
            t0 = time.perf_counter()
            measure_paired(profiler, space, arch, passes)
            calib.append(time.perf_counter() - t0)
    blocks_s = statistics.median(per_block) * len(specs)
    calibration_s = statistics.median(calib) * 12
    return {"distinct_blocks": len(specs), "enumeration": found.method,
            "sampled_blocks": len(chosen), "median_seconds_per_block": statistics.median(per_block),
            "median_seconds_per_calibration_network": statistics.median(calib),
            "estimated_build_seconds": blocks_s + calibration_s}


def same_session(space, args) -> dict:
    """Diagnostics from the written validation CSVs (no timing): the few-shot fit from 10 of
    the 50 test networks' own interleaved measurements, tested on the other 40 (same session,
    same timing protocol, so what is left is the model), beside the block table on those 40."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for path in sorted(OUT.glob("validation-seed*.csv")):
            import pandas as pd

            frame = pd.read_csv(path)
            test = frame[frame["split"] == "test"].reset_index(drop=True)
            sub = OUT / f"same-session-{path.stem}.csv"
            test[["key", "measured_ms"]].rename(columns={"key": "arch"}).to_csv(sub, index=False)
            fit = fit_from_csv(space, str(sub), "measured_ms", args.train, name="same_session",
                               cache_dir=cache, method="fewshot", seed=0)
            sub.unlink()
            order = np.random.default_rng(0).permutation(len(test))
            held = test.iloc[order[args.train:]]
            out[path.stem] = {
                "fewshot_same_session": {k: fit[k] for k in ("within_5pct", "within_10pct",
                                                            "mape", "kendall_tau", "spearman")},
                "block_table_same_rows": score(list(held["predicted_ms"]),
                                               list(held["measured_ms"])),
                "fewshot_from_separate_10_same_rows": score(list(held["fewshot_ms"]),
                                                            list(held["measured_ms"])),
                "separate_10_level": float(np.median(test["fewshot_ms"] / test["measured_ms"]))}
    return out


def recheck_level(space, profiler: Profiler, args) -> dict:
    """The test networks of the first repeat timed again the way `measure` times them (whole
    networks in alternation), beside validate's interleaved timing of the same networks."""
    import pandas as pd

    path = sorted(OUT.glob("validation-seed*.csv"))[0]
    test = pd.read_csv(path).query("split == 'test'")
    archs = [space.parse(k) for k in test["key"]]
    ratios = []
    for _ in range(2):
        again = time_networks(space, profiler, archs, args.passes)
        ratios.append(float(np.median(np.divide(again, test["measured_ms"].to_numpy()))))
    return {"file": path.name, "median_ratio_measure_over_validate": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="nb201")
    parser.add_argument("-n", type=int, default=50)
    parser.add_argument("--train", type=int, default=10)
    parser.add_argument("--calibration", type=int, default=20)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cost-sample", type=int, default=100)
    parser.add_argument("--diagnose", action="store_true",
                        help="only add the same-session and level diagnostics to report.json "
                             "(from the written CSVs, plus one re-timing of 50 networks)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = get_space(args.space)
    profiler = Profiler("cpu", threads=1)
    if args.diagnose:
        report = json.loads((OUT / "report.json").read_text())
        report["same_session"] = same_session(space, args)
        report["level_recheck"] = recheck_level(space, profiler, args)
        (OUT / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps({k: report[k] for k in ("same_session", "level_recheck")}, indent=1))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    runs = []
    with tempfile.TemporaryDirectory() as cache:
        for r in range(args.repeats):
            runs.append(one_repeat(space, profiler, args, 100 * (r + 1), cache))
    cost = table_cost(space, profiler, args.cost_sample, args.passes)
    print(json.dumps(cost, indent=1), flush=True)

    def med(which: str, key: str) -> float:
        return float(statistics.median(run[which][key] for run in runs))

    summary = {which: {k: med(which, k) for k in ("within_5pct", "within_10pct", "mape",
                                                   "kendall_tau", "spearman")}
               for which in ("fewshot", "block_table", "flops_linear")}
    summary["fewshot"]["timing_seconds"] = med("fewshot", "timing_seconds")
    summary["fewshot"]["fit_seconds"] = med("fewshot", "fit_seconds")
    report = {"space": space.name, "fingerprint": profiler.fingerprint.key,
              "test_networks": args.n, "train_networks": args.train,
              "calibration_networks": args.calibration, "passes": args.passes,
              "repeats": args.repeats, "median_over_repeats": summary,
              "full_table_cost": cost, "runs": runs,
              "note": "2-core VM shared with a long training benchmark on the other core; "
                      "one thread, thread-CPU clock"}
    (OUT / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
