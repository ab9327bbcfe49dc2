"""The settings of `nas grow` (EAS) and `nas compress` (N2N): frozen dataclasses checked when
made (one-line `NasError`s), written to the run's config.json and compared on --resume."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, ClassVar

from nas.settings_checks import ResumableSettings, check_number, check_whole
from search_spaces import NasError

POLICIES = ("reinforce", "random")
TARGETS = ("params", "flops", "latency_ms")
PARENTS = ("start", "best")  # where EAS children come from


class MorphError(NasError):
    """A `nas grow` / `nas compress` setting or run folder that cannot be used."""


def _whole(settings: Any, lows: dict[str, int]) -> None:
    for name, low in lows.items():
        check_whole(name, getattr(settings, name), low, MorphError)


_number = partial(check_number, error=MorphError)


@dataclass(frozen=True, kw_only=True)
class EditSettings(ResumableSettings):
    """What both searches share: episodes of children, the controller, data and workers."""

    space: str | None = None  # None: the start/teacher model's own space
    episodes: int = 10
    children: int = 4  # children per episode
    # Images per training epoch of a child: brief training is the point of both methods, and
    # 40 children at 10,000 images each fit in half an hour on 2 cores. None: the whole split.
    train_images: int | None = 10_000
    policy: str = "reinforce"  # or "random": the initial policy, never updated
    lr: float = 0.05  # Adam step of the meta-controller
    baseline_decay: float = 0.95  # moving-average baseline of the reward
    entropy: float = 1e-5  # entropy bonus
    budget: str | None = None  # e.g. 20M-flops: children over it are never trained
    data: str = "fashion-mnist"
    data_dir: str | None = None
    val_fraction: float = 1 / 6
    seed: int = 0
    threads: int = 1  # torch threads per training
    workers: int | None = None  # Ray workers (None: one per CPU; 0: no Ray)
    address: str | None = None  # a Ray cluster to join
    device: str | None = None  # a latency table's device, for a latency budget or target

    # What a resumed run may change: where and how fast it runs, and how long it goes on.
    RESUMABLE: ClassVar[tuple[str, ...]] = ("episodes", "workers", "address", "threads")
    SOURCE: ClassVar[str] = "start"  # the field naming the model the run starts from

    def __post_init__(self) -> None:
        _whole(self, {"episodes": 1, "children": 1, "threads": 1})
        _number("lr", self.lr, 0, low_open=True)
        _number("baseline_decay", self.baseline_decay, 0, 1, low_open=True)
        _number("val_fraction", self.val_fraction, 0, 1, low_open=True)
        _number("entropy", self.entropy, 0)
        if self.policy not in POLICIES:
            raise MorphError(f"policy must be one of {', '.join(POLICIES)}, got "
                             f"{self.policy!r}")
        if self.workers is not None:
            _whole(self, {"workers": 0})
        if self.train_images is not None:
            _whole(self, {"train_images": 1})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class GrowSettings(EditSettings):
    """`nas grow` (EAS). Defaults: docs/transform.md ("EAS")."""

    start: str  # a key of `space` or a trained model file (`nas train` or `nas export`)
    parents: str = "start"  # every child from the start network (EAS), or "best" so far
    episodes: int = 8
    children: int = 5  # EAS: 10 per episode
    widen_steps: int = 2  # widen-actor decisions per child (EAS: 4)
    deepen_steps: int = 3  # deepen-actor decisions per child (EAS: 5)
    finetune_epochs: float = 1.0  # training of each child from its inherited weights
    start_epochs: int = 3  # training of a start given as a key
    noise: float = 0.01  # symmetry-breaking noise, relative to each weight tensor's spread

    def __post_init__(self) -> None:
        super().__post_init__()
        _whole(self, {"widen_steps": 0, "deepen_steps": 0, "start_epochs": 1})
        if self.widen_steps + self.deepen_steps == 0:
            raise MorphError("widen_steps and deepen_steps are both 0: children would be "
                             "copies of their parent")
        _number("finetune_epochs", self.finetune_epochs, 0, low_open=True)
        _number("noise", self.noise, 0)
        if self.parents not in PARENTS:
            raise MorphError(f"parents must be one of {', '.join(PARENTS)}, got "
                             f"{self.parents!r}")


@dataclass(frozen=True, kw_only=True)
class CompressSettings(EditSettings):
    """`nas compress` (N2N). Defaults: docs/transform.md ("N2N")."""

    SOURCE: ClassVar[str] = "teacher"

    teacher: str  # a trained model file (`nas train` or `nas export`)
    target: str = "params"  # the cost the reward compresses: params, flops or latency_ms
    remove_episodes: int = 4  # episodes of the layer-removal policy, then shrinkage ones
    student_epochs: float = 1.0  # distillation training of each student
    distill_weight: float = 0.9
    temperature: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _whole(self, {"remove_episodes": 0})
        if self.remove_episodes > self.episodes:
            raise MorphError(f"remove_episodes ({self.remove_episodes}) exceeds episodes "
                             f"({self.episodes})")
        if self.target not in TARGETS:
            raise MorphError(f"target must be one of {', '.join(TARGETS)}, got "
                             f"{self.target!r}")
        if self.target == "latency_ms" and self.device is None:
            raise MorphError("target latency_ms needs --device (the latency table's device)")
        _number("student_epochs", self.student_epochs, 0, low_open=True)
        from estimators.train import check_distill

        check_distill(self.distill_weight, self.temperature)


__all__ = ["PARENTS", "POLICIES", "TARGETS", "CompressSettings", "EditSettings", "GrowSettings",
           "MorphError"]
