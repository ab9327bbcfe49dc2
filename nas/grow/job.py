"""`nas grow`: EAS (Cai et al., AAAI 2018) on the engine's spaces. Each episode, the
meta-controller transforms the best network so far into `children` children (widen, then
deepen decisions; function-preserving, so each starts with its parent's accuracy), each child is
fine-tuned briefly (in this process or on Ray workers) and its validation accuracy is the
reward: REINFORCE on tan(acc * pi / 2) minus a moving-average baseline.

The run folder is a search's (config.json, checkpoint.json, trials.csv, pareto.csv/md/png,
summary.json) plus `start.pt` (a start given as a key, trained here) and `children/` (each
child's inherited weights `<trial>.init.pt` and fine-tuned checkpoint `<trial>.pt`). A kill
loses at most the children being trained: `episode.json` keeps the episode's decisions and
every finished child, and the run resumes from them.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from estimators.checkpoints import CheckpointFileError, load_model, read_model_file
from estimators.data import DataSplits, load_data
from estimators.progress import Log
from estimators.train import TrainRecipe
from nas.budget import parse_budget
from nas.checkpoint import CHECKPOINT_FORMAT, Checkpoint, write_json
from nas.evaluation import Evaluator, evaluation_config
from nas.grow.children import finetune, make_child, model_arch
from nas.grow.controller import Decision, MetaController, eas_reward, parse_transform
from nas.grow.settings import GrowError, GrowSettings
from nas.objectives import Objective, all_satisfied
from nas.report import summarise
from nas.results import clean_json, read_json
from nas.run_lock import run_lock, writing
from search_spaces import Arch, NasError, get_space
from search_spaces.transforms import arch_after

EPISODE_FILE = "episode.json"
RESAMPLES = 20  # tries per child to find one within the budget


def start_model(settings: GrowSettings, run_dir: Path, data: DataSplits, log: Log) -> Path:
    """The trained start network: the given model file, or the key trained into start.pt
    (continued after a kill)."""
    given = Path(settings.start).expanduser()
    if given.suffix in (".pt", ".pth") or given.is_file():
        if not given.is_file():
            raise GrowError(f"start model {given} does not exist")
        return given.resolve()
    from estimators.standalone import TRAIN_DEFAULTS, resume_training, train_to_checkpoint

    space = get_space(settings.space or "")
    arch = space.parse(settings.start)
    out = run_dir / "start.pt"
    if out.is_file():
        try:
            if read_model_file(out)["complete"]:
                return out
        except CheckpointFileError:
            out.unlink()
        else:
            log(f"continuing the start network's training in {out}")
            resume_training(out, data, log=log)
            return out
    log(f"training the start network {arch.key} for {settings.start_epochs} epochs")
    recipe = replace(TRAIN_DEFAULTS, epochs=settings.start_epochs,
                     train_images=settings.train_images)
    train_to_checkpoint(out, data, arch, recipe=recipe, seed=settings.seed, log=log)
    return out


class GrowJob:
    """One EAS run in one folder; `run()` starts it or continues it."""

    def __init__(self, settings: GrowSettings, run_dir: str | Path, log: Log | None = None):
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.log: Log = log or (lambda text: sys.stderr.write(text + "\n"))
        self.constraints = parse_budget(settings.budget)
        self.space_name = self._space_name()
        self.space = get_space(self.space_name)
        cost = "latency_ms" if any(c.metric == "latency_ms" for c in self.constraints) \
            else "flops"
        self.objectives = (Objective("acc", "maximize"), Objective(cost, "minimize"))
        # as given (a space file's path stays a path, so the run reads back anywhere)
        space_ref = settings.space if settings.space is not None else self.space_name
        self.eval_config = evaluation_config(
            space_ref, "train", {"epochs": settings.finetune_epochs,
                                       "train_images": settings.train_images},
            {"name": settings.data, "dir": settings.data_dir,
             "val_fraction": settings.val_fraction}, settings.device, settings.seed,
            settings.threads)
        self.cost = Evaluator(self.eval_config, shared={}).cost
        self.recipe = TrainRecipe(epochs=settings.finetune_epochs, label_smoothing=0.1,
                                  train_images=settings.train_images)

    def _space_name(self) -> str:
        s = self.settings
        start = Path(s.start).expanduser()
        if start.is_file():
            from estimators.checkpoints import arch_of

            payload = read_model_file(start)
            name = arch_of(payload, start).search_space.name
            if s.space is not None and get_space(s.space).name != name:
                raise GrowError(f"{start} holds a network of space {name}, not {s.space}")
            return name
        if s.space is None:
            raise GrowError(f"--start {s.start!r} is not a model file; give --space for a key")
        space = get_space(s.space)
        space.parse(s.start)  # a bad key fails now
        return space.name

    # --- files -------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return clean_json({
            "format": CHECKPOINT_FORMAT, "settings": self.settings.to_json(),
            "space": self.space_name, "strategy": f"eas-{self.settings.policy}",
            "strategy_options": {}, "seed": self.settings.seed,
            "objectives": [o.to_json() for o in self.objectives],
            "constraints": [c.to_json() for c in self.constraints],
            "evaluation": self.eval_config, "inherit": True,
            "largest": self.cost(self.space.max_arch()), "data": None,
            "command": "nas grow", "created": datetime.now().isoformat(timespec="seconds")})

    def _check_resume(self) -> None:
        config = read_json(self.run_dir / "config.json")
        saved = config.get("settings") if isinstance(config, dict) else None
        if not isinstance(saved, dict) or "start" not in saved:
            raise GrowError(f"{self.run_dir} holds a run of another command, not `nas grow`")
        differ = self.settings.differences(GrowSettings.from_json(saved))
        if differ:
            raise GrowError(f"{self.run_dir} holds a `nas grow` run with other settings "
                            f"({'; '.join(differ)}); choose another --out")

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        with writing(self.run_dir):
            self.run_dir.mkdir(parents=True, exist_ok=True)
        with run_lock(self.run_dir):
            if (self.run_dir / "config.json").exists():
                self._check_resume()
            else:
                write_json(self.run_dir, self.run_dir / "config.json", self._config())
            return self._run()

    def _run(self) -> dict[str, Any]:
        s = self.settings
        data = load_data(s.data, s.data_dir, val_fraction=s.val_fraction, seed=s.seed)
        start = start_model(s, self.run_dir, data, self.log)
        _, start_info = load_model(start)
        config = read_json(self.run_dir / "config.json")
        if config.get("data") is None:  # what `nas export` builds the winner for
            config["data"] = {"name": data.name, "classes": start_info["num_classes"],
                              "channels": start_info["in_channels"],
                              "resolution": start_info["resolution"]}
            write_json(self.run_dir, self.run_dir / "config.json", config)
        controller = MetaController(seed=s.seed)
        optimizer = torch.optim.Adam(controller.parameters(), lr=s.lr)
        checkpoint = Checkpoint(self.run_dir)
        saved = checkpoint.load()
        state: dict[str, Any] = {"baseline": None, "over_budget": 0, "rewards": []}
        rows: list[dict[str, Any]] = []
        episodes = 0
        if saved is not None:
            state = dict(saved["strategy"])
            controller.load_state_json(state.pop("controller"))
            optimizer.load_state_dict(_optimizer_state(state.pop("optimizer")))
            rows, episodes = list(saved["trials"]), int(saved["batches"])
        anchor = {"name": "start", "key": start_info["key"], "acc": start_info.get("val_acc"),
                  "test_acc": start_info.get("test_acc"),
                  **self.cost(model_arch(start_info))}
        (self.run_dir / "children").mkdir(exist_ok=True)
        evaluate = self._evaluator(data)
        began = time.perf_counter()
        try:
            for episode in range(episodes, s.episodes):
                parent = _best(rows) or {"trial": -1, "acc": anchor["acc"], "key": anchor["key"]}
                parent_path = start if parent["trial"] < 0 else \
                    self.run_dir / "children" / f"{parent['trial']}.pt"
                plan = self._plan(episode, len(rows), parent, parent_path, controller)
                results = self._train(plan, data, evaluate)
                new = [self._row(child, results[str(child["trial"])], episode)
                       for child in plan["children"]]
                rows += new
                self._update(controller, optimizer, state, plan, new)
                checkpoint.save({**state, "controller": controller.state_json(),
                                 "optimizer": _json_optimizer(optimizer)}, rows, [anchor],
                                episode + 1, time.perf_counter() - began, finished=False)
                (self.run_dir / EPISODE_FILE).unlink(missing_ok=True)
                best = _best(rows)
                self.log(f"episode {episode + 1}/{s.episodes}: best of its children "
                         f"{max(r['acc'] for r in new):.2f} %, best so far {best['acc']:.2f} % "
                         f"({best['key']})")
        finally:
            evaluate.close()
        config = read_json(self.run_dir / "config.json")
        with writing(self.run_dir):
            summary = summarise(self.run_dir, config, rows, [anchor],
                                {"over_budget": state["over_budget"],
                                 "grow_seconds": round(time.perf_counter() - began, 3)})
        return {"run_dir": str(self.run_dir), "trials": len(rows), "best": _best(rows),
                "start": anchor, "summary": summary}

    def _plan(self, episode: int, first: int, parent: Mapping[str, Any], parent_path: Path,
              controller: MetaController) -> dict[str, Any]:
        """The episode's children (decisions, transformations, model files), sampled once and
        kept in episode.json until the episode is done."""
        path = self.run_dir / EPISODE_FILE
        if path.is_file():
            plan = read_json(path)
            if isinstance(plan, dict) and plan.get("episode") == episode:
                return plan
        s = self.settings
        generator = torch.Generator().manual_seed(s.seed * 1_000_003 + episode)
        parent_arch = self.space.parse(parent["key"])
        children, rejected = [], []
        for c in range(s.children):
            trial = first + c
            for _ in range(RESAMPLES):
                decisions, arch = self._sample(parent_arch, controller, generator)
                if arch == parent_arch:  # nothing chosen: a copy is no child; sample again
                    continue
                if not self.constraints or all_satisfied(self.constraints, self.cost(arch)):
                    break
                rejected.append([d.to_json() for d in decisions])
            else:
                raise GrowError(f"no child of {parent['key']} that differs from it and is "
                                f"within the budget {s.budget or 'none'} in {RESAMPLES} tries")
            transforms = [t for d in decisions for t in d.chosen]
            init = self.run_dir / "children" / f"{trial}.init.pt"
            made = make_child(parent_path, [parse_transform(t) for t in transforms], init,
                              s.noise, s.seed * 10_007 + trial,
                              {"parent": parent["trial"], "transforms": transforms})
            if made.key != arch.key:  # the driver's arch walk and the weights disagree
                raise NasError(f"child {trial}: transformed to {made.key}, expected {arch.key}")
            children.append({"trial": trial, "key": arch.key, "parent": parent["trial"],
                             "parent_acc": parent["acc"], "transforms": transforms,
                             "decisions": [d.to_json() for d in decisions]})
        plan = {"episode": episode, "children": children, "rejected": rejected, "done": {}}
        write_json(self.run_dir, path, plan)
        return plan

    def _sample(self, arch: Arch, controller: MetaController,
                generator: torch.Generator) -> tuple[list[Decision], Arch]:
        """One child's decisions (widen steps, then deepen steps) and its arch."""
        decisions = []
        steps = ["widen"] * self.settings.widen_steps + ["deepen"] * self.settings.deepen_steps
        for actor in steps:
            decision = controller.sample(self.space, arch, actor, generator)
            decisions.append(decision)
            for text in decision.chosen:
                arch = arch_after(self.space, arch, parse_transform(text))
        return decisions, arch

    def _train(self, plan: dict[str, Any], data: DataSplits, evaluate: Any) -> dict[str, Any]:
        done = plan["done"]
        todo = [c for c in plan["children"] if str(c["trial"]) not in done]
        children = self.run_dir / "children"

        def save(trial: int, metrics: Mapping[str, Any]) -> None:
            done[str(trial)] = dict(metrics)
            write_json(self.run_dir, self.run_dir / EPISODE_FILE, plan)

        evaluate([(c["trial"], str(children / f"{c['trial']}.init.pt"),
                   str(children / f"{c['trial']}.pt")) for c in todo], save)
        return done

    def _row(self, child: Mapping[str, Any], metrics: Mapping[str, Any],
             episode: int) -> dict[str, Any]:
        arch = self.space.parse(child["key"])
        row = {"trial": child["trial"], "batch": episode, "key": child["key"],
               **{k: metrics[k] for k in ("acc", "test_acc", "train_seconds")},
               **self.cost(arch), "parent": child["parent"],
               "parent_acc": child["parent_acc"], "transforms": "; ".join(child["transforms"])}
        row["within_budget"] = all_satisfied(self.constraints, row) if self.constraints else True
        return row

    def _update(self, controller: MetaController, optimizer: torch.optim.Optimizer,
                state: dict[str, Any], plan: Mapping[str, Any], rows: list[dict]) -> None:
        """REINFORCE: children trained get tan(acc * pi / 2), children refused for the budget
        0; the advantage is the reward minus the moving-average baseline."""
        rewards = [eas_reward(r["acc"]) for r in rows] + [0.0] * len(plan["rejected"])
        trajectories = [c["decisions"] for c in plan["children"]] + list(plan["rejected"])
        state["over_budget"] += len(plan["rejected"])
        state["rewards"] = [*state["rewards"], *rewards[:len(rows)]]
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

    def _evaluator(self, data: DataSplits) -> _Trainer:
        return _Trainer(self.settings, data, self.recipe)


class _Trainer:
    """Fine-tunes children in this process (workers 0) or as Ray tasks, one CPU each."""

    def __init__(self, settings: GrowSettings, data: DataSplits, recipe: TrainRecipe):
        from nas.grow.children import recipe_json

        self.settings, self.data, self.recipe = settings, data, recipe_json(recipe)
        self.started_ray = False
        self._remote = self._data_ref = None

    def __call__(self, jobs: list[tuple[int, str, str]],
                 save: Callable[[int, Mapping[str, Any]], None]) -> None:
        s = self.settings
        if not jobs:
            return
        if s.workers == 0:
            for trial, init, out in jobs:
                save(trial, finetune(init, out, self.data, self.recipe, s.seed + trial,
                                     s.threads))
            return
        import ray

        if self._remote is None:
            from nas.runners import init_ray

            self.started_ray = init_ray(s.address)
            self._remote = ray.remote(num_cpus=s.threads)(finetune)
            self._data_ref = ray.put(self.data)
        limit = s.workers or max(1, int(ray.available_resources().get("CPU", 1)))
        pending: dict[Any, int] = {}
        queue = list(jobs)
        while queue or pending:
            while queue and len(pending) < limit:
                trial, init, out = queue.pop(0)
                ref = self._remote.remote(init, out, self._data_ref, self.recipe,
                                          s.seed + trial, s.threads)
                pending[ref] = trial
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                save(pending.pop(ref), ray.get(ref))

    def close(self) -> None:
        if self.started_ray:
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()


def _best(rows: list[Mapping[str, Any]]) -> dict[str, Any] | None:
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


__all__ = ["EPISODE_FILE", "GrowJob", "start_model"]
