"""`nas search`, `nas report` and `nas export`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nas.cli.common import CommandAdder
from search_spaces import NasError


def _parse_options(pairs: list[str] | None, strategy: str, estimator: str
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--option NAME=VALUE` pairs routed to the strategy or the estimator by name."""
    from nas.evaluation import estimator_options
    from nas.strategies import get_strategy

    strategy_names = set(get_strategy(strategy).defaults)
    estimator_names = set(estimator_options(estimator))
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


# Flags of `nas search` that are not settings: the estimator's own (routed like --option) and
# those that name the run folder.
ESTIMATOR_FLAGS = ("proxy", "table", "column", "epochs")


def _settings(args: argparse.Namespace):
    from nas.search_settings import SearchSettings, setting_flags

    if args.space is None:
        raise NasError("--space is required (or --resume RUN to continue a run)")
    values = {spec.name: spec.value(args) for spec in setting_flags()}
    strategy_options, estimator_options = _parse_options(args.option, values["strategy"],
                                                         values["estimator"])
    for flag in ESTIMATOR_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            estimator_options[flag] = value
    return SearchSettings(**values, strategy_options=strategy_options,
                          estimator_options=estimator_options)


def _resumed(args: argparse.Namespace):
    """The saved settings of `--resume RUN`, with the options that may change applied."""
    from nas.run_folder import resolve_run
    from nas.search_settings import resume_settings, setting_flags

    run_dir = resolve_run(args.resume, args.results)
    specs = setting_flags()
    fixed = [s for s in specs if not s.resumable and s.given(args)]
    names = [s.flag for s in fixed if not s.switch]
    names += ["--" + n for n in ("option", *ESTIMATOR_FLAGS, "out")
              if getattr(args, n) not in (None, [])]
    names += [s.flag for s in fixed if s.switch]
    if names:
        allowed = ", ".join(s.flag for s in specs if s.resumable)
        raise NasError(f"--resume continues a run with its own settings; {', '.join(names)} "
                       f"cannot change (only {allowed})")
    settings = resume_settings(run_dir)
    for spec in specs:
        if spec.resumable and spec.given(args):
            setattr(settings, spec.name, spec.value(args))
    return settings, run_dir


def cmd_search(args: argparse.Namespace) -> int:

    from nas.cli.common import emit, fresh_out_dir
    from nas.report import format_front
    from nas.run_folder import new_run_dir
    from nas.run_lock import check_output_dir, writing
    from nas.search import SearchJob

    if args.resume is not None:
        settings, run_dir = _resumed(args)
    else:
        settings = _settings(args)
        if args.out is not None:
            run_dir = fresh_out_dir(args.out)
        else:
            check_output_dir(args.results, "--results")
            run_dir = None
    quiet = args.quiet or args.json
    log = (lambda text: None) if quiet else (lambda text: sys.stderr.write(text + "\n"))
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


def _warn(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")


def cmd_report(args: argparse.Namespace) -> int:
    from nas.cli.common import emit
    from nas.report import display_columns, plot_fronts, summarise
    from nas.results import clean_json
    from nas.run_folder import compare, load_run
    from nas.run_lock import check_output_file, writing
    from nas.text_table import format_table

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
            plot_fronts(args.plot, runs)
        texts.append(f"{'fronts' if len(runs) > 1 else 'front'} plotted in {args.plot}")
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
    if not isinstance(old, dict):
        return {}
    # a command may name more of its own figures to keep (`nas stitch`: its "kept" list)
    more = [k for k in old.get("kept", []) if isinstance(k, str)] \
        if isinstance(old.get("kept"), list) else []
    keys = ["runner", "search_seconds", *more, *(["kept"] if more else [])]
    return {k: old[k] for k in keys if k in old}


def cmd_export(args: argparse.Namespace) -> int:
    from nas.cli.common import emit
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
    from nas.search_settings import setting_flags

    p = command("search", cmd_search,
                "search a space for the Pareto front of accuracy and cost within a budget")
    for spec in setting_flags():
        # As --help has always listed them: the run folder's flags after --seed, the
        # estimator's before --no-anchors.
        if spec.name == "batch_size":
            p.add_argument("--out", help="run folder (default results/<run-id>)")
            p.add_argument("--results", default="results",
                           help="where run folders go (default results)")
            p.add_argument("--resume", metavar="RUN", help="continue a run (its folder or id)")
        if spec.switch:
            p.add_argument("--proxy",
                           help="proxy estimator: the proxy reported as acc (default jacov)")
            p.add_argument("--table", help="table estimator: CSV with an 'arch' column")
            p.add_argument("--column", help="table estimator: column read as acc")
            p.add_argument("--epochs", type=float,
                           help="train/supernet estimators: training epochs")
            p.add_argument("--option", action="append", metavar="NAME=VALUE",
                           help="a strategy or estimator option, e.g. population=20 (repeatable)")
        spec.add_to(p)
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
