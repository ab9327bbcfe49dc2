"""The search job: settings -> strategy + evaluator + runner loop, checkpointed, resumable.

The loop asks the strategy for a batch, evaluates it on the runner, tells the results in the
order asked (so the same seed gives the same search on any runner and any number of workers),
and after every completed batch writes the checkpoint (strategy state and trials) and
trials.csv atomically. Each finished evaluation of the running batch is also saved at once
(batch.json), so a run killed mid-batch and resumed re-evaluates nothing: the restored strategy
asks the same batch again and the saved results fill it.
"""
from __future__ import annotations

import math
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from nas.budget import format_budget, parse_budget
from nas.evaluation import (Evaluator, Metrics, evaluation_config, needs_data, numeric_metrics,
                            prepare, torch_threads)
from nas.objectives import Constraint, Objective, all_satisfied, format_metric
from estimators.files import atomic_write_json
from nas.results import (clean_json, pareto_rows, read_json, summarise,
                         write_csv, columns_of)
from nas.runners import Runner, make_runner
from search_spaces import Arch, NasError, SearchSpace, get_space

CHECKPOINT_FORMAT = 1
DEFAULT_TRIALS = 100
DEFAULT_BATCH = 8
SINGLE_OBJECTIVE = ("evolution", "rl")
# Reference networks of other spaces worth showing beside a space's own (same input, same head).
FOREIGN_ANCHORS: dict[str, tuple[str, ...]] = {"mobile": ("mobilenetv2:mobilenet_v2",),
                                               "fbnet": ("mobilenetv2:mobilenet_v2",)}
TEXT_KEYS = ("error", "acc_estimator", "key", "name")
METRIC_ALIASES = {"latency": "latency_ms", "accuracy": "acc", "macs": "flops"}


class SearchError(NasError):
    """A search that cannot run as asked (bad objective, limits, run folder...)."""


@dataclass
class SearchSettings:
    """Everything that defines a search (config.json holds these)."""

    space: str
    budget: str | None = None
    strategy: str = "nsga2"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    estimator: str = "supernet"
    estimator_options: dict[str, Any] = field(default_factory=dict)
    objectives: str | None = None  # e.g. "acc,flops" or "acc:max,latency_ms:min"
    data: str = "fashion-mnist"
    data_dir: str | None = None
    val_fraction: float = 1 / 6
    device: str | None = None
    trials: int | None = None
    time_limit: float | None = None  # seconds of search (evaluation loop)
    batch_size: int | None = None
    workers: int | None = None  # 0: this process; None: one per CPU of the Ray cluster
    address: str | None = None
    seed: int = 0
    threads: int = 1
    cost_classes: int | None = None
    anchors: bool = True

    @staticmethod
    def from_dict(values: Mapping[str, Any]) -> "SearchSettings":
        names = {f.name for f in fields(SearchSettings)}
        return SearchSettings(**{k: v for k, v in values.items() if k in names})


# --- parsing -------------------------------------------------------------------------------------
def parse_objectives(text: str | None, strategy: str, device: str | None) -> list[Objective]:
    """`metric[:max|:min]` joined by commas. Default: acc up and flops (latency_ms with a
    device) down; acc alone for single-objective strategies."""
    if text is None or not text.strip():
        if strategy in SINGLE_OBJECTIVE:
            return [Objective("acc", "maximize")]
        return [Objective("acc", "maximize"),
                Objective("latency_ms" if device else "flops", "minimize")]
    objectives = []
    for part in (p.strip() for p in text.split(",")):
        metric, _, direction = part.partition(":")
        metric = METRIC_ALIASES.get(metric.strip().lower(), metric.strip())
        direction = direction.strip().lower()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", metric) or direction not in (
                "", "max", "min", "maximize", "minimize"):
            raise SearchError(f"malformed objective {part!r}: expected METRIC[:max|:min] joined "
                              f"by commas, e.g. acc,flops or acc:max,latency_ms:min")
        if not direction:
            direction = "max" if metric.startswith("acc") else "min"
        objectives.append(Objective(metric, "maximize" if direction.startswith("max")
                                    else "minimize"))
    if len({o.metric for o in objectives}) != len(objectives):
        raise SearchError(f"objectives {text!r} name a metric twice")
    return objectives


def parse_duration(text: str | float | None) -> float | None:
    """Seconds from `90`, `90s`, `15m`, `1.5h`."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*", text.lower())
    if not match:
        raise SearchError(f"malformed time limit {text!r}: expected seconds or NUMBER[s|m|h], "
                          f"e.g. 90, 15m, 1.5h")
    value = float(match.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600,
                                     None: 1}[match.group(2)]
    if value <= 0:
        raise SearchError(f"time limit {text!r} must be positive")
    return value


def new_run_dir(root: str | Path, space: str, strategy: str, seed: int) -> Path:
    """results/<space>-<strategy>-s<seed>-<timestamp>[-n], created empty."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(space).stem if space.endswith(
        (".json", ".yaml", ".yml")) else space)
    base = Path(root) / f"{stem}-{strategy}-s{seed}-{datetime.now():%Y%m%d-%H%M%S}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


# --- the job -------------------------------------------------------------------------------------
@dataclass
class SearchResult:
    run_dir: Path
    rows: list[dict[str, Any]]
    pareto: list[dict[str, Any]]
    hypervolume: float
    summary: dict[str, Any]
    anchors: list[dict[str, Any]]
    stopped: str  # why the loop ended: trials, time, exhausted

    def payload(self) -> dict[str, Any]:
        """The `--json` object of `nas search`."""
        return clean_json({"run_dir": str(self.run_dir), "pareto": self.pareto,
                           "hypervolume": self.hypervolume, "trials": len(self.rows),
                           "stopped": self.stopped})


Progress = Callable[[str], None]


class SearchJob:
    """One search run in one folder; `run()` starts it or continues it from its checkpoint."""

    def __init__(self, settings: SearchSettings, run_dir: str | Path, quiet: bool = False,
                 runner: Runner | None = None, log: Progress | None = None):
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self._runner = runner
        self.log: Progress = log or (lambda text: None if quiet else
                                     sys.stderr.write(text + "\n"))
        self.objectives = parse_objectives(settings.objectives, settings.strategy, settings.device)
        self.constraints: tuple[Constraint, ...] = parse_budget(settings.budget)
        self._validate()
        self.space: SearchSpace = get_space(settings.space)
        if settings.strategy == "differentiable":
            # The supernet of a differentiable search trains on the search's data by default.
            defaults = {"data": settings.data, "data_dir": settings.data_dir,
                        "val_fraction": settings.val_fraction}
            self.settings = settings = replace(
                settings, strategy_options={**defaults, **settings.strategy_options})
        self.eval_config = evaluation_config(
            settings.space, settings.estimator, settings.estimator_options,
            {"name": settings.data, "dir": settings.data_dir,
             "val_fraction": settings.val_fraction},
            settings.device, settings.seed, settings.threads, settings.cost_classes)

    def _validate(self) -> None:
        s = self.settings
        if s.trials is not None and s.trials < 1:
            raise SearchError(f"--trials must be at least 1, got {s.trials}")
        if s.time_limit is not None and not s.time_limit > 0:
            raise SearchError(f"--time-limit must be positive, got {s.time_limit}")
        if s.batch_size is not None and s.batch_size < 1:
            raise SearchError(f"--batch-size must be at least 1, got {s.batch_size}")
        if s.workers is not None and s.workers < 0:
            raise SearchError(f"--workers must be 0 (this process) or more, got {s.workers}")
        latency = [c for c in self.constraints if c.metric == "latency_ms"]
        latency += [o for o in self.objectives if o.metric == "latency_ms"]
        if latency and not s.device:
            raise SearchError("a latency budget or objective needs --device (a device with a "
                              "latency table or a fitted predictor)")
        if s.strategy in SINGLE_OBJECTIVE and len(self.objectives) > 1:
            raise SearchError(f"strategy {s.strategy!r} optimises one objective, got "
                              f"{[o.metric for o in self.objectives]}; use nsga2, tpe or random "
                              f"for several, or --objectives acc")

    @property
    def batch_size(self) -> int:
        s = self.settings
        return s.batch_size or max(DEFAULT_BATCH, s.workers or 0)

    @property
    def trial_limit(self) -> int | None:
        s = self.settings
        if s.trials is None and s.time_limit is None:
            return DEFAULT_TRIALS
        return s.trials

    # --- files ---------------------------------------------------------------------------------
    def config_payload(self, largest: Mapping[str, float], data: Mapping[str, Any] | None) -> dict:
        return clean_json({
            "format": CHECKPOINT_FORMAT, "settings": asdict(self.settings),
            "space": self.space.name, "strategy": self.settings.strategy,
            "strategy_options": self.settings.strategy_options, "seed": self.settings.seed,
            "objectives": [[o.metric, o.direction] for o in self.objectives],
            "constraints": [[c.metric, c.bound] for c in self.constraints],
            "batch_size": self.batch_size, "trial_limit": self.trial_limit,
            "evaluation": self.eval_config, "largest": dict(largest), "data": data,
            "command": "nas search " + shlex.join(settings_to_argv(self.settings)),
            "created": datetime.now().isoformat(timespec="seconds")})

    def _checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.json"

    def _batch_path(self) -> Path:
        return self.run_dir / "batch.json"

    def load_checkpoint(self) -> dict[str, Any] | None:
        path = self._checkpoint_path()
        return read_json(path) if path.is_file() else None

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        from nas.strategies import make_strategy

        s = self.settings
        self.run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = self.load_checkpoint()
        from nas.sampling import check_feasible

        # Costs need nothing heavy: an impossible budget fails before data or supernet work.
        evaluator = Evaluator(self.eval_config, shared={})
        check_feasible(self.space, self.constraints, evaluator.cost)
        largest = evaluator.cost(self.space.max_arch())
        if checkpoint is None:
            # Written before the data and supernet work, so that a run killed while training
            # its supernet can be resumed (the training continues from its last epoch).
            atomic_write_json(self.run_dir / "config.json", self.config_payload(largest, None))
        self.log(f"preparing {self.eval_config['estimator']} estimator on {self.space.name} "
                 f"({'resuming ' + str(self.run_dir) if checkpoint else str(self.run_dir)})")
        shared = prepare(self.eval_config, None if self.quiet else self.log)
        evaluator.shared = shared
        self.evaluator = evaluator
        evaluator.accuracy  # noqa: B018 - build it here: a bad option fails now, in one line
        data_info = None
        if needs_data(self.eval_config):
            data = shared["data"]
            data_info = {"name": data.name, "classes": data.num_classes,
                         "channels": data.in_channels, "resolution": data.resolution}
        if checkpoint is None:
            atomic_write_json(self.run_dir / "config.json", self.config_payload(largest, data_info))
        strategy = make_strategy(s.strategy, self.space, self.objectives, self.constraints,
                                 evaluator.cost, s.seed, **s.strategy_options)
        rows: list[dict[str, Any]] = []
        anchors: list[dict[str, Any]] = []
        elapsed = 0.0
        batches = 0
        if checkpoint is not None:
            strategy.load_state_dict(checkpoint["strategy"])
            rows = [_restore_nan(r) for r in checkpoint["trials"]]
            anchors = [_restore_nan(a) for a in checkpoint.get("anchors", [])]
            elapsed = float(checkpoint["elapsed_s"])
            batches = int(checkpoint["batches"])
        started_ray = False
        if self._runner is None and s.workers != 0:
            from nas.runners import init_ray

            started_ray = init_ray(s.address)
        if s.strategy == "differentiable" and s.workers != 0:
            # Before the runner's actors take the CPUs that the Tune trials need.
            self._sweep_on_tune(strategy)
        runner = self._runner or make_runner(self.eval_config, shared, s.workers, s.address,
                                             evaluator if s.workers == 0 else None)
        self.runner = runner
        bar = self._progress_bar(len(rows))
        stopped = "trials"
        try:
            start = time.perf_counter() - elapsed
            while True:
                limit = self.trial_limit
                if limit is not None and len(rows) >= limit:
                    stopped = "trials"
                    break
                if s.time_limit is not None and time.perf_counter() - start >= s.time_limit:
                    stopped = "time"
                    break
                if strategy.done:
                    stopped = "exhausted"
                    break
                size = self.batch_size if limit is None else min(self.batch_size,
                                                                 limit - len(rows))
                with torch_threads(s.threads):  # tensor strategies: same threads as workers
                    archs = strategy.ask(size)
                if not archs:
                    stopped = "exhausted"
                    break
                results = self._evaluate_batch(runner, batches, archs)
                with torch_threads(s.threads):
                    for arch, metrics in zip(archs, results):
                        strategy.tell(arch, numeric_metrics(metrics))
                        rows.append(self._row(len(rows), batches, arch, metrics))
                batches += 1
                elapsed = time.perf_counter() - start
                self._save(strategy, rows, anchors, batches, elapsed, finished=False)
                self._check_failures(rows)
                if bar is not None:
                    bar.update(len(archs))
                    bar.set_postfix_str(self._postfix(rows), refresh=True)
            if bar is not None:
                bar.close()
                bar = None
            if s.anchors:
                anchors = self._anchors(runner, evaluator, anchors)
            runner_info = runner.describe()
            self._save(strategy, rows, anchors, batches, elapsed, finished=True)
        finally:
            if bar is not None:
                bar.close()
            if self._runner is None:
                runner.close()
            if started_ray:
                import ray

                ray.shutdown()
        config = read_json(self.run_dir / "config.json")
        summary = summarise(self.run_dir, config, rows, anchors,
                            {"runner": runner_info, "search_seconds": round(elapsed, 3)})
        front = pareto_rows(rows, self.objectives, self.constraints)
        return SearchResult(self.run_dir, rows, front, summary["hypervolume"], summary, anchors,
                            stopped)

    def _sweep_on_tune(self, strategy: Any) -> None:
        """Run the differentiable strategy's cost-weight sweep as parallel Ray Tune trials, one
        search per weight, and hand the results to the strategy. Each weight's search starts
        from the same seeded warm-up and does not depend on the other weights, so the strategy
        then proposes exactly what its own sequential sweep (`--workers 0`) would have."""
        from nas.runners import tune_sweep
        from nas.strategies import differentiable as module

        if strategy.results:  # restored from a checkpoint: searched already
            return
        key = strategy._cache_key()
        if key in module._CACHE:
            return
        o = strategy.options
        params = {"space": self.settings.space, "data": o["data"], "data_dir": o["data_dir"],
                  "val_fraction": float(o["val_fraction"]), "config": strategy.config.as_dict(),
                  "constraints": [[c.metric, c.bound] for c in self.constraints],
                  "eval_config": dict(self.eval_config), "seed": self.settings.seed,
                  "threads": self.settings.threads}
        weights = [float(w) for w in o["cost_weights"]]
        self.log(f"differentiable search: {len(weights)} cost weights as Ray Tune trials")
        results, base = tune_sweep(params, weights, self.settings.workers,
                                   str((self.run_dir / "tune").resolve()), self.settings.address)
        module._CACHE[key] = {"results": results, "base": base}

    def _evaluate_batch(self, runner: Runner, batch: int, archs: Sequence[Arch]) -> list[Metrics]:
        """Evaluate `archs`, reusing results saved for this batch by a killed run and saving
        each new one as soon as it is done."""
        keys = [a.key for a in archs]
        done: dict[int, Metrics] = {}
        path = self._batch_path()
        if path.is_file():
            saved = read_json(path)
            if saved.get("batch") == batch and saved.get("keys") == keys:
                done = {int(i): m for i, m in saved["done"].items()}
        todo = [i for i in range(len(keys)) if i not in done]

        def save(index: int, metrics: Metrics) -> None:
            done[todo[index]] = metrics
            atomic_write_json(path, clean_json({"batch": batch, "keys": keys,
                                                "done": {str(k): v for k, v in done.items()}}))

        if todo:
            runner.evaluate([keys[i] for i in todo], on_result=save)
        return [self._with_cost(arch, done[i]) for i, arch in enumerate(archs)]

    def _with_cost(self, arch: Arch, metrics: Metrics) -> Metrics:
        """A worker's result with the driver's cost metrics (latency is predicted here, so
        remote workers need no device table; a lost evaluation still gets its costs)."""
        return {**self.evaluator.cost(arch), **_restore_nan(metrics)}

    def _row(self, index: int, batch: int, arch: Arch, metrics: Metrics) -> dict[str, Any]:
        row: dict[str, Any] = {"trial": index, "batch": batch, "key": arch.key, **metrics}
        row["within_budget"] = all_satisfied(self.constraints, row) if self.constraints else True
        return row

    def _save(self, strategy: Any, rows: list[dict[str, Any]], anchors: list[dict[str, Any]],
              batches: int, elapsed: float, finished: bool) -> None:
        atomic_write_json(self._checkpoint_path(), clean_json({
            "format": CHECKPOINT_FORMAT, "batches": batches, "elapsed_s": elapsed,
            "finished": finished, "strategy": strategy.state_dict(), "trials": rows,
            "anchors": anchors}))
        write_csv(self.run_dir / "trials.csv", rows, columns_of(rows))
        if anchors:
            write_csv(self.run_dir / "anchors.csv", anchors, columns_of(anchors, ("name", "key")))
        batch = self._batch_path()
        if batch.is_file():
            batch.unlink()

    def _check_failures(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Stop (keeping everything) when every evaluation so far failed: a configuration
        problem, not bad luck."""
        if rows and all(r.get("error") for r in rows):
            raise SearchError(f"every evaluation failed ({len(rows)} so far), e.g. "
                              f"{rows[0]['key']}: {rows[0]['error']}; the run is saved in "
                              f"{self.run_dir}")

    # --- anchors -------------------------------------------------------------------------------
    def _anchors(self, runner: Runner, evaluator: Evaluator,
                 done: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The space's reference networks (and related ones of other spaces), evaluated like
        the trials where the estimator can, else costs only."""
        have = {a["name"] for a in done}
        own = {name: arch for name, arch in self.space.reference_archs().items()
               if name not in have}
        out = list(done)
        if own:
            names = list(own)
            results = runner.evaluate([own[n].key for n in names])
            for name, metrics in zip(names, results):
                out.append({"name": name, "key": own[name].key,
                            **self._with_cost(own[name], metrics)})
        for ref in FOREIGN_ANCHORS.get(self.space.name, ()):
            if ref in have:
                continue
            out.append({"name": ref, **self._foreign_anchor(ref, evaluator)})
        return out

    def _foreign_anchor(self, ref: str, evaluator: Evaluator) -> dict[str, Any]:
        space_name, _, name = ref.partition(":")
        space = get_space(space_name)
        arch = space.reference_archs()[name]
        config = dict(self.eval_config, space=space_name, device=None)
        if config["estimator"] in ("proxy", "train"):
            other = Evaluator(config, evaluator.shared)
            return {"key": arch.key, **other(arch)}
        from estimators.flops import FlopsEstimator

        return {"key": arch.key, **FlopsEstimator(self.eval_config["cost_classes"])(arch)}

    # --- progress ------------------------------------------------------------------------------
    def _progress_bar(self, initial: int):
        if self.quiet:
            return None
        from tqdm import tqdm

        return tqdm(total=self.trial_limit, initial=initial, desc="search", unit="arch",
                    file=sys.stderr, dynamic_ncols=True, leave=False)

    def _postfix(self, rows: Sequence[Mapping[str, Any]]) -> str:
        front = pareto_rows(rows, self.objectives, self.constraints)
        parts = [f"front {len(front)}"]
        for objective in self.objectives:
            values = [float(r[objective.metric]) for r in front]
            if values:
                best = max(values) if objective.direction == "maximize" else min(values)
                parts.append(f"{objective.metric} {format_metric(objective.metric, best)}")
        return ", ".join(parts)


def _restore_nan(metrics: Mapping[str, Any]) -> Metrics:
    """JSON null back to NaN for numeric metrics."""
    return {k: (math.nan if v is None and k not in TEXT_KEYS else v) for k, v in metrics.items()}


def settings_to_argv(settings: SearchSettings) -> list[str]:
    """The command-line options that reproduce `settings` (for config.json)."""
    defaults = SearchSettings(space=settings.space)
    argv = ["--space", settings.space]
    simple = {"budget": "--budget", "strategy": "--strategy", "estimator": "--estimator",
              "objectives": "--objectives", "data": "--data", "data_dir": "--data-dir",
              "device": "--device", "trials": "--trials", "time_limit": "--time-limit",
              "batch_size": "--batch-size", "workers": "--workers", "address": "--address",
              "seed": "--seed", "threads": "--threads", "cost_classes": "--cost-classes",
              "val_fraction": "--val-fraction"}
    for name, flag in simple.items():
        value = getattr(settings, name)
        if value != getattr(defaults, name) and value is not None:
            argv += [flag, str(value)]
    for name, value in {**settings.strategy_options, **settings.estimator_options}.items():
        argv += ["--option", f"{name}={json_value(value)}"]
    if not settings.anchors:
        argv.append("--no-anchors")
    return argv


def json_value(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)


def resume_settings(run_dir: str | Path) -> SearchSettings:
    """The settings a run folder was started with."""
    config = read_json(Path(run_dir) / "config.json")
    if config.get("format") != CHECKPOINT_FORMAT or "settings" not in config:
        raise SearchError(f"{run_dir}/config.json is not a search run of this version")
    return SearchSettings.from_dict(config["settings"])


def format_front(result: SearchResult, objectives: Sequence[Objective],
                 constraints: Sequence[Constraint]) -> str:
    """The Pareto table and a summary, as `nas search` prints it."""
    from nas.results import display_columns
    from nas.table import format_table

    s = result.summary
    head = (f"Pareto front of {s['space']}: {len(result.pareto)} of {len(result.rows)} trials "
            f"({s['within_budget']} usable within budget {format_budget(tuple(constraints))}); "
            f"strategy {s['strategy']}, estimator {s['estimator']}, seed {s['seed']}")
    table = format_table(result.pareto, display_columns(objectives, result.pareto)) \
        if result.pareto else "(no usable trial within the budget)"
    return (f"{head}\n\n{table}\n\nhypervolume {result.hypervolume:.4f} "
            f"(stopped: {result.stopped})\nresults: {result.run_dir}")
