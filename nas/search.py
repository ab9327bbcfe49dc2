"""The search job: settings -> strategy + evaluator + runner loop, checkpointed, resumable.

The loop asks the strategy for a batch, evaluates it on the runner, tells the results in the
order asked (so the same seed gives the same search on any runner and any number of workers),
and after every completed batch writes the checkpoint (strategy state and trials) and
trials.csv atomically. Each finished evaluation of the running batch is also saved at once
(batch.json), so a run killed mid-batch and resumed re-evaluates nothing: the restored strategy
asks the same batch again and the saved results fill it.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from estimators.progress import Log
from estimators.registry import get_estimator
from nas.budget import parse_budget
from nas.checkpoint import CHECKPOINT_FORMAT, Checkpoint, restore_nan, write_json
from nas.evaluation import (
    Evaluator,
    Metrics,
    available_metrics,
    check_accuracy_estimator,
    evaluation_config,
    needs_data,
    numeric_metrics,
    prepare,
    proxy_costs,
    torch_threads,
)
from nas.objectives import Constraint, all_satisfied
from nas.pareto import pareto_rows
from nas.report import front_progress, progress_bar, summarise
from nas.results import clean_json, read_json
from nas.run_lock import LOCK_FILE, run_lock, writing
from nas.runners import Runner, make_runner
from nas.search_settings import (
    DEFAULT_BATCH,
    DEFAULT_TRIALS,
    SearchError,
    SearchSettings,
    check_metric_options,
    check_metrics,
    check_objectives,
    check_settings,
    check_strategy_options,
    parse_objectives,
    settings_to_argv,
    strategy_failure,
)
from search_spaces import Arch, NasError, SearchSpace, get_space

# Reference networks of other spaces worth showing beside a space's own (same input, same head).
FOREIGN_ANCHORS: dict[str, tuple[str, ...]] = {"mobile": ("mobilenetv2:mobilenet_v2",),
                                               "fbnet": ("mobilenetv2:mobilenet_v2",)}
# Test hook: with NAS_TEST_KILL_AFTER_TRIALS=N in the environment, the search process SIGKILLs
# itself as soon as the N-th trial of the run is saved (batch.json), a kill at an exact point
# (tests/nas/test_search_resume.py). Read here only.
KILL_AFTER_TRIALS = "NAS_TEST_KILL_AFTER_TRIALS"


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




class SearchJob:
    """One search run in one folder; `run()` starts it or continues it from its checkpoint.

    Every setting is checked when the job is made (values, objectives against the metrics the
    evaluations report, the strategy and its options, the estimator's options and table, the
    device, the budget), before `run()` writes anything."""

    def __init__(self, settings: SearchSettings, run_dir: str | Path, quiet: bool = False,
                 runner: Runner | None = None, log: Log | None = None):
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.require_new = False  # `nas search --out`: refuse a folder that holds a run
        self.made_dir = False  # the folder was made for this run (see `_undo`)
        self._runner = runner
        self.log: Log = log or (lambda text: None if quiet else
                                     sys.stderr.write(text + "\n"))
        kill_after = os.environ.get(KILL_AFTER_TRIALS)
        self._kill_after = int(kill_after) if kill_after else None
        check_settings(settings)
        self.objectives = parse_objectives(settings.objectives, settings.strategy, settings.device)
        self.constraints: tuple[Constraint, ...] = parse_budget(settings.budget)
        check_objectives(settings, self.objectives, self.constraints)
        self.space: SearchSpace = get_space(settings.space)
        if settings.strategy == "differentiable":
            # The supernet of a differentiable search trains on the search's data by default.
            defaults = {"data": settings.data, "data_dir": settings.data_dir,
                        "val_fraction": settings.val_fraction}
            self.settings = settings = replace(
                settings, strategy_options={**defaults, **settings.strategy_options})
        from nas.strategies import get_strategy
        from nas.strategies.options import cost_metric_names

        self.eval_config = evaluation_config(
            settings.space, settings.estimator, settings.estimator_options,
            {"name": settings.data, "dir": settings.data_dir,
             "val_fraction": settings.val_fraction},
            settings.device, settings.seed, settings.threads, settings.cost_classes,
            proxy_costs(cost_metric_names(get_strategy(settings.strategy).options_type,
                                          settings.strategy_options)))
        available = available_metrics(self.eval_config)
        check_metrics(self.objectives, self.constraints, available, settings.estimator)
        # Costs need nothing heavy: a bad device or an impossible budget fails here.
        from nas.sampling import check_feasible

        self.evaluator = Evaluator(self.eval_config, shared={})
        check_feasible(self.space, self.constraints, self.evaluator.cost)
        check_metric_options(settings.strategy, settings.strategy_options, available,
                             list(self.evaluator.cost(self.space.min_arch())))
        self._make_strategy()  # a bad strategy option fails now
        check_accuracy_estimator(self.eval_config)  # e.g. a table estimator's CSV and column

    def _make_strategy(self) -> Any:
        from nas.strategies import get_strategy, make_strategy

        s = self.settings
        check_strategy_options(s.strategy, get_strategy(s.strategy).defaults, s.strategy_options)
        try:
            return make_strategy(s.strategy, self.space, self.objectives, self.constraints,
                                 self.evaluator.cost, s.seed, **s.strategy_options)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise strategy_failure(s.strategy, exc) from None

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
            "format": CHECKPOINT_FORMAT, "settings": self.settings.to_json(),
            "space": self.space.name, "strategy": self.settings.strategy,
            "strategy_options": self.settings.strategy_options, "seed": self.settings.seed,
            "objectives": [o.to_json() for o in self.objectives],
            "constraints": [c.to_json() for c in self.constraints],
            "batch_size": self.batch_size, "trial_limit": self.trial_limit,
            "evaluation": self.eval_config, "largest": dict(largest), "data": data,
            "command": "nas search " + shlex.join(settings_to_argv(self.settings)),
            "created": datetime.now().isoformat(timespec="seconds")})

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.run_dir)

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        """Run (or continue) the search, holding the run folder's lock throughout: a second
        search on the same folder fails at once and writes nothing."""
        made = self.made_dir or not self.run_dir.exists()
        with writing(self.run_dir):
            self.run_dir.mkdir(parents=True, exist_ok=True)

        def check() -> None:
            if self.require_new and (self.run_dir / "config.json").exists():
                raise SearchError(f"{self.run_dir} already holds a run; continue it with "
                                  f"--resume {self.run_dir}, or choose another --out")

        with run_lock(self.run_dir, check):
            fresh = not (self.run_dir / "config.json").exists()
            try:
                return self._run()
            except NasError:
                if fresh:
                    self._undo(made)
                raise

    def _undo(self, made: bool) -> None:
        """A mistake found before anything was computed (data that cannot be read, a Ray
        cluster that cannot be reached): remove what this run wrote, so that the corrected
        command runs as a new search. Anything evaluated (a checkpoint, a batch) stays."""
        written = {p.name for p in self.run_dir.iterdir()}
        if not written <= {"config.json", LOCK_FILE}:
            return
        (self.run_dir / "config.json").unlink(missing_ok=True)
        if made:
            (self.run_dir / LOCK_FILE).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()

    def _run(self) -> SearchResult:
        s = self.settings
        checkpoint = self.checkpoint
        saved = checkpoint.load()
        evaluator = self.evaluator
        largest = evaluator.cost(self.space.max_arch())
        if saved is None:
            # Written before the data and supernet work, so that a run killed while training
            # its supernet can be resumed (the training continues from its last epoch).
            write_json(self.run_dir, self.run_dir / "config.json",
                       self.config_payload(largest, None))
        self.log(f"preparing {self.eval_config['estimator']} estimator on {self.space.name} "
                 f"({'resuming ' + str(self.run_dir) if saved else str(self.run_dir)})")
        shared = prepare(self.eval_config, None if self.quiet else self.log)
        evaluator.shared = shared
        evaluator.accuracy  # noqa: B018 - build it here: a bad option fails now, in one line
        data_info = None
        if needs_data(self.eval_config):
            data = shared["data"]
            data_info = {"name": data.name, "classes": data.num_classes,
                         "channels": data.in_channels, "resolution": data.resolution}
        if saved is None:
            write_json(self.run_dir, self.run_dir / "config.json",
                       self.config_payload(largest, data_info))
        strategy = self._make_strategy()
        rows: list[dict[str, Any]] = []
        anchors: list[dict[str, Any]] = []
        elapsed = 0.0
        batches = 0
        if saved is not None:
            rows, anchors, batches, elapsed = checkpoint.restore(saved, strategy)
        started_ray = False
        if self._runner is None and s.workers != 0:
            from nas.runners import init_ray

            started_ray = init_ray(s.address)
        # Before the runner's actors take the CPUs that the strategy's own work may need.
        self._prepare_strategy(strategy)
        runner = self._runner or make_runner(self.eval_config, shared, s.workers, s.address,
                                             evaluator if s.workers == 0 else None)
        self.runner = runner
        bar = None if self.quiet else progress_bar(self.trial_limit, len(rows))
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
                results = self._evaluate_batch(runner, batches, archs, len(rows))
                with torch_threads(s.threads):
                    for arch, metrics in zip(archs, results):
                        strategy.tell(arch, numeric_metrics(metrics))
                        rows.append(self._row(len(rows), batches, arch, metrics))
                batches += 1
                elapsed = time.perf_counter() - start
                checkpoint.save(strategy.state_dict(), rows, anchors, batches, elapsed,
                                finished=False)
                self._check_failures(rows)
                if bar is not None:
                    bar.update(len(archs))
                    bar.set_postfix_str(front_progress(rows, self.objectives, self.constraints),
                                        refresh=True)
            if bar is not None:
                bar.close()
                bar = None
            if s.anchors:
                anchors = self._anchors(runner, evaluator, anchors)
            runner_info = runner.describe()
            checkpoint.save(strategy.state_dict(), rows, anchors, batches, elapsed,
                            finished=True)
        finally:
            if bar is not None:
                bar.close()
            if self._runner is None:
                runner.close()
            if started_ray:
                import ray

                ray.shutdown()
        config = read_json(self.run_dir / "config.json")
        with writing(self.run_dir):
            summary = summarise(self.run_dir, config, rows, anchors,
                                {"runner": runner_info, "search_seconds": round(elapsed, 3)})
        front = pareto_rows(rows, self.objectives, self.constraints)
        return SearchResult(self.run_dir, rows, front, summary["hypervolume"], summary, anchors,
                            stopped)

    def _prepare_strategy(self, strategy: Any) -> None:
        """The strategy's own work before the search (the differentiable strategy's cost-weight
        sweep as Ray Tune trials), given what it needs of the job."""
        from nas.strategies.base import StrategyContext

        s = self.settings
        strategy.prepare(StrategyContext(
            run_dir=self.run_dir, space=s.space, constraints=self.constraints,
            eval_config=self.eval_config, seed=s.seed, threads=s.threads, workers=s.workers,
            address=s.address, log=self.log))

    def _evaluate_batch(self, runner: Runner, batch: int, archs: Sequence[Arch],
                        first: int) -> list[Metrics]:
        """Evaluate `archs` (trials `first`, `first` + 1...), reusing results saved for this
        batch by a killed run and saving each new one as soon as it is done."""
        keys = [a.key for a in archs]
        done = self.checkpoint.saved_batch(batch, keys)
        todo = [i for i in range(len(keys)) if i not in done]

        def save(index: int, metrics: Metrics) -> None:
            done[todo[index]] = metrics
            self.checkpoint.save_batch(batch, keys, done)
            if self._kill_after is not None and first + len(done) == self._kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

        if todo:
            runner.evaluate([keys[i] for i in todo], on_result=save)
        return [self._with_cost(arch, done[i]) for i, arch in enumerate(archs)]

    def _with_cost(self, arch: Arch, metrics: Metrics) -> Metrics:
        """A worker's result with the driver's cost metrics (latency is predicted here, so
        remote workers need no device table; a lost evaluation still gets its costs)."""
        return {**self.evaluator.cost(arch), **restore_nan(metrics)}

    def _row(self, index: int, batch: int, arch: Arch, metrics: Metrics) -> dict[str, Any]:
        row: dict[str, Any] = {"trial": index, "batch": batch, "key": arch.key, **metrics}
        row["within_budget"] = all_satisfied(self.constraints, row) if self.constraints else True
        return row

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
        if not get_estimator(config["estimator"]).space_bound:  # it can score other spaces
            other = Evaluator(config, evaluator.shared)
            return {"key": arch.key, **other(arch)}
        from estimators.flops import FlopsEstimator

        return {"key": arch.key, **FlopsEstimator(self.eval_config["cost_classes"])(arch)}
