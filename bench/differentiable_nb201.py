"""DARTS (first-order) on NAS-Bench-201 cells with Fashion-MNIST: the derived cell, its
standalone accuracy, and whether it collapsed to skip connections, with and without a guard.

For each guard (`none`, `aux_skip` = DARTS-'s decaying auxiliary skip, `early_stop` = stop
before more than `max_skip` edges prefer a skip) the search runs on a search network (the NB201
skeleton with `--cells` cells per stage and `--channels` channels: by default the real depth
at a quarter of the width, as DARTS itself searches on a cheaper network than it evaluates),
from the same seed and the same warm-up. Each derived cell is then trained from scratch in
the real `nb201` network (16 channels, 5 cells per stage) with the same short recipe and
scored on the Fashion-MNIST test split, beside the two reference cells `all_skip` (the
collapsed cell) and `all_c3`. With `--table`, the cell's published 12-epoch CIFAR-10 test
accuracy is shown for context.

    python bench/differentiable_nb201.py                   # ~10 CPU-minutes per guard
    python bench/differentiable_nb201.py --guards none --cells 1 --channels 8 --steps 400
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from progress import progress_lines  # noqa: E402

from estimators.data import load_data  # noqa: E402
from estimators.files import atomic_write_text  # noqa: E402
from estimators.train import TrainRecipe, train_model  # noqa: E402
from nas.differentiable import DifferentiableSearch, SearchConfig  # noqa: E402
from search_spaces import get_space, register_space  # noqa: E402
from search_spaces.spaces import nb201 as nb201_family  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    p.add_argument("--table", default=str(ROOT.parent / "shared" / "data" / "nb201" / "nb201.csv"),
                   help="nb201.csv for the cells' published CIFAR-10 accuracy ('' to skip)")
    p.add_argument("--guards", default="none,aux_skip,early_stop")
    p.add_argument("--steps", type=int, default=1000, help="alternating DARTS steps")
    p.add_argument("--warmup", type=int, default=50, help="weight-only steps first")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--arch-lr", type=float, default=1e-2)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--cells", type=int, default=5, help="cells per stage of the search network")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--resolution", type=int, default=16, help="images resized to this (CPU time)")
    p.add_argument("--max-skip", type=int, default=2)
    p.add_argument("--eval-epochs", type=float, default=1.0)
    p.add_argument("--eval-images", type=int, default=10000,
                   help="training images per epoch of the standalone training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="", help="write the figures as JSON here")
    return p.parse_args()


def table_accuracy(path: str) -> dict[str, float]:
    if not path or not Path(path).is_file():
        return {}
    with open(path, newline="") as handle:
        return {row["arch"]: float(row["acc12_cifar10_test"]) for row in csv.DictReader(handle)}


def standalone(arch_genes: dict, data, args: argparse.Namespace) -> tuple[float, float]:
    """Test accuracy (%) of the cell in the real nb201 network after the short recipe."""
    space = get_space("nb201")
    arch = space.make(arch_genes)
    torch.manual_seed(args.seed)
    model = space.build(arch, num_classes=data.num_classes, in_channels=data.in_channels)
    recipe = TrainRecipe(epochs=args.eval_epochs, batch_size=64, lr=0.05,
                         train_images=args.eval_images)
    start = time.perf_counter()
    result = train_model(model, data, recipe, seed=args.seed, split="test",
                         resolution=args.resolution)
    return result.acc, time.perf_counter() - start


def trajectory(history: list[dict]) -> list[float]:
    """Mean skip probability at 0, 25, 50, 75 and 100% of the logged steps."""
    if not history:
        return []
    marks = [round(f * (len(history) - 1)) for f in (0, 0.25, 0.5, 0.75, 1.0)]
    return [round(history[i]["skip_weight"], 3) for i in marks]


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    data = load_data("fashion-mnist", args.data_dir, seed=args.seed)
    search_space = register_space(nb201_family.create(
        "nb201-search", {"channels": args.channels, "cells": args.cells, "classes": 10,
                         "resolution": args.resolution}, False))
    nb201 = get_space("nb201")
    published = table_accuracy(args.table)
    rows = []
    for guard in [g.strip() for g in args.guards.split(",") if g.strip()]:
        config = SearchConfig(method="darts", guard=guard, steps=args.steps,
                              warmup_steps=args.warmup, batch_size=args.batch_size,
                              lr=args.lr, arch_lr=args.arch_lr, max_skip=args.max_skip,
                              resolution=args.resolution, eval_images=2000)
        start = time.perf_counter()
        result = DifferentiableSearch(search_space, data, config, seed=args.seed,
                                      progress=progress_lines()).run(0.0)
        search_s = time.perf_counter() - start
        genes = {k: v for k, v in result.arch.genes}
        cell = nb201.make(genes)
        acc, train_s = standalone(genes, data, args)
        official = nb201.to_official(cell)
        rows.append({"guard": guard, "cell": cell.key, "official": official,
                     "skip_edges": result.skip_edges, "collapsed": result.collapsed,
                     "stopped_at": result.stopped_at, "steps": result.steps,
                     "skip_weight": trajectory(list(result.history)),
                     "supernet_acc": round(result.supernet_acc, 2),
                     "standalone_test_acc": round(acc, 2),
                     "cifar10_acc12_test": published.get(official),
                     "search_s": round(search_s, 1), "train_s": round(train_s, 1)})
        print(json.dumps(rows[-1]), flush=True)
    for name in ("all_skip", "all_c3"):
        ref = nb201.reference_archs()[name]
        acc, train_s = standalone(ref.as_dict(), data, args)
        official = nb201.to_official(ref)
        rows.append({"guard": f"(reference {name})", "cell": ref.key, "official": official,
                     "standalone_test_acc": round(acc, 2),
                     "cifar10_acc12_test": published.get(official), "train_s": round(train_s, 1)})
        print(json.dumps(rows[-1]), flush=True)
    print()
    print(f"search: nb201 skeleton with {args.cells} cells/stage, {args.channels} channels, "
          f"Fashion-MNIST at {args.resolution}px, {args.warmup} warm-up + {args.steps} DARTS "
          f"steps, batch {args.batch_size}, seed {args.seed}")
    print(f"standalone: nb201 (16 channels, 5 cells/stage), {args.eval_epochs} epoch(s) of "
          f"{args.eval_images} images, test split (10,000 images)")
    header = f"{'guard':<22} {'cell':<28} {'skips':>5} {'collapsed':>9} {'stop':>5} " \
             f"{'skip p (0..100%)':<34} {'test %':>7} {'C10 12ep':>8}"
    print(header)
    for r in rows:
        print(f"{r['guard']:<22} {r['cell']:<28} {str(r.get('skip_edges', '-')):>5} "
              f"{str(r.get('collapsed', '-')):>9} {str(r.get('stopped_at', '-')):>5} "
              f"{str(r.get('skip_weight', '-')):<34} {r['standalone_test_acc']:>7} "
              f"{str(r.get('cifar10_acc12_test', '-')):>8}")
    if args.out:
        atomic_write_text(args.out, json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
