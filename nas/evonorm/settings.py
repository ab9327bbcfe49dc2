"""The settings of `nas evolve-layer` (the EvoNorm layer search): a frozen dataclass checked
when made (one-line `LayerSearchError`s), written to the run's config.json and compared on
--resume. Defaults and why: docs/evonorm.md ("The search")."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, ClassVar

from nas.evonorm.plug import DEFAULT_ARCHS
from nas.settings_checks import ResumableSettings, check_number, check_whole
from search_spaces import NasError

PROTOCOLS = ("stability", "quality")  # the rejection protocols, in the order they run
INITIAL = ("random", "references")  # how the population starts


class LayerSearchError(NasError):
    """A `nas evolve-layer` setting or run folder that cannot be used."""


_number = partial(check_number, error=LayerSearchError)


def _whole(settings: Any, lows: dict[str, int]) -> None:
    for name, low in lows.items():
        check_whole(name, getattr(settings, name), low, LayerSearchError)


@dataclass(frozen=True, kw_only=True)
class LayerSearchSettings(ResumableSettings):
    """What a layer search runs: the evolution, the rejection protocols, the fitness recipe,
    the data and the workers."""

    # --- evolution: aging tournament selection with a Pareto parent (the paper's) ---------------
    population: int = 16
    tournament: float = 0.25  # share of the population drawn for each tournament
    candidates: int = 500  # the budget: every layer drawn, rejected and repeated ones included
    batch: int = 1  # candidates proposed per round (evaluated in parallel with --workers)
    initial: str = "references"  # the first members: the reference layers, or "random" ones
    # (the paper's start; stop 29 measured both, docs/evonorm.md)
    # --- finalists: the best layers retrained from other seeds, the pick made on those ---------
    finalists: int = 8  # layers of highest mean fitness retrained after the budget (0: none)
    finalist_seeds: tuple[int, ...] = (1, 2)
    # --- fitness: each evaluation architecture trained briefly, its validation accuracy ---------
    archs: tuple[str, ...] = DEFAULT_ARCHS
    space_files: tuple[str, ...] = ()  # space files defining the archs' spaces
    epochs: float = 1.0
    train_images: int = 6000  # per epoch
    batch_size: int = 128
    lr: float = 0.05
    warmup: float = 0.2  # share of the steps with a linear warm-up
    eval_images: int = 2000  # validation images scored
    recal_images: int = 1000  # training images re-estimating running batch statistics
    resolution: int = 32  # pixels per side the data is resized to
    # --- rejection protocols ---------------------------------------------------------------------
    protocols: tuple[str, ...] = PROTOCOLS
    stability_steps: int = 5  # gradient-ascent steps on the input perturbation
    stability_eps: float = 0.5  # L-inf bound of the perturbation (normalised input units)
    stability_batch: int = 32
    stability_bound: float = 100.0  # reject above this many times BN-ReLU's gradient norm
    quality_steps: int = 30
    quality_batch: int = 64
    quality_images: int = 500  # validation images scored
    quality_share: float = 0.5  # of BN-ReLU's accuracy gain over chance
    # --- data and workers --------------------------------------------------------------------
    data: str = "fashion-mnist"
    data_dir: str | None = None
    val_fraction: float = 1 / 6
    seed: int = 0
    threads: int = 1  # torch threads per evaluation
    workers: int = 0  # Ray workers (0: evaluate in this process)
    address: str | None = None  # a Ray cluster to join

    # What a resumed run may change: where and how fast it runs, and how long it goes on.
    RESUMABLE: ClassVar[tuple[str, ...]] = ("candidates", "workers", "address", "threads",
                                            "finalists", "finalist_seeds")

    def __post_init__(self) -> None:
        for name in ("archs", "space_files", "protocols"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
                    not all(isinstance(v, str) and v for v in value):
                raise LayerSearchError(f"{name} must be a list of names, got {value!r:.80}")
            object.__setattr__(self, name, tuple(value))
        seeds = self.finalist_seeds
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in seeds):
            raise LayerSearchError(f"finalist_seeds must be a list of seeds (whole numbers >= "
                                   f"0), got {seeds!r:.80}")
        object.__setattr__(self, "finalist_seeds", tuple(seeds))
        if self.finalists and (not seeds or self.seed in seeds or len(set(seeds)) != len(seeds)):
            raise LayerSearchError(f"finalist_seeds must be distinct seeds other than the "
                                   f"search's seed {self.seed}, got {list(seeds)}")
        if self.initial not in INITIAL:
            raise LayerSearchError(f"initial must be one of {', '.join(INITIAL)}, got "
                                   f"{self.initial!r:.80}")
        if not self.archs:
            raise LayerSearchError("archs is empty: give at least one evaluation architecture")
        if len(set(self.archs)) != len(self.archs):
            raise LayerSearchError("archs names an architecture twice")
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad or len(set(self.protocols)) != len(self.protocols):
            raise LayerSearchError(f"protocols must be distinct names among "
                                   f"{', '.join(PROTOCOLS)}, got {list(self.protocols)}")
        _whole(self, {"population": 2, "candidates": 1, "batch": 1, "train_images": 1,
                      "batch_size": 1, "eval_images": 1, "recal_images": 0, "resolution": 8,
                      "finalists": 0, "stability_steps": 0, "stability_batch": 2, "quality_steps": 1,
                      "quality_batch": 2, "quality_images": 1, "seed": 0, "threads": 1,
                      "workers": 0})
        _number("tournament", self.tournament, 0, 1, low_open=True, high_open=False)
        _number("epochs", self.epochs, 0, math.inf, low_open=True)
        _number("lr", self.lr, 0, math.inf, low_open=True)
        _number("warmup", self.warmup, 0, 1)
        _number("stability_eps", self.stability_eps, 0, math.inf)
        _number("stability_bound", self.stability_bound, 1, math.inf, low_open=True)
        _number("quality_share", self.quality_share, 0, 1, high_open=False)
        _number("val_fraction", self.val_fraction, 0, 1, low_open=True)

    def tournament_size(self) -> int:
        """Members drawn for a tournament: the share of the population, at least one."""
        return max(1, math.ceil(self.tournament * self.population - 1e-9))

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> LayerSearchSettings:
        # runs written before `initial` existed started from random layers
        return super().from_json({"initial": "random", **value})


__all__ = ["INITIAL", "PROTOCOLS", "LayerSearchError", "LayerSearchSettings"]
