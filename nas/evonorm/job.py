"""`nas evolve-layer`: the EvoNorm layer search (Liu et al. 2020) in one run folder.

First the four reference layers (BN-ReLU first: its protocol values are the run's baselines,
then GN-ReLU, EvoNorm-B0, EvoNorm-S0) are measured by every protocol and the fitness, through
the same plug and the same code as the candidates (anchors.csv). Then rounds of `batch`
candidates: while the population holds fewer than `population` layers that passed, the
reference layers (with `initial="references"`, the default) and then random valid layers;
after that, mutations of a tournament's Pareto parent. Each candidate runs the
protocols and, if it passes them, the fitness; those that pass join the population, whose
oldest member then leaves (aging). The budget, `candidates`, counts every layer drawn:
rejected ones and repeats (a layer drawn again reuses its earlier result) included. After the
budget, the `finalists` best layers are retrained from other seeds and the pick is made on
those (`finalists.py`).

The run folder is a search's: config.json, checkpoint.json (the source of truth, written after
every round), trials.csv (one row per candidate), anchors.csv, pareto.csv/md/png and
summary.json (with the protocols' shares and the time they saved), plus fitness.png and
finalists.csv.
`batch.json` keeps each finished evaluation of the running round, so a kill loses at most the
candidates being evaluated; `--resume` (or `run_layer_search` on the same folder) continues.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from estimators.data import DataSplits, load_data
from nas.checkpoint import CHECKPOINT_FORMAT, Checkpoint
from nas.evaluation import evaluation_config
from nas.evonorm import evolution, finalists
from nas.evonorm.fitness import acc_columns
from nas.evonorm.plug import eval_arch, plugged_network, register_eval_spaces
from nas.evonorm.report import plot_fitness, protocol_summary
from nas.evonorm.settings import LayerSearchError, LayerSearchSettings
from nas.evonorm.workers import LayerEvaluator
from nas.objectives import Objective
from nas.report import summarise
from nas.results import clean_json, read_json
from nas.run_folder import started_run
from nas.run_lock import writing
from search_spaces import first_line, get_space
from search_spaces.layer_graph import REFERENCES, SPACE_NAME

COMMAND = "nas evolve-layer"
STRATEGY = "evolution-pareto"
REFERENCE_ORDER = ("bn_relu", "gn_relu", "evonorm_b0", "evonorm_s0")
MEASURES = ("stability", "stability_ratio", "stability_seconds", "quality_acc",
            "quality_seconds", "fitness_seconds")
Log = Callable[[str], None]


class LayerSearchJob:
    """One layer search in one folder; `run()` starts it or continues it."""

    def __init__(self, settings: LayerSearchSettings, run_dir: str | Path, log: Log | None = None):
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.log: Log = log or (lambda text: sys.stderr.write(text + "\n"))
        register_eval_spaces(settings.space_files)
        for key in settings.archs:
            eval_arch(key)  # a bad key or norm fails now, before anything is written
        self.space = get_space(SPACE_NAME)
        self.columns = acc_columns(settings)
        self.objectives = [Objective(c, "maximize") for c in self.columns]

    # --- setup ---------------------------------------------------------------------------------
    def _data(self) -> DataSplits:
        s = self.settings
        return load_data(s.data, s.data_dir, val_fraction=s.val_fraction, seed=s.seed,
                         resolution=s.resolution)

    def _check_networks(self, data: DataSplits) -> None:
        """Every evaluation network runs on the data with a layer plugged in."""
        import torch

        for key in self.settings.archs:
            model = plugged_network(key, REFERENCES["bn_relu"], data.num_classes,
                                    data.in_channels, self.settings.seed)
            probe = torch.zeros(2, data.in_channels, data.resolution, data.resolution)
            try:
                with torch.no_grad():
                    model(probe)
            except RuntimeError as exc:
                raise LayerSearchError(f"evaluation architecture {key} cannot run on "
                                       f"{data.resolution}x{data.resolution} inputs "
                                       f"({first_line(exc, 100)}); change --resolution") from None

    def _config(self, data: DataSplits) -> dict[str, Any]:
        s = self.settings
        evaluation = evaluation_config(
            SPACE_NAME, "train", {"epochs": s.epochs, "batch_size": s.batch_size, "lr": s.lr,
                                  "train_images": s.train_images, "eval_images": s.eval_images,
                                  "resolution": s.resolution},
            {"name": s.data, "dir": s.data_dir, "val_fraction": s.val_fraction}, None, s.seed,
            s.threads)
        return clean_json({
            "format": CHECKPOINT_FORMAT, "settings": s.to_json(), "space": SPACE_NAME,
            "strategy": STRATEGY, "strategy_options": {}, "seed": s.seed,
            "objectives": [o.to_json() for o in self.objectives], "constraints": [],
            "evaluation": evaluation, "archs": dict(zip(self.columns, s.archs)),
            "largest": {}, "command": COMMAND,
            "data": {"name": data.name, "classes": data.num_classes,
                     "channels": data.in_channels, "resolution": data.resolution},
            "created": datetime.now().isoformat(timespec="seconds")})

    def _check_resume(self) -> None:
        differ = self.settings.changes_to_run(self.run_dir, COMMAND, LayerSearchError)
        if differ:
            raise LayerSearchError(f"{self.run_dir} holds a `{COMMAND}` run with other settings "
                                   f"({'; '.join(differ)}); choose another --out")

    # --- the run -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        data = self._data()
        self._check_networks(data)
        with started_run(self.run_dir, self._check_resume, lambda: self._config(data)):
            return self._run(data)

    def _run(self, data: DataSplits) -> dict[str, Any]:
        s = self.settings
        checkpoint = Checkpoint(self.run_dir)
        saved = checkpoint.load()
        state: dict[str, Any] = {"population": [], "baselines": None}
        rows: list[dict[str, Any]] = []
        anchors: list[dict[str, Any]] = []
        rounds, elapsed = 0, 0.0
        if saved is not None:
            state = dict(saved["strategy"])
            rows, anchors, rounds, elapsed = checkpoint.restore(saved, _State(state))
        began = time.perf_counter()
        evaluator = LayerEvaluator(s, data)

        def save(finished: bool = False) -> None:
            checkpoint.save(state, rows, anchors, rounds, elapsed + time.perf_counter() - began,
                            finished=finished)

        try:
            if len(anchors) < len(REFERENCE_ORDER):
                anchors = self._references(evaluator, anchors, state, save)
            while len(rows) < s.candidates:
                self._round(evaluator, checkpoint, rows, state, rounds)
                rounds += 1
                save()
            if s.finalists:
                chosen = evolution.ranked(rows, self.columns)[:s.finalists]
                self.log(f"retraining {len(chosen)} finalists from seeds "
                         f"{', '.join(map(str, s.finalist_seeds))}")
                finalists.retrain(evaluator, chosen, self.columns, s.finalist_seeds,
                                  state.setdefault("finalists", {}), save)
        finally:
            evaluator.close()
        save(finished=True)
        return self._finish(rows, anchors, state, elapsed + time.perf_counter() - began)

    def _references(self, evaluator: LayerEvaluator, anchors: list[dict[str, Any]],
                    state: dict[str, Any], save: Callable[..., None]) -> list[dict[str, Any]]:
        """Measure the reference layers not measured yet: BN-ReLU alone first (its values are
        the protocols' baselines), then the others (in parallel with workers)."""
        done = {a["name"]: a for a in anchors}

        def keep(index: int, result: Mapping[str, Any]) -> None:
            name = REFERENCE_ORDER[index]
            done[name] = self._anchor(name, result)
            anchors[:] = [done[n] for n in REFERENCE_ORDER if n in done]
            if name == "bn_relu":
                state["baselines"] = _baselines(done[name])
            save()
            self.log(f"reference {name}: " + _accuracies(done[name], self.columns))

        if "bn_relu" not in done:
            evaluator([(0, REFERENCES["bn_relu"], None, True)], keep)
        if done["bn_relu"].get("error"):
            raise LayerSearchError(f"BN-ReLU, whose values the protocols compare with, fails on "
                                   f"these settings ({done['bn_relu']['error']})")
        evaluator([(i, REFERENCES[n], state["baselines"], True)
                   for i, n in enumerate(REFERENCE_ORDER) if n not in done], keep)
        return anchors

    def _anchor(self, name: str, result: Mapping[str, Any]) -> dict[str, Any]:
        row = {"name": name, "key": REFERENCES[name],
               **{c: evolution.measured(result.get(c)) for c in (*self.columns, *MEASURES)}}
        stage = result.get("rejected_by")
        row["passes_protocols"] = 0 if stage in ("stability", "quality") else 1
        row["error"] = result.get("fitness_error") or None
        return row

    def _round(self, evaluator: LayerEvaluator, checkpoint: Checkpoint,
               rows: list[dict[str, Any]], state: dict[str, Any], round_index: int) -> None:
        """Propose, evaluate and add one round of candidates."""
        s = self.settings
        population = [_origin(rows[t], rows) for t in state["population"]]
        full = len(population) >= s.population
        first = len(rows)
        proposals = []
        for trial in range(first, min(first + s.batch, s.candidates)):
            if s.initial == "references" and trial < len(REFERENCE_ORDER):
                proposals.append((trial, REFERENCES[REFERENCE_ORDER[trial]], -1))
                continue
            rng = evolution.candidate_rng(s.seed, trial)
            arch, parent = evolution.propose(self.space, population, full, self.columns,
                                             s.tournament_size(), rng)
            proposals.append((trial, arch.key, parent))
        seen = {r["key"]: r for r in rows if _is_nan(r["repeat_of"])}  # first draws
        fresh = list(dict.fromkeys(k for _, k, _ in proposals if k not in seen))
        done = checkpoint.saved_batch(round_index, fresh)

        def keep(index: int, result: Mapping[str, Any]) -> None:
            done[index] = dict(result)
            checkpoint.save_batch(round_index, fresh, done)

        evaluator([(i, k, state["baselines"], False) for i, k in enumerate(fresh)
                   if i not in done], keep)
        results = {k: done[i] for i, k in enumerate(fresh)}
        for trial, key, parent in proposals:
            if key in seen:
                row = self._repeat(trial, round_index, seen[key], parent)
            else:
                row = self._row(trial, round_index, key, parent, results[key])
                seen[key] = row
            rows.append(row)
            if evolution.passed(_origin(row, rows), self.columns):
                state["population"] = evolution.age(state["population"], trial, s.population)
            self.log(self._line(row, rows, len(state["population"])))

    def _row(self, trial: int, round_index: int, key: str, parent: int,
             result: Mapping[str, Any]) -> dict[str, Any]:
        """A candidate's row from its evaluation (read back from batch.json after a kill: JSON
        null is NaN again)."""
        return {"trial": trial, "batch": round_index, "key": key,
                **{c: evolution.measured(result.get(c)) for c in (*self.columns, *MEASURES)},
                "parent": parent, "repeat_of": math.nan, "error": result.get("reason") or None}

    def _repeat(self, trial: int, round_index: int, first: Mapping[str, Any],
                parent: int) -> dict[str, Any]:
        """A layer drawn again: nothing runs (every candidate trains from the same seed, so
        its result would be the first draw's). The row points to the first draw
        (`repeat_of`) and repeats its rejection, if any; its measurements are empty, so a
        layer counts once in the front. As a population member it has the first draw's
        accuracies and its own age."""
        return {"trial": trial, "batch": round_index, "key": first["key"],
                **{c: math.nan for c in self.columns},
                **{m: 0.0 if m.endswith("_seconds") else math.nan for m in MEASURES},
                "parent": parent, "repeat_of": first["trial"], "error": first["error"]}

    def _line(self, row: Mapping[str, Any], rows: list[dict[str, Any]], population: int) -> str:
        s = self.settings
        first = _origin(row, rows)
        head = f"candidate {row['trial'] + 1}/{s.candidates}"
        if first is not row:
            head += f" (repeat of candidate {first['trial'] + 1})"
        what = f"rejected by {first['error']}" if first.get("error") else \
            _accuracies(first, self.columns)
        return f"{head}: {what}; population {population}/{s.population}"

    def _finish(self, rows: list[dict[str, Any]], anchors: list[dict[str, Any]],
                state: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        config = read_json(self.run_dir / "config.json")
        protocols = protocol_summary(rows, self.columns)
        extra = {"protocols": protocols, "baselines": state["baselines"],
                 "search_seconds": round(seconds, 3), "kept": ["protocols", "baselines"]}
        with writing(self.run_dir), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "No artists with labels", UserWarning)
            summary = summarise(self.run_dir, config, rows, anchors, extra)
            plot_fitness(self.run_dir / "fitness.png", rows, anchors, self.columns)
        top = evolution.best(rows, self.columns)
        retrained = self._finalists_table(rows, state)
        if retrained and not math.isnan(retrained[0][finalists.RETRAINED]):
            top = rows[retrained[0]["trial"]]
        front = evolution.pareto_members([r for r in rows if evolution.passed(r, self.columns)],
                                         self.columns)
        return {"run_dir": str(self.run_dir), "trials": len(rows), "columns": self.columns,
                "best": dict(top) if top else None, "front": [dict(r) for r in front],
                "finalists": retrained, "anchors": anchors, "protocols": protocols,
                "summary": summary}

    def _finalists_table(self, rows: list[dict[str, Any]],
                         state: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The retrained finalists, best first, also written to finalists.csv."""
        s = self.settings
        if not s.finalists:
            return []
        import pandas as pd

        chosen = evolution.ranked(rows, self.columns)[:s.finalists]
        table = finalists.table(chosen, self.columns, s.finalist_seeds,
                                state.get("finalists", {}))
        with writing(self.run_dir):
            pd.DataFrame(table).to_csv(self.run_dir / "finalists.csv", index=False)
        return table


class _State:
    """`Checkpoint.restore` loads a strategy's state; this one is plain JSON, kept as is."""

    def __init__(self, state: dict[str, Any]):
        self.state = state

    def load_state_dict(self, value: Mapping[str, Any]) -> None:
        if not isinstance(value.get("population"), list) or "baselines" not in value:
            raise KeyError("population")


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _origin(row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The first draw of the row's layer (the row itself unless it is a repeat)."""
    return row if _is_nan(row["repeat_of"]) else rows[int(row["repeat_of"])]


def _baselines(row: Mapping[str, Any]) -> dict[str, float]:
    """BN-ReLU's protocol values that were measured: what candidates are compared with."""
    values = {"stability": row["stability"], "quality": row["quality_acc"]}
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and math.isfinite(v)}


def _accuracies(row: Mapping[str, Any], columns: list[str]) -> str:
    return ", ".join(f"{c} {row[c]:.2f} %" for c in columns)


def run_layer_search(settings: LayerSearchSettings, out: str | Path | None = None, *,
                     results: str | Path = "results", log: Log | None = None) -> dict[str, Any]:
    """Run the layer search of `settings` in folder `out` (default: a new folder under
    `results`), or continue the one there (same settings except candidates, workers,
    address and threads). Returns the run folder, the rows' count, the best layer (highest
    mean accuracy), the Pareto front, the anchors and the protocols' summary."""
    from nas.run_folder import new_run_dir

    run_dir = Path(out) if out is not None else new_run_dir(results, SPACE_NAME, "evolution",
                                                            settings.seed)
    return LayerSearchJob(settings, run_dir, log=log).run()


__all__ = ["COMMAND", "REFERENCE_ORDER", "LayerSearchJob", "run_layer_search"]
