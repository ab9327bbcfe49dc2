"""Few-shot latency of a new device (issue 18) on HELP's protocol, beside a plain ridge.

Reference (training) devices are only HELP's meta-training devices; for each test device,
`--rows` architectures are drawn at random (seeds 0..`--draws`-1, the same draws for every
method), the new device is fitted on those rows only (the reference devices' latencies of all
architectures are known), and every other architecture is predicted: Spearman and the share
within +-10% of the measured latency, averaged over the draws. Methods: the engine's
`estimators.latency.fewshot.fit_fewshot` (reference log latencies, their feature-denoised
copy and the per-layer op one-hot, leave-one-out prior strength) and the issue's baseline, a
plain ridge (alpha 1) of the new device's log latency on the reference log latencies.
`--ofa` adds OFA MobileNetV3 leave-one-device-out over its 12 GPU columns (Kendall tau).
Writes results/bench/latency-fewshot/report.json. `--ceiling` instead measures what the data
allow at all (ceiling.json): per test device, a gradient-boosted tree ensemble on the reference
log latencies and the op one-hot, fitted on half of all architectures (three random halves),
scored on the other half; and how many distinct latencies the device's column holds.

    python bench/latency_fewshot.py [--data ../shared/data] [--rows 5,10,20,50] [--draws 20]
                                    [--sets nb201,fbnet] [--ofa] [--ceiling]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from estimators.latency.fewshot import fit_fewshot, plain_ridge, reference_blocks  # noqa: E402

OUT = ROOT / "results" / "bench" / "latency-fewshot"
HELP_REFERENCE = ["1080ti_1", "1080ti_32", "1080ti_256", "silver_4114", "silver_4210r",
                  "samsung_a50", "pixel3", "essential_ph_1", "samsung_s7"]
NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
FBNET_OPS = ["k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6",
             "skip"]
SETS = {  # name: (csv under data, reference devices, test devices)
    "nb201": ("nb201/nb201.csv", HELP_REFERENCE,
              ["titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss"]),
    "fbnet": ("fbnet/fbnet_latency.csv", [d.replace("_256", "_64") for d in HELP_REFERENCE],
              ["titan_rtx_64", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss"]),
}
# HELP's published few-shot Spearman (10 rows), for the tables.
HELP_PAPER = {"nb201": {"titan_rtx_256": 0.987, "gold_6226": 0.989, "pixel2": 0.802,
                        "raspi4": 0.890, "eyeriss": 0.940, "fpga": 0.985},
              "fbnet": {"raspi4": 0.887, "eyeriss": 0.943, "fpga": 0.892}}


def one_hot(genes: np.ndarray, options: int) -> np.ndarray:
    """(archs, layers) option indices -> (archs, layers * options) one-hot."""
    n, layers = genes.shape
    out = np.zeros((n, layers * options))
    out[np.arange(n)[:, None], np.arange(layers) * options + genes] = 1.0
    return out


def nb201_features(archs: list[str]) -> np.ndarray:
    """One-hot of the 6 edge ops from the official cell string `|op~0|+|op~0|op~1|+...|`."""
    genes = [[NB201_OPS.index(tok.split("~")[0]) for tok in a.replace("+", "").split("|") if tok]
             for a in archs]
    return one_hot(np.array(genes), len(NB201_OPS))


def fbnet_features(archs: list[str]) -> np.ndarray:
    """One-hot of the 22 layer ops (`k3_e1-skip-...`)."""
    return one_hot(np.array([[FBNET_OPS.index(op) for op in a.split("-")] for a in archs]),
                   len(FBNET_OPS))


def ofa_features(frame) -> np.ndarray:
    """Per-slot kernel and expand one-hot (active slots only), stage depths, resolution."""
    ks = np.array([[int(v) for v in s.split()] for s in frame["ks"]])
    ex = np.array([[int(v) for v in s.split()] for s in frame["e"]])
    depth = np.array([[int(v) for v in s.split()] for s in frame["d"]])
    active = (np.arange(4)[None, None, :] < depth[:, :, None]).reshape(len(frame), 20)
    kcol = one_hot(np.searchsorted([3, 5, 7], ks), 3) * np.repeat(active, 3, axis=1)
    ecol = one_hot(np.searchsorted([3, 4, 6], ex), 3) * np.repeat(active, 3, axis=1)
    dcol = one_hot(depth - 2, 3)
    res = frame["r"].to_numpy(dtype=float)
    rcol = np.column_stack([res / 224.0, (res / 224.0) ** 2])
    return np.column_stack([kcol, ecol, dcol, rcol])


def draws(n: int, rows: int, count: int) -> list[np.ndarray]:
    return [np.random.default_rng(seed).choice(n, rows, replace=False) for seed in range(count)]


def scores(pred: np.ndarray, y: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    rest = np.ones(len(y), bool)
    rest[rows] = False
    p, t = pred[rest], y[rest]
    return {"spearman": float(spearmanr(p, t)[0]),
            "within_10pct": float(np.mean(np.abs(p / t - 1.0) <= 0.10)),
            "kendall_tau": float(kendalltau(p, t)[0])}


def evaluate(reference: np.ndarray, features: np.ndarray | None, y: np.ndarray,
             rows: int, count: int, kendall: bool = False) -> dict[str, dict[str, float]]:
    """Mean figures over the draws, per method, plus fit seconds of the engine's method."""
    blocks = reference_blocks(reference, features)
    out: dict[str, list[dict[str, float]]] = {"fewshot": [], "ridge": []}
    seconds, chosen = [], []
    for idx in draws(len(y), rows, count):
        start = time.perf_counter()
        fit = fit_fewshot(reference, idx, y[idx], features, blocks=blocks)
        seconds.append(time.perf_counter() - start)
        chosen.append("+".join(fit.blocks))
        base = plain_ridge(reference, idx, y[idx])
        for name, pred in (("fewshot", fit.predictions), ("ridge", base)):
            s = scores(pred, y, idx)
            if not kendall:
                s.pop("kendall_tau")
            out[name].append(s)
    result: dict[str, dict[str, float]] = {
        name: {k: float(np.mean([s[k] for s in rows_])) for k in rows_[0]}
        for name, rows_ in out.items()}
    result["fewshot"]["fit_seconds"] = float(np.mean(seconds))
    result["fewshot"]["raw_block_share"] = float(np.mean([c.startswith("Z") for c in chosen]))
    return result


def load_set(name: str, data: Path):
    """The set's table and its per-architecture op one-hot."""
    import pandas as pd

    frame = pd.read_csv(data / SETS[name][0])
    archs = list(frame["arch"])
    return frame, nb201_features(archs) if name == "nb201" else fbnet_features(archs)


def run_set(name: str, data: Path, row_counts: list[int], count: int) -> dict:
    _, refs, tests = SETS[name]
    frame, features = load_set(name, data)
    reference = frame[[f"latency_ms_{d}" for d in refs]].to_numpy(dtype=float)
    start = time.perf_counter()
    reference_blocks(reference, features)
    prep = time.perf_counter() - start
    out: dict = {"reference": refs, "prepare_seconds": prep, "rows": {}}
    for rows in row_counts:
        per = {dev: evaluate(reference, features, frame[f"latency_ms_{dev}"].to_numpy(float),
                             rows, count) for dev in tests}
        out["rows"][str(rows)] = per
        print_table(name, rows, per)
    return out


def run_ofa(data: Path, rows: int, count: int) -> dict:
    """Leave-one-device-out over OFA's 12 GPU columns: the other 11 are the references."""
    import pandas as pd

    frame = pd.read_csv(data / "ofa" / "ofa_mbv3_latency.csv")
    cols = [c for c in frame.columns if c.startswith("latency_ms_")]
    features = ofa_features(frame)
    per = {}
    for col in cols:
        reference = frame[[c for c in cols if c != col]].to_numpy(dtype=float)
        per[col[len("latency_ms_"):]] = evaluate(reference, features,
                                                  frame[col].to_numpy(float), rows, count,
                                                  kendall=True)
    print(f"\nOFA MobileNetV3, leave-one-device-out, {rows} rows, {count} draws "
          "(Kendall tau / Spearman / within +-10%)")
    print(f"{'column':16s} {'fewshot':>22s} {'ridge':>22s}")
    for col, r in per.items():
        f, b = r["fewshot"], r["ridge"]
        print(f"{col:16s} {f['kendall_tau']:6.3f} {f['spearman']:6.3f} {f['within_10pct']:7.1%}"
              f" {b['kendall_tau']:6.3f} {b['spearman']:6.3f} {b['within_10pct']:7.1%}")
    mean = {m: np.mean([r[m]["kendall_tau"] for r in per.values()]) for m in ("fewshot", "ridge")}
    print(f"{'mean tau':16s} {mean['fewshot']:6.3f} {'':>15s} {mean['ridge']:6.3f}")
    return {"rows": rows, "columns": per}


def ceiling(name: str, data: Path, splits: int = 3) -> dict:
    """Spearman and within +-10% of a nonlinear model given half of all rows of the device."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    _, refs, tests = SETS[name]
    frame, features = load_set(name, data)
    x = np.column_stack([np.log(frame[[f"latency_ms_{d}" for d in refs]].to_numpy(float)),
                         features])
    out = {}
    for dev in tests:
        y = frame[f"latency_ms_{dev}"].to_numpy(float)
        per = []
        for seed in range(splits):
            order = np.random.default_rng(seed).permutation(len(y))
            train, test = order[: len(y) // 2], order[len(y) // 2:]
            model = HistGradientBoostingRegressor(max_iter=300, random_state=seed)
            pred = np.exp(model.fit(x[train], np.log(y[train])).predict(x[test]))
            per.append((spearmanr(pred, y[test])[0], np.mean(np.abs(pred / y[test] - 1) <= 0.1)))
        out[dev] = {"distinct_latencies": int(len(np.unique(y))), "train_rows": len(y) // 2,
                    "spearman": float(np.mean([p[0] for p in per])),
                    "within_10pct": float(np.mean([p[1] for p in per]))}
        print(f"{name} {dev:15s} {out[dev]['distinct_latencies']:6d} distinct  Spearman "
              f"{out[dev]['spearman']:.3f}  within +-10% {out[dev]['within_10pct']:.1%}")
    return out


def print_table(name: str, rows: int, per: dict) -> None:
    print(f"\n{name}, {rows} rows (Spearman / within +-10%, mean of draws)")
    print(f"{'device':15s} {'fewshot':>16s} {'ridge':>16s} {'HELP':>6s} {'fit s':>6s}")
    for dev, r in per.items():
        f, b = r["fewshot"], r["ridge"]
        paper = HELP_PAPER.get(name, {}).get(dev.replace("_64", "_256"))
        print(f"{dev:15s} {f['spearman']:7.3f} {f['within_10pct']:7.1%} "
              f"{b['spearman']:7.3f} {b['within_10pct']:7.1%} "
              f"{paper if paper else '':>6} {f['fit_seconds']:6.3f}")
    mean = {m: (np.mean([r[m]["spearman"] for r in per.values()]),
                np.min([r[m]["spearman"] for r in per.values()]),
                np.mean([r[m]["within_10pct"] for r in per.values()])) for m in ("fewshot", "ridge")}
    for label, i in (("mean", 0), ("min", 1)):
        print(f"{label:15s} {mean['fewshot'][i]:7.3f} {'':7s} {mean['ridge'][i]:7.3f}")
    print(f"{'mean w10':15s} {'':7s} {mean['fewshot'][2]:7.1%} {'':7s} {mean['ridge'][2]:7.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--rows", default="5,10,20,50")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--sets", default="nb201,fbnet")
    parser.add_argument("--ofa", action="store_true", help="also OFA leave-one-device-out")
    parser.add_argument("--ceiling", action="store_true",
                        help="only the half-of-all-rows nonlinear ceiling (ceiling.json)")
    args = parser.parse_args()
    data = Path(args.data)
    if args.ceiling:
        result = {name: ceiling(name, data) for name in args.sets.split(",")}
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "ceiling.json").write_text(json.dumps(result, indent=1))
        return
    row_counts = [int(r) for r in args.rows.split(",")]
    report: dict = {"draws": args.draws, "seeds": list(range(args.draws)), "sets": {}}
    for name in args.sets.split(","):
        report["sets"][name] = run_set(name, data, row_counts, args.draws)
    if args.ofa:
        report["ofa"] = run_ofa(data, 10, args.draws)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {OUT / 'report.json'}")


if __name__ == "__main__":
    main()
