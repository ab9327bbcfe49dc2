"""Regenerate the reference sets shipped with the engine (issue 18) from HELP's published data.

For each space, `--archs` architectures (default 300) are drawn without replacement with
`numpy.random.default_rng(SEED)` from the published table, kept in the table's row order, and
written with the latencies of HELP's meta-training devices only (the few-shot benchmark's test
devices stay out of the shipped set):

    python bench/make_latency_references.py [--data ../shared/data] [--archs 300]

writes `estimators/latency/references/{nb201,fbnet}.csv` (columns `arch`, `latency_ms_<device>`).
Source and licence: `estimators/latency/references/README.md`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "estimators" / "latency" / "references"
SEED = 18  # issue 18
HELP_REFERENCE = ["1080ti_1", "1080ti_32", "1080ti_256", "silver_4114", "silver_4210r",
                  "samsung_a50", "pixel3", "essential_ph_1", "samsung_s7"]
SOURCES = {  # space: (csv under the data folder, reference devices)
    "nb201": ("nb201/nb201.csv", HELP_REFERENCE),
    "fbnet": ("fbnet/fbnet_latency.csv", [d.replace("_256", "_64") for d in HELP_REFERENCE]),
}


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--archs", type=int, default=300)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for space, (rel, devices) in SOURCES.items():
        frame = pd.read_csv(Path(args.data) / rel)
        rows = np.sort(np.random.default_rng(SEED).choice(len(frame), args.archs, replace=False))
        cols = [f"latency_ms_{d}" for d in devices]
        out = frame.iloc[rows][["arch", *cols]]
        out.to_csv(OUT / f"{space}.csv", index=False, float_format="%.4f")
        print(f"{space}: {len(out)} archs x {len(cols)} devices -> {OUT / f'{space}.csv'}")


if __name__ == "__main__":
    main()
