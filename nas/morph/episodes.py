"""What EAS (`nas grow`) and N2N (`nas compress`) share: a search that edits a trained network
episode by episode. Each episode the meta-controller's actors choose the edits of `children`
children of one parent network; each child is made on the driver from the parent's weights,
trained briefly (in this process or as Ray tasks), and its reward updates the controller by
REINFORCE with a moving-average baseline.

The run folder is a search's (config.json, checkpoint.json, trials.csv, pareto.csv/md/png,
summary.json, anchors.csv with the start or teacher network) plus `children/` (each child's
model before training `<trial>.init.pt` and after `<trial>.pt`). A kill loses at most the
children being trained: `episode.json` keeps the episode's decisions and every finished child.
"""
from __future__ import annotations

import math
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import torch

from estimators.checkpoints import arch_of, load_model, read_model_file
from estimators.data import DataSplits, load_data
from estimators.progress import Log
from estimators.train import TrainRecipe
from nas.budget import parse_budget
from nas.checkpoint import CHECKPOINT_FORMAT, Checkpoint, write_json
from nas.evaluation import Evaluator, evaluation_config
from nas.morph.children import make_child
from nas.morph.controller import Decision, MetaController, parse_transform
from nas.morph.settings import EditSettings, MorphError
from nas.morph.workers import ChildTrainer
from nas.objectives import Objective, all_satisfied
from nas.report import summarise
from nas.results import clean_json, read_json
from nas.run_folder import started_run
from nas.run_lock import writing
from search_spaces import Arch, NasError, get_space

EPISODE_FILE = "episode.json"
RESAMPLES = 100  # tries per child to find one that differs from its parent and fits the budget


@dataclass(frozen=True)
class Brood:
    """An episode's children: edits of `parent` (the model file `parent_path`, trial
    `parent_trial`, -1 for the start or teacher) after the fixed edits `prefix`, drawn by the
    actors in `steps` order."""

    parent: Arch
    parent_path: str
    parent_trial: int
    steps: tuple[str, ...]
    prefix: tuple[str, ...] = ()


class EditJob(ABC):
    """One run in one folder; `run()` starts it or continues it. Subclasses name the actors,
    the model the children come from, how an episode's children are drawn and rewarded."""

    actors: ClassVar[dict[str, str]]
    strategy: ClassVar[str]  # "eas" or "n2n" (the run's strategy is "<it>-<policy>")
    command: ClassVar[str]
    anchor_name: ClassVar[str]  # "start" or "teacher"

    def __init__(self, settings: EditSettings, run_dir: str | Path, log: Log | None = None):
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.log: Log = log or (lambda text: sys.stderr.write(text + "\n"))
        self.constraints = parse_budget(settings.budget)
        self.space_name, classes = self._source_space()
        self.space = get_space(self.space_name)
        self.objectives = (Objective("acc", "maximize"), Objective(self.cost_metric, "minimize"))
        # as given (a space file's path stays a path, so the run reads back anywhere)
        space_ref = settings.space if settings.space is not None else self.space_name
        self.eval_config = evaluation_config(
            space_ref, "train", {"epochs": self.recipe.epochs,
                                 "train_images": settings.train_images},
            {"name": settings.data, "dir": settings.data_dir,
             "val_fraction": settings.val_fraction}, settings.device, settings.seed,
            settings.threads, cost_classes=classes)
        # costs of the networks as they are (the data's classes in the head), not with the
        # space's ImageNet head as `nas search` counts them: N2N's compression is a ratio
        self.cost = Evaluator(self.eval_config, shared={}).cost

    # --- what a subclass says ----------------------------------------------------------------
    @property
    @abstractmethod
    def recipe(self) -> TrainRecipe:
        """How each child is trained."""

    @property
    def cost_metric(self) -> str:
        return "latency_ms" if any(c.metric == "latency_ms" for c in self.constraints) \
            else "flops"

    @abstractmethod
    def source_model(self, data: DataSplits) -> Path:
        """The trained model the run starts from (trained here first if need be)."""

    @abstractmethod
    def brood(self, episode: int, rows: list[dict[str, Any]],
              source: Mapping[str, Any]) -> Brood:
        """Where the episode's children come from: their parent and the actors' steps."""

    @abstractmethod
    def reward(self, row: Mapping[str, Any], source: Mapping[str, Any]) -> float:
        """A trained child's reward."""

    def distill(self, source: Mapping[str, Any]) -> dict[str, Any] | None:
        """The teacher each child learns from, if any: {teacher, weight, temperature}."""
        return None

    # --- setup ---------------------------------------------------------------------------------
    def _source_space(self) -> tuple[str, int]:
        """The space of the start/teacher network and its number of classes."""
        s = self.settings
        given = str(getattr(s, s.SOURCE))
        path = Path(given).expanduser()
        if path.is_file():
            payload = read_model_file(path)
            name = arch_of(payload, path).search_space.name
            if s.space is not None and get_space(s.space).name != name:
                raise MorphError(f"{path} holds a network of space {name}, not {s.space}")
            return name, int(payload["num_classes"])
        if s.SOURCE != "start":
            raise MorphError(f"{s.SOURCE} model {given} does not exist")
        if s.space is None:
            raise MorphError(f"--start {given!r} is not a model file; give --space for a key")
        space = get_space(s.space)
        space.parse(given)  # a bad key fails now
        data = load_data(s.data, s.data_dir, val_fraction=s.val_fraction, seed=s.seed)
        return space.name, data.num_classes

    def _config(self) -> dict[str, Any]:
        return clean_json({
            "format": CHECKPOINT_FORMAT, "settings": self.settings.to_json(),
            "space": self.space_name, "strategy": f"{self.strategy}-{self.settings.policy}",
            "strategy_options": {}, "seed": self.settings.seed,
            "objectives": [o.to_json() for o in self.objectives],
            "constraints": [c.to_json() for c in self.constraints],
            "evaluation": self.eval_config, "inherit": True,
            "largest": self.cost(self.space.max_arch()), "data": None,
            "command": self.command, "created": datetime.now().isoformat(timespec="seconds")})

    def _check_resume(self) -> None:
        differ = self.settings.changes_to_run(self.run_dir, self.command, MorphError)
        if differ:
            raise MorphError(f"{self.run_dir} holds a `{self.command}` run with other settings "
                             f"({'; '.join(differ)}); choose another --out")

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        with started_run(self.run_dir, self._check_resume, self._config):
            return self._run()

    def _run(self) -> dict[str, Any]:
        s = self.settings
        data = load_data(s.data, s.data_dir, val_fraction=s.val_fraction, seed=s.seed)
        path = self.source_model(data)
        model, info = load_model(path)
        self._record_data(data, info)
        accuracy = {"acc": info.get("val_acc"), "test_acc": info.get("test_acc")}
        if accuracy["acc"] is None:  # a `nas export` file: score it as the children are
            from estimators.train import evaluate

            accuracy = {split_name: evaluate(model, data, split, resolution=info["resolution"])
                        for split_name, split in (("acc", "val"), ("test_acc", "test"))}
        costs = self.cost(arch_of(info, path))
        source = {"path": str(path), "trial": -1, "key": info["key"], "acc": accuracy["acc"],
                  **costs}
        anchor = {"name": self.anchor_name, "key": info["key"], **accuracy, **costs}
        controller = MetaController(self.actors, seed=s.seed)
        optimizer = torch.optim.Adam(controller.parameters(), lr=s.lr)
        checkpoint = Checkpoint(self.run_dir)
        saved = checkpoint.load()
        state: dict[str, Any] = {"baseline": None, "untrained_draws": 0, "rewards": []}
        rows: list[dict[str, Any]] = []
        episodes = 0
        if saved is not None:
            state = dict(saved["strategy"])
            controller.load_state_json(state.pop("controller"))
            optimizer.load_state_dict(_optimizer_state(state.pop("optimizer")))
            rows, episodes = list(saved["trials"]), int(saved["batches"])
        (self.run_dir / "children").mkdir(exist_ok=True)
        trainer = ChildTrainer(s, data, self.recipe, self.distill(source))
        began = time.perf_counter()
        try:
            for episode in range(episodes, s.episodes):
                plan = self._plan(episode, rows, source, controller)
                results = self._train(plan, trainer)
                new = [self._row(child, results[str(child["trial"])], episode, source)
                       for child in plan["children"]]
                rows += new
                self._update(controller, optimizer, state, plan, rows)
                checkpoint.save({**state, "controller": controller.state_json(),
                                 "optimizer": _json_optimizer(optimizer)}, rows, [anchor],
                                episode + 1, time.perf_counter() - began, finished=False)
                (self.run_dir / EPISODE_FILE).unlink(missing_ok=True)
                self._log_episode(episode, new, rows, len(plan["repeats"]))
        finally:
            trainer.close()
        if not rows:
            raise MorphError(f"no child of {source['key']} that differs from it and is within "
                             f"the budget {s.budget or 'none'} in {RESAMPLES} tries")
        config = read_json(self.run_dir / "config.json")
        with writing(self.run_dir):
            summary = summarise(self.run_dir, config, rows, [anchor],
                                {"untrained_draws": state["untrained_draws"],
                                 "seconds": round(time.perf_counter() - began, 3)})
        return {"run_dir": str(self.run_dir), "trials": len(rows), "best": best(rows),
                self.anchor_name: anchor, "summary": summary}

    def _log_episode(self, episode: int, new: list[dict[str, Any]], rows: list[dict[str, Any]],
                     repeats: int) -> None:
        top = best(rows)
        head = f"episode {episode + 1}/{self.settings.episodes}: "
        if not new:  # a settled policy: every draw was a child trained before
            self.log(head + f"no new child: {repeats} repeats of children trained before (the "
                            f"controller still learns from their rewards)")
            return
        self.log(head + f"best of its {len(new)} new children {max(r['acc'] for r in new):.2f} "
                        f"%, best so far {top['acc']:.2f} % ({top['key']}, {self.cost_metric} "
                        f"{top[self.cost_metric]:.4g})")

    def _record_data(self, data: DataSplits, info: Mapping[str, Any]) -> None:
        """What `nas export` builds the winner for: the source model's classes and input."""
        config = read_json(self.run_dir / "config.json")
        if config.get("data") is None:
            config["data"] = {"name": data.name, "classes": info["num_classes"],
                              "channels": info["in_channels"], "resolution": info["resolution"]}
            write_json(self.run_dir, self.run_dir / "config.json", config)

    def _plan(self, episode: int, rows: list[dict[str, Any]], source: Mapping[str, Any],
              controller: MetaController) -> dict[str, Any]:
        """The episode's children, drawn once and kept in episode.json until it is done."""
        path = self.run_dir / EPISODE_FILE
        if path.is_file():
            plan = read_json(path)
            if isinstance(plan, dict) and plan.get("episode") == episode:
                return plan
        s = self.settings
        generator = torch.Generator().manual_seed(s.seed * 1_000_003 + episode)
        children, refused, repeats = self._draw(len(rows), rows,
                                                self.brood(episode, rows, source), controller,
                                                generator)
        for child in children:
            trial = child["trial"]
            made = make_child(Path(child.pop("parent_path")),
                              [parse_transform(t) for t in child["transforms"]],
                              self.run_dir / "children" / f"{trial}.init.pt",
                              getattr(s, "noise", 0.0), s.seed * 10_007 + trial,
                              {"parent": child["parent"], "transforms": child["transforms"]})
            if made.key != child["key"]:  # the driver's arch walk and the weights disagree
                raise NasError(f"child {trial}: edited to {made.key}, expected {child['key']}")
        plan = {"episode": episode, "children": children, "refused": refused,
                "repeats": repeats, "done": {}}
        write_json(self.run_dir, path, plan)
        return plan

    def _draw(self, first: int, rows: list[dict[str, Any]], brood: Brood,
              controller: MetaController, generator: torch.Generator
              ) -> tuple[list[dict[str, Any]], list[list], list[list]]:
        """The episode's `children` draws. Each is drawn again (up to RESAMPLES times) while it
        cannot be trained: over the budget, edits that cannot go together (N2N's invalid
        student) or a copy of the parent; those draws get reward 0 (N2N's reward of a student
        equal to its teacher is 0, and a policy that learned to choose nothing must pay for
        it, or it would stop making children). A draw of a child trained already, by this
        run or earlier in this episode, is not trained again and gets that child's reward (as
        EAS's net pool does). Returns the new children, the [decisions, 0] of refused draws
        and the [decisions, key] of repeats."""
        from search_spaces.transforms import TransformError, arch_after

        children: list[dict[str, Any]] = []
        refused: list[list] = []
        repeats: list[list] = []
        seen = {r["key"] for r in rows}
        for _ in range(self.settings.children):
            for _ in range(RESAMPLES):
                arch, decisions = brood.parent, []
                try:
                    for actor in brood.steps:
                        decision = controller.sample(self.space, arch, actor, generator)
                        decisions.append(decision)
                        for text in decision.chosen:
                            arch = arch_after(self.space, arch, parse_transform(text))
                except TransformError:
                    refused.append([[d.to_json() for d in decisions], 0.0])
                    continue
                record = [d.to_json() for d in decisions]
                if arch == brood.parent or (self.constraints and not all_satisfied(
                        self.constraints, self.cost(arch))):
                    refused.append([record, 0.0])
                    continue
                if arch.key in seen:
                    repeats.append([record, arch.key])
                else:
                    seen.add(arch.key)
                    children.append({
                        "trial": first + len(children), "key": arch.key,
                        "parent": brood.parent_trial, "parent_path": brood.parent_path,
                        "transforms": [*brood.prefix, *(t for d in decisions for t in d.chosen)],
                        "decisions": record})
                break
        return children, refused, repeats

    def _train(self, plan: dict[str, Any], trainer: ChildTrainer) -> dict[str, Any]:
        done = plan["done"]
        children = self.run_dir / "children"

        def save(trial: int, metrics: Mapping[str, Any]) -> None:
            done[str(trial)] = dict(metrics)
            write_json(self.run_dir, self.run_dir / EPISODE_FILE, plan)

        trainer([(c["trial"], str(children / f"{c['trial']}.init.pt"),
                  str(children / f"{c['trial']}.pt"))
                 for c in plan["children"] if str(c["trial"]) not in done], save)
        return done

    def _row(self, child: Mapping[str, Any], metrics: Mapping[str, Any], episode: int,
             source: Mapping[str, Any]) -> dict[str, Any]:
        arch = self.space.parse(child["key"])
        row = {"trial": child["trial"], "batch": episode, "key": child["key"],
               **{k: metrics[k] for k in ("acc", "test_acc", "train_seconds")},
               **self.cost(arch), "parent": child["parent"],
               "transforms": "; ".join(child["transforms"])}
        row["reward"] = self.reward(row, source)
        row["within_budget"] = all_satisfied(self.constraints, row) if self.constraints else True
        return row

    def _update(self, controller: MetaController, optimizer: torch.optim.Optimizer,
                state: dict[str, Any], plan: Mapping[str, Any], rows: list[dict]) -> None:
        """REINFORCE on every draw of the episode (`rows`: every trained child so far): each
        child's reward, a repeat's the child it repeats, a refused draw 0; the advantage is
        the reward minus the moving-average baseline."""
        reward_of = {r["key"]: r["reward"] for r in rows}
        new = [reward_of[c["key"]] for c in plan["children"]]
        rewards = new + [float(u[1]) for u in plan["refused"]] + \
            [reward_of[key] for _, key in plan["repeats"]]
        trajectories = [c["decisions"] for c in plan["children"]] + \
            [u[0] for u in plan["refused"]] + [d for d, _ in plan["repeats"]]
        state["untrained_draws"] += len(plan["refused"]) + len(plan["repeats"])
        state["rewards"] = [*state["rewards"], *new]
        if not rewards:
            return
        baseline = state["baseline"]
        if baseline is None:
            baseline = sum(rewards) / len(rewards)
        if self.settings.policy == "reinforce":
            optimizer.zero_grad()
            loss = torch.zeros(())
            for reward, decisions in zip(rewards, trajectories):
                for item in decisions:
                    logp, entropy = controller.log_prob(self.space, Decision.from_json(item))
                    loss = loss - (reward - baseline) * logp - self.settings.entropy * entropy
            (loss / len(rewards)).backward()
            optimizer.step()
        decay = self.settings.baseline_decay
        for reward in rewards:
            baseline = decay * baseline + (1 - decay) * reward
        state["baseline"] = baseline


def best(rows: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The most accurate child within the budget (the earliest of equals)."""
    usable = [r for r in rows if r.get("within_budget", True)
              and isinstance(r.get("acc"), (int, float)) and not math.isnan(r["acc"])]
    return dict(max(usable, key=lambda r: (r["acc"], -r["trial"]))) if usable else None


def _json_optimizer(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    state = optimizer.state_dict()
    return {"state": {str(k): {n: (v.tolist() if torch.is_tensor(v) else v)
                               for n, v in s.items()} for k, s in state["state"].items()},
            "param_groups": state["param_groups"]}


def _optimizer_state(value: Mapping[str, Any]) -> dict[str, Any]:
    return {"state": {int(k): {n: torch.tensor(v, dtype=torch.float32) for n, v in s.items()}
                      for k, s in value["state"].items()},
            "param_groups": value["param_groups"]}


__all__ = ["EPISODE_FILE", "RESAMPLES", "EditJob", "best"]
