"""The settings of `nas grow` (EAS): one frozen dataclass, checked when made (one-line
`NasError`s), written to the run's config.json and compared on --resume."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from search_spaces import NasError

POLICIES = ("reinforce", "random")


class GrowError(NasError):
    """A `nas grow` setting or run folder that cannot be used."""


@dataclass(frozen=True)
class GrowSettings:
    """What `nas grow` runs. Defaults: docs/transform.md ("EAS")."""

    start: str  # a key of `space` or a trained model file (`nas train` or `nas export`)
    space: str | None = None  # None: the start model's own space
    episodes: int = 10
    children: int = 4  # children per episode (EAS: 10)
    widen_steps: int = 1  # widen-actor decisions per child (EAS: 4)
    deepen_steps: int = 1  # deepen-actor decisions per child (EAS: 5)
    finetune_epochs: float = 1.0  # training of each child from its inherited weights
    start_epochs: int = 3  # training of a start given as a key
    train_images: int | None = None  # cap on training images per epoch
    policy: str = "reinforce"  # or "random": the initial policy, never updated
    lr: float = 0.05  # Adam step of the meta-controller
    baseline_decay: float = 0.95  # EAS's moving-average baseline of the reward
    entropy: float = 1e-5  # EAS's entropy bonus
    noise: float = 0.01  # symmetry-breaking noise, relative to each weight tensor's spread
    budget: str | None = None  # e.g. 20M-flops: children over it are never trained
    data: str = "fashion-mnist"
    data_dir: str | None = None
    val_fraction: float = 1 / 6
    seed: int = 0
    threads: int = 1  # torch threads per training
    workers: int | None = None  # Ray workers (None: one per CPU up to `children`; 0: no Ray)
    address: str | None = None  # a Ray cluster to join
    device: str | None = None  # a latency table's device, for a latency budget

    def __post_init__(self) -> None:
        whole = {"episodes": 1, "children": 1, "widen_steps": 0, "deepen_steps": 0,
                 "start_epochs": 1, "threads": 1}
        for name, low in whole.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise GrowError(f"{name} must be a whole number >= {low}, got {value!r}")
        if self.widen_steps + self.deepen_steps == 0:
            raise GrowError("widen_steps and deepen_steps are both 0: children would be "
                            "copies of their parent")
        positive = {"finetune_epochs": self.finetune_epochs, "lr": self.lr}
        for name, value in positive.items():
            if not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise GrowError(f"{name} must be a positive number, got {value!r}")
        for name in ("baseline_decay", "val_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < 1):
                raise GrowError(f"{name} must be in (0, 1), got {value!r}")
        for name in ("entropy", "noise"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < math.inf):
                raise GrowError(f"{name} must be a number >= 0, got {value!r}")
        if self.policy not in POLICIES:
            raise GrowError(f"policy must be one of {', '.join(POLICIES)}, got "
                            f"{self.policy!r}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 0):
            raise GrowError(f"workers must be a whole number >= 0, got {self.workers!r}")
        if self.train_images is not None and (not isinstance(self.train_images, int)
                                              or self.train_images < 1):
            raise GrowError(f"train_images must be at least 1, got {self.train_images!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(value: dict[str, Any]) -> GrowSettings:
        known = {f.name for f in fields(GrowSettings)}
        return GrowSettings(**{k: v for k, v in value.items() if k in known})

    # What a resumed run may change: where and how fast it runs, and how long it goes on.
    RESUMABLE = ("episodes", "workers", "address", "threads")

    def differences(self, other: GrowSettings) -> list[str]:
        return [f"{f.name} {getattr(other, f.name)!r} -> {getattr(self, f.name)!r}"
                for f in fields(self) if f.name not in self.RESUMABLE
                and getattr(self, f.name) != getattr(other, f.name)]


__all__ = ["POLICIES", "GrowError", "GrowSettings"]
