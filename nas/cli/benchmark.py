"""`nas benchmark`: run a search strategy against a tabular benchmark (one query = one lookup)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from nas.benchmark import BenchmarkError, BenchmarkResult, read_table, run_benchmark
from nas.cli.common import CommandAdder, emit, positive_int_up_to, seed
from nas.strategies import get_strategy, list_strategies
from nas.strategies.options import cost_metric_names
from nas.text_table import format_table
from search_spaces import get_space

CURVE_POINTS = (1, 10, 25, 50, 100, 150, 200, 300, 500, 1000)
# Bounds that catch a typo before it allocates or runs for ever.
MAX_QUERIES, MAX_SEEDS, MAX_WORKERS = 1_000_000, 100_000, 1_024


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """`KEY=VALUE` pairs; VALUE is read as JSON (numbers, true/false, null), else as text."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchmarkError(f"--option {item!r}: expected KEY=VALUE, e.g. population=50")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def cmd_benchmark(args: argparse.Namespace) -> int:
    get_strategy(args.strategy)  # unknown names fail before the table is read
    space = get_space(args.space)
    costs = [c for group in args.cost or [] for c in group.split(",") if c]
    cheap = [c for group in args.cheap or [] for c in group.split(",") if c]
    options = parse_options(args.option)
    missing = [m for m in cost_metric_names(get_strategy(args.strategy).options_type, options)
               if m not in cheap]
    if missing:
        raise BenchmarkError(f"strategy options name cheap metric {missing[0]!r}: give the table "
                             f"column with --cheap {missing[0]}")
    columns = list(dict.fromkeys([args.objective, args.report or args.objective, *costs,
                                  *cheap]))
    table = read_table(args.table, space, columns, arch_column=args.arch_column)
    seeds = range(args.seed_start, args.seed_start + args.seeds)
    result = run_benchmark(table, args.strategy, args.objective, args.report, costs,
                           queries=args.queries, seeds=seeds, direction=args.direction,
                           options=options, batch=args.batch,
                           workers=args.workers, cheap=cheap)
    emit(args, result.to_dict(), format_result(result))
    return 0


def format_result(result: BenchmarkResult) -> str:
    lines = [f"{result.strategy} on {result.space}: search {result.objective}, report "
             f"{result.report}; {result.queries} queries x {result.seeds} seeds "
             f"({result.seconds:.1f} s; {result.cpu_seconds:.1f} s of processor time)",
             f"regret of {result.report} against the table's optimum: mean "
             f"{result.mean_regret:.3f} +- {result.stderr:.3f} (stderr), median "
             f"{result.median_regret:.3f}", ""]
    points = [q for q in CURVE_POINTS if q <= result.queries]
    if result.queries not in points:
        points.append(result.queries)
    lines.append(format_table([{"queries": q, "mean_regret": round(result.curve[q - 1], 4)}
                               for q in points]))
    if result.costs:
        payload = result.to_dict()["costs"]
        lines += ["", "hypervolume of the found front / the table's true front "
                      "(reference point: the true front's nadir):"]
        lines.append(format_table([{"cost": c, "ratio": round(v["hypervolume_ratio"], 5),
                                    "stderr": round(v["stderr"], 5),
                                    "gap_%": round(100 * (1 - v["hypervolume_ratio"]), 3)}
                                   for c, v in payload.items()]))
    return "\n".join(lines)


def register(command: CommandAdder) -> None:
    p = command("benchmark", cmd_benchmark,
                "run a search strategy against a table of measured architectures")
    p.add_argument("--table", required=True, help="CSV with an `arch` column and metric columns")
    p.add_argument("--space", required=True, help="the space the table's archs belong to")
    p.add_argument("--objective", required=True, help="column the strategy searches on")
    p.add_argument("--report", help="column the regret is reported on (default: --objective)")
    p.add_argument("--cost", action="append",
                   help="cost column(s) (minimised); adds the hypervolume ratio of the front; "
                        "repeat or join with commas")
    p.add_argument("--cheap", action="append", metavar="COLUMN",
                   help="column(s) known without a query (zero-cost proxy scores, params), given "
                        "to the strategy as its cost_fn, e.g. for --option warm_start=COLUMN; "
                        "repeat or join with commas")
    p.add_argument("--strategy", required=True, help=f"one of {', '.join(list_strategies())}")
    p.add_argument("--queries", type=positive_int_up_to(MAX_QUERIES), default=150,
                   help="lookups per seed (default 150)")
    p.add_argument("--seeds", type=positive_int_up_to(MAX_SEEDS), default=10,
                   help="number of seeds (default 10)")
    p.add_argument("--seed-start", type=seed, default=0, help="first seed (default 0)")
    p.add_argument("--direction", choices=("maximize", "minimize"), default="maximize",
                   help="of --objective and --report (default maximize)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="strategy option, e.g. --option population=50 (repeatable)")
    p.add_argument("--batch", type=positive_int_up_to(MAX_QUERIES), default=1,
                   help="archs asked per round (default 1)")
    p.add_argument("--workers", type=positive_int_up_to(MAX_WORKERS), default=1,
                   help="processes running seeds in parallel (same figures; default 1)")
    p.add_argument("--arch-column", default="arch", help="column naming the arch (default arch)")
