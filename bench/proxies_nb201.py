"""Zero-cost proxies on NAS-Bench-201: our scores against NASLib's published ones and against
the benchmark's trained accuracies.

Two parts:
1. The cells of `nb201/naslib_zc_nb201.json` (491 CIFAR-10 cells): Spearman of each of our
   proxies with NASLib's score of the same name, and of each with NASLib's 200-epoch
   `val_accuracy` and with `acc12_cifar10_val` of `nb201/nb201.csv`.
2. All 15,625 cells, or a seeded random subset of `--subset` of them: Spearman of each proxy
   with `acc12_cifar10_val`. With `--out`, scores are saved every 500 cells and a new run
   with the same `--out` scores only the cells missing there.

Every network is initialised with the same seed and scored on the same batch. We have no
CIFAR-10 here: `--inputs fmnist` (default) uses Fashion-MNIST training images resized to 32x32
and repeated over 3 channels, with their labels; `--inputs random` uses standard-normal images
and uniform labels. Run from the repository root:

    python bench/proxies_nb201.py [--data ../shared/data] [--subset 1000] [--workers 2]
        [--inputs fmnist|random] [--parts naslib,nb201] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau, spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from estimators.files import atomic_path  # noqa: E402
from estimators.proxies import PROXY_NAMES, score_proxies  # noqa: E402
from search_spaces import get_space  # noqa: E402

# NASLib's op index order in its cell tuples, and where each tuple slot sits in the official
# string (`|a0~0|+|a1~0|a3~1|+|a2~0|a4~1|a5~2|`, see the data README).
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
NASLIB_SLOTS = (0, 1, 3, 2, 4, 5)
PUBLISHED = {"synflow": "synflow", "jacov": "jacov", "grad_norm": "grad_norm", "snip": "snip",
             "params": "params"}

_BATCH: tuple[torch.Tensor, torch.Tensor] | None = None
_SEED = 0


def naslib_to_official(key: str) -> str:
    ops = [NASLIB_OPS[int(t)] for t in key.strip("()").split(",")]
    a = [ops[i] for i in range(6)]
    return f"|{a[0]}~0|+|{a[1]}~0|{a[3]}~1|+|{a[2]}~0|{a[4]}~1|{a[5]}~2|"


def make_batch(kind: str, size: int, seed: int, data_root: Path) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
    if kind == "random":
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(size, 3, 32, 32, generator=gen), torch.randint(0, 10, (size,),
                                                                          generator=gen)
    from estimators.data import load_data

    data = load_data("fashion-mnist", data_root / "fashion-mnist", seed=seed, resolution=32)
    x, y = data.sample_batch(size, seed)
    return x.repeat(1, 3, 1, 1), y


def _init_worker(batch: tuple[torch.Tensor, torch.Tensor], seed: int) -> None:
    global _BATCH, _SEED
    torch.set_num_threads(1)  # one core per worker process
    _BATCH, _SEED = batch, seed


def score_cell(official: str) -> tuple[str, dict[str, float], float]:
    assert _BATCH is not None
    space = get_space("nb201")
    arch = space.parse(official)
    start = time.perf_counter()
    torch.manual_seed(_SEED)
    model = space.build(arch, num_classes=10, in_channels=3)
    scores = score_proxies(model, *_BATCH)
    return official, scores, time.perf_counter() - start


def score_all(cells: list[str], batch: tuple[torch.Tensor, torch.Tensor], seed: int,
              workers: int, label: str, done: pd.DataFrame | None = None,
              sink: Path | None = None) -> tuple[pd.DataFrame, list[float]]:
    """Scores `cells`; with `sink`, `done` (earlier scores) plus the new ones are written there
    every 500 cells, so a killed run resumes where it was."""
    rows, seconds = [], []
    earlier = done if done is not None else pd.DataFrame()
    start = time.perf_counter()
    if workers <= 1:
        _init_worker(batch, seed)
        results = map(score_cell, cells)
        pool = None
    else:
        pool = get_context("spawn").Pool(workers, _init_worker, (batch, seed))
        results = pool.imap(score_cell, cells, chunksize=4)
    try:
        for i, (official, scores, took) in enumerate(results, 1):
            rows.append({"arch": official, **scores})
            seconds.append(took)
            if i % 100 == 0 or i == len(cells):
                elapsed = time.perf_counter() - start
                print(f"  [{label}] {i}/{len(cells)} cells, {elapsed:.0f} s", flush=True)
            if sink is not None and (i % 500 == 0 or i == len(cells)):
                write_csv(pd.concat([earlier, pd.DataFrame(rows)], ignore_index=True), sink)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return pd.concat([earlier, pd.DataFrame(rows)], ignore_index=True), seconds


def spearman(a: pd.Series, b: pd.Series) -> float:
    return float(spearmanr(a.to_numpy(float), b.to_numpy(float)).statistic)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--inputs", choices=("fmnist", "random"), default="fmnist")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per batch (32: NASLib's jacov scores top out at -32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", type=int, default=0,
                        help="random cells for part 2 (0 = all 15,625)")
    parser.add_argument("--naslib-limit", type=int, default=0,
                        help="first N NASLib cells only (0 = all)")
    parser.add_argument("--parts", default="naslib,nb201",
                        help="which parts to run: naslib, nb201 or both (comma-separated)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the per-cell scores (CSV)")
    args = parser.parse_args()

    table = pd.read_csv(args.data / "nb201" / "nb201.csv").set_index("arch")
    batch = make_batch(args.inputs, args.batch_size, args.seed, args.data)
    print(f"inputs: {args.inputs}, batch {args.batch_size}, seed {args.seed}, "
          f"{args.workers} worker(s), torch {torch.__version__}")

    parts = set(args.parts.split(","))
    if not parts <= {"naslib", "nb201"}:
        parser.error(f"--parts takes naslib and/or nb201, got {args.parts!r}")
    if "naslib" in parts:
        score_naslib(args, batch, table)
    if "nb201" in parts:
        score_nb201(args, batch, table)


def score_naslib(args: argparse.Namespace, batch: tuple[torch.Tensor, torch.Tensor],
                 table: pd.DataFrame) -> None:
    published = json.loads((args.data / "nb201" / "naslib_zc_nb201.json").read_text())
    entries = published["nasbench201"]["cifar10"]
    ref = pd.DataFrame([{"arch": naslib_to_official(k), **v} for k, v in entries.items()])
    if args.naslib_limit:
        ref = ref.head(args.naslib_limit)
    ours, seconds = score_all(list(ref["arch"]), batch, args.seed, args.workers, "naslib")
    merged = ours.merge(ref, on="arch", suffixes=("", "_naslib"))
    merged["acc12"] = table.loc[merged["arch"], "acc12_cifar10_val"].to_numpy()
    rows = []
    for name in PROXY_NAMES:
        row = {"proxy": name,
               "vs_naslib_same": (spearman(merged[name], merged[f"{PUBLISHED[name]}_naslib"])
                                  if name in PUBLISHED else float("nan")),
               "ours_vs_val200": spearman(merged[name], merged["val_accuracy"]),
               "ours_vs_acc12": spearman(merged[name], merged["acc12"]),
               "naslib_vs_val200": (spearman(merged[f"{PUBLISHED[name]}_naslib"],
                                             merged["val_accuracy"])
                                    if name in PUBLISHED else float("nan"))}
        rows.append(row)
    print(f"\nPart 1: {len(merged)} NASLib cells (CIFAR-10), Spearman; per cell "
          f"median {statistics.median(seconds):.2f} s, total {sum(seconds):.0f} s of "
          f"worker time")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        write_csv(merged, args.out / f"naslib_cells_{args.inputs}.csv")


def score_nb201(args: argparse.Namespace, batch: tuple[torch.Tensor, torch.Tensor],
                table: pd.DataFrame) -> None:
    space = get_space("nb201")
    cells = [space.to_official(space.from_index(i)) for i in range(15_625)]
    if args.subset:
        rng = np.random.default_rng(args.seed)
        cells = [cells[i] for i in sorted(rng.choice(len(cells), args.subset, replace=False))]
    sink = args.out / f"nb201_cells_{args.inputs}.csv" if args.out else None
    done = pd.DataFrame()
    if sink is not None and sink.exists():  # resume: keep the cells scored before
        done = pd.read_csv(sink, usecols=["arch", *PROXY_NAMES])
        done = done[done["arch"].isin(set(cells))]
        print(f"resuming: {len(done)} of {len(cells)} cells already in {sink}")
    scored = set(done["arch"]) if len(done) else set()
    todo = [c for c in cells if c not in scored]
    start = time.perf_counter()
    ours, seconds = score_all(todo, batch, args.seed, args.workers, "nb201", done, sink)
    wall = time.perf_counter() - start
    acc = table.loc[ours["arch"], "acc12_cifar10_val"].to_numpy()
    timing = (f"per cell median {statistics.median(seconds):.2f} s, wall {wall:.0f} s this run"
              if seconds else "nothing left to score")
    print(f"\nPart 2: {len(ours)} of 15,625 cells"
          f"{f' (seeded random subset, seed {args.seed})' if args.subset else ''} vs "
          f"acc12_cifar10_val; {timing}")
    rows = [{"proxy": n, "spearman": spearman(ours[n], pd.Series(acc)),
             "kendall": float(kendalltau(ours[n].to_numpy(float), acc).statistic)}
            for n in PROXY_NAMES]
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if sink is not None:
        ours["acc12_cifar10_val"] = acc
        write_csv(ours, sink)


if __name__ == "__main__":
    main()
