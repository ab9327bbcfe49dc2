"""`nas grow`: EAS (Cai et al., AAAI 2018) on the engine's spaces. Each episode the
meta-controller grows the start network into `children` children: `widen_steps` widen
decisions (one yes/no per place that can widen), then `deepen_steps` deepen decisions (one
stage each). The transformations preserve the function, so each child starts with the start
network's accuracy; it is fine-tuned briefly and its validation accuracy is the reward, shaped
as tan(acc * pi / 2). See docs/transform.md ("EAS").
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from estimators.checkpoints import CheckpointFileError, read_model_file
from estimators.data import DataSplits
from estimators.train import TrainRecipe
from nas.morph.controller import eas_reward
from nas.morph.episodes import Brood, EditJob, best
from nas.morph.settings import GrowSettings
from search_spaces import get_space


class GrowJob(EditJob):
    """One EAS run in one folder; `run()` starts it or continues it."""

    actors: ClassVar[dict[str, str]] = {"widen": "each", "deepen": "one"}
    strategy = "eas"
    command = "nas grow"
    anchor_name = "start"
    settings: GrowSettings

    @property
    def recipe(self) -> TrainRecipe:
        return TrainRecipe(epochs=self.settings.finetune_epochs, label_smoothing=0.1,
                           train_images=self.settings.train_images)

    def source_model(self, data: DataSplits) -> Path:
        """The given model file, or the start key trained into start.pt (continued after a
        kill) with `nas train`'s recipe for `start_epochs`."""
        s = self.settings
        given = Path(s.start).expanduser()
        if given.is_file():
            return given.resolve()
        from estimators.standalone import TRAIN_DEFAULTS, resume_training, train_to_checkpoint

        arch = get_space(self.space_name).parse(s.start)
        out = self.run_dir / "start.pt"
        if out.is_file():
            try:
                complete = read_model_file(out)["complete"]
            except CheckpointFileError:
                out.unlink()
            else:
                if not complete:
                    self.log(f"continuing the start network's training in {out}")
                    resume_training(out, data, log=self.log)
                return out
        self.log(f"training the start network {arch.key} for {s.start_epochs} epochs")
        recipe = replace(TRAIN_DEFAULTS, epochs=s.start_epochs, train_images=s.train_images)
        train_to_checkpoint(out, data, arch, recipe=recipe, seed=s.seed, log=self.log)
        return out

    def brood(self, episode: int, rows: list[dict[str, Any]],
              source: Mapping[str, Any]) -> Brood:
        """Children of the start network every episode, as in EAS (its ArchManager hands
        out copies of the start net), or with `parents="best"` of the best child so far."""
        s = self.settings
        parent = dict(source) if s.parents == "start" else (best(rows) or dict(source))
        path = source["path"] if parent["trial"] < 0 else \
            str(self.run_dir / "children" / f"{parent['trial']}.pt")
        return Brood(self.space.parse(parent["key"]), path, parent["trial"],
                     ("widen",) * s.widen_steps + ("deepen",) * s.deepen_steps)

    def reward(self, row: Mapping[str, Any], source: Mapping[str, Any]) -> float:
        return eas_reward(row["acc"])


__all__ = ["GrowJob"]
