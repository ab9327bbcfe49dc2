"""`nas differentiable`: DARTS / Gumbel-softmax search of one space on a data set, sweeping
the cost weight; prints the derived architecture of each weight and the front they trace."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from estimators.files import atomic_write_text
from nas.cli.common import CommandAdder
from search_spaces import NasError, SearchSpace, get_space


def _weights(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers >= 0 joined by commas (e.g. "
                                         f"0,0.5,2), got {text!r}")
    return values


def parse_fixed(space: SearchSpace, items: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` pairs -> genes, VALUE matched against the dimension's options as text."""
    fixed: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in space.dimension_names:
            raise NasError(f"--fix expects NAME=VALUE with NAME one of "
                           f"{', '.join(space.dimension_names)}; got {item!r}")
        options = {str(o): o for o in space.dimension(name).options}
        if value not in options:
            raise NasError(f"--fix {name}: {value!r} is not one of {', '.join(options)}")
        fixed[name] = options[value]
    return fixed


def _progress(args: argparse.Namespace):
    if args.quiet or args.json:
        return None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(phase: str, step: int, total: int, info: Any) -> None:
        if phase not in bars:
            bars[phase] = tqdm(total=total, desc=phase, unit="step", file=sys.stderr,
                               leave=False)
        bar = bars[phase]
        bar.update(step - bar.n)
        if step >= total:
            bar.close()

    return update


def cmd_differentiable(args: argparse.Namespace) -> int:
    import torch

    from estimators.data import load_data
    from estimators.flops import FlopsEstimator
    from nas.budget import parse_budget
    from nas.differentiable import DifferentiableSearch, SearchConfig, front
    from nas.run_lock import check_output_file, writing
    from nas.sampling import check_feasible
    from nas.text_table import format_table

    if args.out:
        check_output_file(args.out, "--out")  # before the search, not after it
    space = get_space(args.space)
    constraints = parse_budget(args.budget)
    if any(c.metric.startswith("latency") for c in constraints):
        raise NasError("a latency budget needs a latency table; from the command line use "
                       "NUMBER-flops, NUMBER-flops_sparse or NUMBER-params (from Python, pass "
                       "block_cost=table_cost(...))")
    cost_fn = FlopsEstimator()
    check_feasible(space, constraints, cost_fn)
    metric = args.cost_metric or (constraints[0].metric if constraints else "flops")
    config = SearchConfig(method=args.method, guard=args.guard, steps=args.steps,
                          warmup_steps=args.warmup, batch_size=args.batch_size, lr=args.lr,
                          arch_lr=args.arch_lr, cost_metric=metric,
                          fixed=parse_fixed(space, args.fix), train_images=args.train_images,
                          resolution=args.resolution, max_skip=args.max_skip,
                          stop_patience=args.stop_patience)
    data = load_data(args.data, args.data_dir, seed=args.seed)  # warnings: one line (nas.cli)
    torch.set_num_threads(args.threads)
    search = DifferentiableSearch(space, data, config, constraints, cost_fn, seed=args.seed,
                                  progress=_progress(args))
    results = search.sweep(args.cost_weights)
    on_front = {id(r) for r in front(results, metric)}
    rows = []
    for r in results:
        row = {"cost_weight": r.cost_weight, "key": r.arch.key, "flops": r.metrics["flops"],
               "flops_sparse": r.metrics["flops_sparse"], "params": r.metrics["params"],
               "supernet_acc": round(r.supernet_acc, 2), "skip_edges": r.skip_edges,
               "collapsed": r.collapsed, "front": id(r) in on_front}
        if hasattr(space, "to_official"):
            row["official"] = space.to_official(r.arch)
        rows.append(row)
    payload = {"space": space.name, "method": search.method, "guard": search.guard,
               "cost_metric": metric, "fixed": dict(search.relaxation.fixed),
               "data": data.name, "results": rows,
               "details": [r.as_dict(space) for r in results]}
    if args.out:
        with writing(args.out):
            atomic_write_text(args.out, json.dumps(payload, indent=2))
    fixed = ", ".join(f"{k}={v}" for k, v in search.relaxation.fixed.items()) or "none"
    text = (f"{search.method} on {space.name} ({data.name}), guard {search.guard}, cost "
            f"{metric}, fixed genes: {fixed}\n"
            + format_table(rows, ["cost_weight", "key", "flops", "flops_sparse", "params",
                                  "supernet_acc", "skip_edges", "front"])
            + "\n\nsupernet_acc: the derived arch inside the trained supernet on validation "
              "images (a ranking signal; train it standalone with `nas evaluate`).")
    print(json.dumps(payload, indent=2) if args.json else text)
    return 0


def register(command: CommandAdder) -> None:
    p = command("differentiable", cmd_differentiable,
                "DARTS / Gumbel-softmax search with a cost-weight sweep")
    p.add_argument("--space", required=True, help="nb201, fbnet, mobile, their -sparse "
                                                  "variants, or a YAML/JSON space file")
    p.add_argument("--data", default="fashion-mnist",
                   help="fashion-mnist (default), digits, cifar10 or folder")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--budget", help="hard constraints, e.g. 300M-flops")
    p.add_argument("--cost-metric", default=None, choices=["flops", "flops_sparse", "params"],
                   help="cost in the loss (default: the budget's metric, else flops)")
    p.add_argument("--cost-weights", type=_weights, default=[0.0, 0.5, 2.0],
                   help="comma-separated cost weights to sweep (default 0,0.5,2)")
    p.add_argument("--method", default="auto", choices=["auto", "darts", "gumbel"])
    p.add_argument("--guard", default="auto",
                   choices=["auto", "none", "aux_skip", "early_stop"])
    p.add_argument("--max-skip", type=int, default=2, help="early_stop threshold")
    p.add_argument("--stop-patience", type=float, default=0.1,
                   help="early_stop: share of the steps the skips must dominate (default 0.1)")
    p.add_argument("--steps", type=int, default=200, help="alternating steps per cost weight")
    p.add_argument("--warmup", type=int, default=100, help="shared weight-only steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--arch-lr", type=float, default=3e-3)
    p.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                   help="hold a dimension fixed (repeatable), e.g. --fix r=160")
    p.add_argument("--train-images", type=int, default=None)
    p.add_argument("--resolution", type=int, default=None, help="resize the data's images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="also write the JSON report here")
    p.add_argument("--quiet", action="store_true")
