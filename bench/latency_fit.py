"""Learning devices from published whole-network latencies (`nas latency fit` at scale).

For every latency column of the published data sets (OFA MobileNetV3 on 12 GPU settings,
FBNet and NAS-Bench-201 on 27 devices each): train on `--train` random architectures, test on
all the others, and print within +-5% / +-10%, MAPE and Kendall tau beside a FLOPs-only linear
model fitted on the same rows. `--ceiling` also fits the chosen model (same features and
settings) on all but 1,000 rows and tests on those 1,000: what the column's noise allows.

    python bench/latency_fit.py [--data ../shared/data] [--train 100] [--sets ofa,fbnet,nb201]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from estimators.latency.fit import fit_device  # noqa: E402
from search_spaces import get_space  # noqa: E402

SETS = {  # name: (space, csv path under data, classes of the measured networks)
    "ofa": ("mobile", "ofa/ofa_mbv3_latency.csv", None),
    "fbnet": ("fbnet", "fbnet/fbnet_latency.csv", 100),
    "nb201": ("nb201", "nb201/nb201.csv", None),
}


def columns_of(path: Path) -> list[str]:
    import pandas as pd

    return [c for c in pd.read_csv(path, nrows=1).columns if c.startswith("latency_ms_")]


def run_set(name: str, data: Path, train: int, seed: int, ceiling: bool,
            only: list[str] | None, sink: Path | None = None,
            feature_sets: list[str] | None = None) -> list[dict[str, object]]:
    import pandas as pd

    space_name, rel, classes = SETS[name]
    space = get_space(space_name)
    frame = pd.read_csv(data / rel)
    parsed = [space.parse(a) for a in frame["arch"]]  # once per set, reused by every column
    rows = []
    for column in columns_of(data / rel):
        if only and not any(o in column for o in only):
            continue
        start = time.perf_counter()
        values = frame[column].to_numpy(dtype=float)
        keep = np.isfinite(values) & (values > 0)
        archs, y = [a for a, k in zip(parsed, keep) if k], values[keep]
        report, _ = fit_device(space, archs, y, train, seed, num_classes=classes,
                               feature_sets=feature_sets)
        row: dict[str, object] = {
            "set": name, "column": column, "train": report.train_rows, "test": report.test_rows,
            "dropped": int((~keep).sum()),
            "model": f"{report.model.feature_set}/a={report.model.alpha:g}"
                     f"{'/robust' if report.model.robust else ''}",
            **{k: report.test[k] for k in ("within_5pct", "within_10pct", "mape", "kendall_tau")},
            "flops_within_10pct": report.flops_baseline["within_10pct"],
            "flops_kendall_tau": report.flops_baseline["kendall_tau"]}
        if ceiling and len(y) > 2000:
            big, _ = fit_device(space, archs, y, len(y) - 1000, seed, num_classes=classes,
                                feature_sets=[report.model.feature_set],
                                fixed=(report.model.alpha, report.model.robust))
            row["ceiling_within_10pct"] = big.test["within_10pct"]
            row["ceiling_kendall_tau"] = big.test["kendall_tau"]
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(_line(row), flush=True)
        if sink is not None:  # rows so far, so a long run can be read while it goes
            sink.write_text(json.dumps(rows, indent=1))
    return rows


def _line(r: dict[str, object]) -> str:
    text = (f"{r['set']:6s} {str(r['column'])[11:]:22s} w5 {100 * r['within_5pct']:5.1f}%  "
            f"w10 {100 * r['within_10pct']:5.1f}%  mape {r['mape']:5.2f}%  "
            f"tau {r['kendall_tau']:.3f}"
            f"  | flops w10 {100 * r['flops_within_10pct']:5.1f}% tau {r['flops_kendall_tau']:.3f}")
    if "ceiling_within_10pct" in r:
        text += (f"  | ceiling w10 {100 * r['ceiling_within_10pct']:5.1f}% "
                 f"tau {r['ceiling_kendall_tau']:.3f}")
    return text + f"  [{r['model']}, {r['seconds']}s]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--train", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sets", default="ofa,fbnet,nb201")
    parser.add_argument("--columns", default=None, help="substrings of columns to keep")
    parser.add_argument("--ceiling", action="store_true")
    parser.add_argument("--feature-sets", default=None,
                        help="candidate feature sets, comma-separated (default: all)")
    parser.add_argument("--json", default=None, help="also write all rows to this JSON file")
    args = parser.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        sys.exit(f"error: data folder {data} not found (give --data)")
    only = args.columns.split(",") if args.columns else None
    rows = []
    for name in args.sets.split(","):
        sink = Path(f"{args.json}.{name}.partial") if args.json else None
        rows += run_set(name, data, args.train, args.seed, args.ceiling, only, sink,
                        args.feature_sets.split(",") if args.feature_sets else None)
    for name in args.sets.split(","):
        mine = [r for r in rows if r["set"] == name]
        if mine:
            print(f"{name}: {len(mine)} columns, median within 10% "
                  f"{100 * np.median([r['within_10pct'] for r in mine]):.1f}% (FLOPs-only "
                  f"{100 * np.median([r['flops_within_10pct'] for r in mine]):.1f}%), median tau "
                  f"{np.median([r['kendall_tau'] for r in mine]):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
