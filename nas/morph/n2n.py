"""`nas compress`: N2N (Ashok et al., ICLR 2018) on the engine's spaces. From a trained teacher,
a first policy removes blocks (one yes/no per removable block) for `remove_episodes` episodes;
then a second one narrows the blocks of the best removal student (one yes/no per narrowable
place, `narrow_steps` times). Every student starts from the teacher's weights (kept blocks,
the most important units of narrowed ones), is trained by distillation from the teacher, and
is rewarded R = (A_student / A_teacher) * C * (2 - C), C = 1 - cost_student / cost_teacher
(cost: `target`, params by default). See docs/transform.md ("N2N").
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from estimators.data import DataSplits
from estimators.train import TrainRecipe
from nas.morph.controller import parse_transform
from nas.morph.episodes import Brood, EditJob
from nas.morph.settings import CompressSettings

NARROW_STEPS = 2  # narrow decisions per student: one option smaller each time at most


def n2n_reward(acc: float, teacher_acc: float, cost: float, teacher_cost: float) -> float:
    """N2N's reward: accuracy kept times C * (2 - C) for the compression C, which favours
    compression most while it is low and saturates at C = 1."""
    compression = 1.0 - cost / teacher_cost
    return (acc / teacher_acc) * compression * (2.0 - compression)


class CompressJob(EditJob):
    """One N2N run in one folder; `run()` starts it or continues it."""

    actors: ClassVar[dict[str, str]] = {"remove": "each", "narrow": "each"}
    strategy = "n2n"
    command = "nas compress"
    anchor_name = "teacher"
    settings: CompressSettings

    @property
    def recipe(self) -> TrainRecipe:
        return TrainRecipe(epochs=self.settings.student_epochs, label_smoothing=0.1,
                           train_images=self.settings.train_images)

    @property
    def cost_metric(self) -> str:
        return self.settings.target

    def source_model(self, data: DataSplits) -> Path:
        return Path(self.settings.teacher).expanduser().resolve()

    def distill(self, source: Mapping[str, Any]) -> dict[str, Any]:
        s = self.settings
        return {"teacher": source["path"], "weight": s.distill_weight,
                "temperature": s.temperature}

    def brood(self, episode: int, rows: list[dict[str, Any]],
              source: Mapping[str, Any]) -> Brood:
        """Removal students first; then narrowed students of the best removal student (by
        reward; the teacher itself if removal never paid)."""
        from search_spaces.transforms import arch_after

        s = self.settings
        teacher = self.space.parse(source["key"])
        if episode < s.remove_episodes:
            return Brood(teacher, source["path"], -1, ("remove",))
        removals = [r for r in rows if r["batch"] < s.remove_episodes]
        top = max(removals, key=lambda r: r["reward"], default=None)
        prefix = [t for t in top["transforms"].split("; ") if t] \
            if top is not None and top["reward"] > 0 else []
        base = teacher
        for text in prefix:
            base = arch_after(self.space, base, parse_transform(text))
        return Brood(base, source["path"], -1, ("narrow",) * NARROW_STEPS, tuple(prefix))

    def reward(self, row: Mapping[str, Any], source: Mapping[str, Any]) -> float:
        metric = self.settings.target
        return n2n_reward(row["acc"], source["acc"], row[metric], source[metric])


__all__ = ["NARROW_STEPS", "CompressJob", "n2n_reward"]
