"""Gumbel-softmax search (FBNet style) with an expected-cost term: a cost-weight sweep traces
a cost/accuracy front. Sparse candidates (per-stage density 0.25/0.5/1.0) with the
sparsity-aware cost `flops_sparse` (DASS) by default.

The search runs on a reduced space of the chosen family (`fbnet`: FBNet's candidate blocks on
a 4-stage macro-architecture; `mobile`: OFA's elastic kernel/expand/depth on 3 stages), small
enough for a CPU, with Fashion-MNIST. Each derived architecture is then trained from scratch
with the same short recipe and scored on the test split; the table marks the Pareto front of
(cost, test accuracy).

    python bench/differentiable_front.py                          # fbnet family, ~15 CPU-min
    python bench/differentiable_front.py --family mobile --metric flops
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from progress import progress_lines  # noqa: E402

from estimators.data import load_data  # noqa: E402
from estimators.files import atomic_write_text  # noqa: E402
from estimators.flops import FlopsEstimator  # noqa: E402
from estimators.train import TrainRecipe, train_model  # noqa: E402
from nas.differentiable import DifferentiableSearch, SearchConfig  # noqa: E402
from nas.pareto import pareto_mask  # noqa: E402
from search_spaces import register_space  # noqa: E402
from search_spaces.spaces import fbnet as fbnet_family  # noqa: E402
from search_spaces.spaces import inverted_residual as ir_family  # noqa: E402

SPACES = {
    "fbnet": lambda sparse: fbnet_family.create("fbnet-bench" + ("-sparse" if sparse else ""), {
        "widths": [16, 24, 32, 64], "depths": [1, 2, 2, 1], "strides": [1, 2, 2, 1],
        "ops": ["skip", "k3_e1_g2", "k3_e1", "k5_e1", "k3_e3", "k5_e3", "k3_e6", "k5_e6"],
        "stem": 16, "stem_stride": 1, "head": 256, "resolution": 32, "classes": 10}, sparse),
    "mobile": lambda sparse: ir_family.create("mobile-bench" + ("-sparse" if sparse else ""), {
        **ir_family.PRESETS["mobile"], "widths": [24, 40, 80], "strides": [2, 2, 2],
        "acts": ["relu", "relu", "hswish"], "se": [False, True, False], "depths": [1, 2, 3],
        "resolutions": [32], "stem": 16, "first": 16, "head": 256, "mix": 0, "dropout": 0.0,
        "classes": 10}, sparse),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    p.add_argument("--family", choices=sorted(SPACES), default="fbnet")
    p.add_argument("--dense", action="store_true", help="no sparse candidates")
    p.add_argument("--metric", default="flops_sparse", choices=["flops", "flops_sparse", "params"])
    p.add_argument("--weights", default="0,0.5,2,8", help="cost weights to sweep")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--arch-lr", type=float, default=0.02)
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--eval-epochs", type=float, default=1.0)
    p.add_argument("--eval-images", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    space = register_space(SPACES[args.family](not args.dense))
    data = load_data("fashion-mnist", args.data_dir, seed=args.seed)
    estimator = FlopsEstimator()
    config = SearchConfig(method="gumbel", steps=args.steps, warmup_steps=args.warmup,
                          batch_size=args.batch_size, arch_lr=args.arch_lr,
                          cost_metric=args.metric, resolution=args.resolution, eval_images=2000)
    start = time.perf_counter()
    search = DifferentiableSearch(space, data, config, cost_fn=estimator, seed=args.seed,
                                  progress=progress_lines())
    results = search.sweep([float(w) for w in args.weights.split(",")])
    search_s = time.perf_counter() - start
    rows = []
    for result in results:
        torch.manual_seed(args.seed)
        model = space.build(result.arch, num_classes=10, in_channels=1)
        recipe = TrainRecipe(epochs=args.eval_epochs, batch_size=64, lr=0.05,
                             train_images=args.eval_images)
        trained = train_model(model, data, recipe, seed=args.seed, split="test",
                              resolution=args.resolution)
        rows.append({"cost_weight": result.cost_weight, "key": result.arch.key,
                     **{k: result.metrics[k] for k in ("flops", "flops_sparse", "params")},
                     "expected_cost": round(result.expected_cost),
                     "supernet_acc": round(result.supernet_acc, 2),
                     "test_acc": round(trained.acc, 2)})
        print(json.dumps(rows[-1]), flush=True)
    points = np.array([[r[args.metric], -r["test_acc"]] for r in rows])
    for row, keep in zip(rows, pareto_mask(points)):
        row["front"] = bool(keep)
    print()
    print(f"{args.family} family ({space.name}: {space.log10_size():.1f} log10 archs), gumbel, "
          f"cost {args.metric}, {args.warmup} warm-up + {args.steps} steps per weight, "
          f"Fashion-MNIST at {args.resolution}px, search {search_s:.0f} s; standalone "
          f"{args.eval_epochs} epoch(s) of {args.eval_images} images, test split")
    print(f"{'weight':>6} {'flops':>9} {'flops_sparse':>12} {'params':>8} {'supernet':>8} "
          f"{'test %':>7} {'front':>5}  key")
    for r in rows:
        print(f"{r['cost_weight']:>6g} {r['flops'] / 1e6:>8.2f}M {r['flops_sparse'] / 1e6:>11.2f}M "
              f"{r['params'] / 1e3:>7.1f}K {r['supernet_acc']:>8} {r['test_acc']:>7} "
              f"{str(r['front']):>5}  {r['key']}")
    if args.out:
        atomic_write_text(args.out, json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
