"""`nas search`, `nas report` and `nas export`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from search_spaces import NasError, first_line

CommandAdder = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]

# Options that may change when a run is resumed (they do not change what is found).
RESUMABLE = ("trials", "time_limit", "workers", "address")
STRATEGY_CHOICES = ("random", "evolution", "nsga2", "rl", "differentiable", "tpe")


def _parse_options(pairs: list[str] | None, strategy: str, estimator: str
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--option NAME=VALUE` pairs routed to the strategy or the estimator by name."""
    from nas.evaluation import ESTIMATOR_OPTIONS
    from nas.strategies import get_strategy

    strategy_names = set(get_strategy(strategy).defaults)
    estimator_names = set(ESTIMATOR_OPTIONS[estimator])
    strategy_options: dict[str, Any] = {}
    estimator_options: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise NasError(f"malformed --option {pair!r}: expected NAME=VALUE, e.g. population=20")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if name in strategy_names:
            strategy_options[name] = value
        elif name in estimator_names:
            estimator_options[name] = value
        else:
            raise NasError(f"unknown --option {name!r}; strategy {strategy} accepts "
                           f"{sorted(strategy_names) or 'none'}, estimator {estimator} accepts "
                           f"{sorted(estimator_names)}")
    return strategy_options, estimator_options


def _settings(args: argparse.Namespace):
    from nas.search import SearchSettings, parse_duration

    if args.space is None:
        raise NasError("--space is required (or --resume RUN to continue a run)")
    strategy = args.strategy or "nsga2"
    estimator = args.estimator or "supernet"
    strategy_options, estimator_options = _parse_options(args.option, strategy, estimator)
    for flag in ("proxy", "table", "column", "epochs"):
        value = getattr(args, flag)
        if value is not None:
            estimator_options[flag] = value
    defaults = SearchSettings(space=args.space)
    return SearchSettings(
        space=args.space, budget=args.budget, strategy=strategy,
        strategy_options=strategy_options, estimator=estimator,
        estimator_options=estimator_options, objectives=args.objectives,
        data=args.data or defaults.data, data_dir=args.data_dir,
        val_fraction=args.val_fraction if args.val_fraction is not None else defaults.val_fraction,
        device=args.device, trials=args.trials, time_limit=parse_duration(args.time_limit),
        batch_size=args.batch_size, workers=args.workers, address=args.address,
        seed=args.seed if args.seed is not None else 0,
        threads=args.threads if args.threads is not None else 1, cost_classes=args.cost_classes, anchors=not args.no_anchors)


def _resumed(args: argparse.Namespace):
    """The saved settings of `--resume RUN`, with the options that may change applied."""
    from nas.run_folder import resolve_run
    from nas.search import parse_duration, resume_settings

    run_dir = resolve_run(args.resume, args.results)
    fixed = [name for name in ("space", "budget", "strategy", "estimator", "objectives", "data",
                               "data_dir", "val_fraction", "device", "seed", "batch_size",
                               "threads", "cost_classes", "option", "proxy", "table", "column",
                               "epochs", "out")
             if getattr(args, name) not in (None, [])]
    if fixed or args.no_anchors:
        names = ", ".join("--" + n.replace("_", "-") for n in fixed + (
            ["no_anchors"] if args.no_anchors else []))
        raise NasError(f"--resume continues a run with its own settings; {names} cannot change "
                       f"(only --trials, --time-limit, --workers, --address)")
    settings = resume_settings(run_dir)
    if args.trials is not None:
        settings.trials = args.trials
    if args.time_limit is not None:
        settings.time_limit = parse_duration(args.time_limit)
    if args.workers is not None:
        settings.workers = args.workers
    if args.address is not None:
        settings.address = args.address
    return settings, run_dir


def cmd_search(args: argparse.Namespace) -> int:
    import warnings

    from nas.cli import emit
    from nas.run_lock import check_output_dir, writing
    from nas.search import SearchJob, format_front, new_run_dir

    if args.resume is not None:
        settings, run_dir = _resumed(args)
    else:
        settings = _settings(args)
        if args.out is not None:
            run_dir = check_output_dir(args.out, "--out")
            if (run_dir / "config.json").exists():
                raise NasError(f"{run_dir} already holds a run; continue it with --resume "
                               f"{run_dir}, or choose another --out")
        else:
            check_output_dir(args.results, "--results")
            run_dir = None
    quiet = args.quiet or args.json
    log = (lambda text: None) if quiet else (lambda text: sys.stderr.write(text + "\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning  # restored when the block ends
        # Every setting is checked here, before a run folder is made or written.
        job = SearchJob(settings, run_dir or Path(args.results), quiet=quiet, log=log)
        if run_dir is None:
            with writing(args.results):
                job.run_dir = new_run_dir(args.results, settings.space, settings.strategy,
                                          settings.seed)
            job.made_dir = True
        elif args.resume is None:
            job.require_new = True  # checked again under the run folder's lock
        result = job.run()
    emit(args, result.payload(), format_front(result, job.objectives, job.constraints))
    return 0


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Our own warnings (e.g. the data-set fallback) as one `warning: ...` line when they
    happen; library noise (deprecations inside Ray, fvcore...) is dropped."""
    if category.__module__.split(".")[0] in ("estimators", "nas", "search_spaces"):
        sys.stderr.write(f"warning: {first_line(message)}\n")


def _warn(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")


def cmd_report(args: argparse.Namespace) -> int:
    from nas.cli import emit
    from nas.results import display_columns, summarise
    from nas.run_folder import compare, load_run
    from nas.run_lock import check_output_file, writing
    from nas.table import format_table

    if args.plot:
        check_output_file(args.plot, "--plot")
    runs = [load_run(r, args.results, warn=_warn) for r in args.runs]
    payload: dict[str, Any] = {"runs": []}
    texts = []
    for run in runs:
        with writing(run.path):
            summary = summarise(run.path, run.config, run.rows, run.anchors, _kept(run.path))
        front = run.front()
        payload["runs"].append({"run_dir": str(run.path), "pareto": front,
                                "hypervolume": summary["hypervolume"], "trials": len(run.rows)})
        table = format_table(front, display_columns(run.objectives, front)) if front else \
            "(no usable trial within the budget)"
        texts.append(f"{run.path}: {len(front)} on the front of {len(run.rows)} trials, "
                     f"hypervolume {summary['hypervolume']:.4f}\n{table}")
    if len(runs) > 1:
        rows = compare(runs)
        payload["comparison"] = rows
        texts.append("comparison (hypervolume_common: one box for all runs)\n" +
                     format_table(rows))
    if args.plot:
        with writing(args.plot):
            _plot_fronts(args.plot, runs)
        texts.append(f"{'fronts' if len(runs) > 1 else 'front'} plotted in {args.plot}")
    from nas.results import clean_json

    emit(args, clean_json(payload), "\n\n".join(texts))
    return 0


def _kept(run_dir: Path) -> dict[str, Any]:
    """What a re-render cannot recompute from the trials (which runner ran the search); a
    damaged summary.json keeps nothing."""
    from nas.results import ResultsError, read_json

    path = run_dir / "summary.json"
    if not path.is_file():
        return {}
    try:
        old = read_json(path)
    except ResultsError:
        return {}
    return {k: old[k] for k in ("runner", "search_seconds") if k in old} \
        if isinstance(old, dict) else {}


def _plot_fronts(path: str, runs: list) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from estimators.files import atomic_write_bytes
    from nas.results import plot_axes

    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    for run in runs:
        x, y = plot_axes(run.objectives)
        scale = 1e6 if x.startswith(("flops", "params")) else 1.0
        points = sorted((float(r[x]) / scale, float(r[y])) for r in run.front())
        if points:
            ax.step(*zip(*points), where="post", marker="o", ms=4, label=run.path.name)
    x, y = plot_axes(runs[0].objectives)
    ax.set_xlabel(f"{x} (M)" if x.startswith(("flops", "params")) else x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def cmd_export(args: argparse.Namespace) -> int:
    from nas.cli import emit
    from nas.export import export

    log = (lambda text: None) if (args.quiet or args.json) else (
        lambda text: sys.stderr.write(text + "\n"))
    written = export(args.run, args.out, rank=args.rank, epochs=args.epochs, onnx=args.onnx,
                     results_root=args.results, log=log, warn=_warn)
    lines = [f"{written['out']}: {written['key']} (rank {written['rank']}, weights "
             f"{written['weights']})"]
    if "standalone_val_acc" in written:
        lines.append(f"standalone val acc {written['standalone_val_acc']:.2f} %")
    if "onnx" in written:
        lines.append(f"onnx: {written['onnx']}")
    lines.append(f"load it with: import nas.export; nas.export.load({written['out']!r})")
    emit(args, written, "\n".join(lines))
    return 0


def register(command: CommandAdder) -> None:
    from estimators.data import DATASETS
    from nas.evaluation import ESTIMATORS

    p = command("search", cmd_search,
                "search a space for the Pareto front of accuracy and cost within a budget")
    p.add_argument("--space", help="space name or path to a YAML/JSON space file")
    p.add_argument("--budget", help="e.g. 300M-flops, 5M-params, 20ms-latency, joined by commas")
    p.add_argument("--strategy", choices=STRATEGY_CHOICES, default=None,
                   help="search strategy (default nsga2: multi-objective evolution)")
    p.add_argument("--estimator", choices=ESTIMATORS, default=None,
                   help="accuracy estimator (default supernet, trained once and cached; proxy "
                        "for a fast first look)")
    p.add_argument("--objectives", help="METRIC[:max|:min] joined by commas (default acc,flops; "
                                        "acc,latency_ms with --device)")
    p.add_argument("--data", choices=DATASETS, default=None, help="data set (default "
                   "fashion-mnist; scikit-learn's digits when it is not installed)")
    p.add_argument("--data-dir", help="folder of the data set")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="share of the training set held out for validation (default 1/6)")
    p.add_argument("--device", help="latency device (adds latency_ms; see `nas latency`)")
    p.add_argument("--trials", type=int, help="architectures to evaluate (default "
                   "100 when no --time-limit)")
    p.add_argument("--time-limit", help="stop asking for new architectures after this long "
                                        "(seconds, or 15m, 1h)")
    p.add_argument("--workers", type=int, help="Ray workers (default one per CPU of the cluster; "
                                               "0 evaluates in this process without Ray)")
    p.add_argument("--address", help="join a running Ray cluster (HOST:PORT or auto) instead of "
                                     "starting one inside this process")
    p.add_argument("--seed", type=int, default=None, help="seed of every random choice (default 0)")
    p.add_argument("--out", help="run folder (default results/<run-id>)")
    p.add_argument("--results", default="results", help="where run folders go (default results)")
    p.add_argument("--resume", metavar="RUN", help="continue a run (its folder or id)")
    p.add_argument("--batch-size", type=int, help="architectures asked per batch (default 8 or "
                                                  "--workers if larger); results depend on it, "
                                                  "not on the runner")
    p.add_argument("--threads", type=int, help="torch threads per evaluation (default 1)")
    p.add_argument("--cost-classes", type=int, help="classifier outputs FLOPs/params are counted "
                   "with (default the space's own head, so budgets read like published figures)")
    p.add_argument("--proxy", help="proxy estimator: the proxy reported as acc (default jacov)")
    p.add_argument("--table", help="table estimator: CSV with an 'arch' column")
    p.add_argument("--column", help="table estimator: column read as acc")
    p.add_argument("--epochs", type=float, help="train/supernet estimators: training epochs")
    p.add_argument("--option", action="append", metavar="NAME=VALUE",
                   help="a strategy or estimator option, e.g. population=20 (repeatable)")
    p.add_argument("--no-anchors", action="store_true",
                   help="do not evaluate the space's reference networks for the plot")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = command("report", cmd_report,
                "re-render the result files of runs and compare them side by side")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders or run ids")
    p.add_argument("--results", default="results", help="where run ids are looked up")
    p.add_argument("--plot", help="write the fronts of all runs into one PNG")

    p = command("export", cmd_export, "write a found architecture's weights and key to a file")
    p.add_argument("run", metavar="RUN", help="run folder or run id")
    p.add_argument("--rank", type=int, default=1, help="front row (1 = most accurate; default 1)")
    p.add_argument("--out", required=True, help="output file, e.g. model.pt")
    p.add_argument("--epochs", type=float, default=0.0,
                   help="train standalone on the run's data first (default 0: supernet weights "
                        "for supernet runs, else the seeded initialisation)")
    p.add_argument("--onnx", action="store_true", help="also write an ONNX graph (needs onnx)")
    p.add_argument("--results", default="results", help="where run ids are looked up")
    p.add_argument("--quiet", action="store_true")
