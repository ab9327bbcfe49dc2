"""`nas spaces`, `nas sample`, `nas describe`: explore spaces and their costs."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from nas.budget import format_budget, parse_budget
from nas.cli import common as cli_types
from nas.cli.common import CommandAdder, emit
from nas.objectives import Constraint
from nas.sampling import check_feasible, sample_within
from nas.text_table import format_table
from search_spaces import Arch, NasError, SearchSpace, get_space, list_spaces

MAX_SAMPLES = 100_000  # `nas sample -n`: more is a typo (it would run for hours)




def _cost_fn(space: SearchSpace, constraints: Sequence[Constraint], classes: int | None,
             device: str | None = None, cache_dir: str | None = None):
    """Cost metrics for sampling under a budget: analytical FLOPs and params, plus
    `latency_ms` on `device` (`cpu`/`cuda`: this machine's table; another name: a device from
    `nas latency fit` or `nas latency import`)."""
    from estimators.flops import FlopsEstimator

    flops = FlopsEstimator(num_classes=classes)
    if device is None:
        if any(c.metric.startswith("latency") for c in constraints):
            raise NasError("a latency budget needs --device NAME: cpu or cuda (a table built by "
                           "`nas latency build`) or a device from `nas latency fit` or "
                           "`nas latency import` (see `nas latency devices`)")
        return flops
    from estimators.latency import LatencyEstimator

    latency = LatencyEstimator.open(space, device, num_classes=classes, cache_dir=cache_dir)

    def cost(arch: Arch) -> dict[str, float]:
        return {**flops(arch), **latency(arch)}

    return cost


# --- commands ---------------------------------------------------------------------------------
def cmd_spaces(args: argparse.Namespace) -> int:
    rows = []
    for name in list_spaces():
        space = get_space(name)
        rows.append({
            "name": name,
            "dimensions": {d.name: list(d.options) for d in space.dimensions},
            "num_dimensions": len(space.dimensions),
            "log10_size": round(space.log10_size(), 2),
            "references": list(space.reference_archs()),
        })
    text = format_table([{**r, "references": ", ".join(r["references"]) or "-"} for r in rows],
                        ["name", "num_dimensions", "log10_size", "references"])
    text += ("\n\nAny conv/linear space also comes as `<name>-sparse` (per-stage weight density "
             "0.25/0.5/1.0).\n`nas describe --space NAME --ref REF` shows one network layer by layer.")
    emit(args, rows, text)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    space = get_space(args.space)
    constraints = parse_budget(args.budget)
    cost_fn = _cost_fn(space, constraints, args.classes, args.device, args.cache_dir)
    check_feasible(space, constraints, cost_fn)
    if args.n < 1:
        raise NasError(f"-n must be at least 1, got {args.n}")
    import numpy as np

    rng = np.random.default_rng(args.seed)
    rows = []
    for _ in range(args.n):
        arch = sample_within(space, constraints, cost_fn, rng)
        rows.append({"key": arch.key, **cost_fn(arch)})
    header = (f"{args.n} samples of {space.name} (seed {args.seed}, budget "
              f"{format_budget(constraints)}{f', device {args.device}' if args.device else ''})")
    columns = ["key", "flops", "flops_sparse", "params"] + (["latency_ms"] if args.device else [])
    emit(args, rows, header + "\n" + format_table(rows, columns))
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from estimators.flops import FlopsEstimator, layer_table

    space = get_space(args.space)
    if args.ref is not None:
        refs = space.reference_archs()
        if args.ref not in refs:
            raise NasError(f"unknown reference {args.ref!r} for space {space.name}; "
                           f"known: {', '.join(refs) or 'none'}")
        arch = refs[args.ref]
    else:
        arch = space.parse(args.arch)
    metrics = FlopsEstimator(num_classes=args.classes)(arch)
    layers = layer_table(arch, args.classes)
    payload: dict[str, Any] = {"space": space.name, "key": arch.key,
                               "input_size": space.input_size(arch), **metrics, "layers": layers}
    if args.verify:
        from estimators.flops import fvcore_cost

        model = space.build(arch, args.classes)
        counted = fvcore_cost(model, model.example_input())
        payload["fvcore"] = {"flops": counted.macs, "flops_sparse": counted.sparse_macs,
                             "params": counted.params}
    summary = "\n".join(f"{k:<13} {payload[k]:>15,.0f}" for k in ("flops", "flops_sparse", "params"))
    text = (f"{arch.key}\ninput {payload['input_size']}x{payload['input_size']}\n\n"
            + format_table(layers, ["name", "op", "in_shape", "out_shape", "flops", "params", "args"])
            + "\n\n" + summary)
    if args.verify:
        text += "\n\nfvcore: " + ", ".join(f"{k}={v:,}" for k, v in payload["fvcore"].items())
    emit(args, payload, text)
    return 0


def register(command: CommandAdder) -> None:
    command("spaces", cmd_spaces, "list the search spaces, their dimensions and sizes")

    p = command("sample", cmd_sample, "random architectures of a space, optionally within a budget")
    p.add_argument("--space", required=True, help="space name or path to a YAML/JSON space file")
    p.add_argument("-n", type=cli_types.positive_int_up_to(MAX_SAMPLES), default=10,
                   help=f"number of samples (default 10, at most {MAX_SAMPLES:,})")
    p.add_argument("--seed", type=cli_types.seed, default=0)
    p.add_argument("--budget", help="e.g. 300M-flops, 300M-flops,5M-params or (with --device) "
                                    "20ms-latency")
    p.add_argument("--classes", type=cli_types.classes, default=None,
                   help="classifier outputs (space default)")
    p.add_argument("--device", default=None,
                   help="latency device: cpu/cuda (`nas latency build`) or a name from `nas "
                        "latency fit`/`import`; adds latency_ms and allows latency budgets")
    p.add_argument("--cache-dir", default=None,
                   help="where latency tables and devices live (default $NAS_CACHE_DIR or "
                        "~/.cache/nas)")

    p = command("describe", cmd_describe, "flops, params and a per-layer table of one network")
    p.add_argument("--space", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--ref", help="a reference network of the space (see `nas spaces`)")
    group.add_argument("--arch", help="a key, or the form of the published data (NB201 cell "
                                      "string, FBNet op list, OFA JSON)")
    p.add_argument("--classes", type=cli_types.classes, default=None,
                   help="classifier outputs (space default)")
    p.add_argument("--verify", action="store_true",
                   help="also count the built model with fvcore")
