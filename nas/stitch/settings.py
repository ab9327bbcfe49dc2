"""The settings of `nas stitch`: a frozen dataclass checked when made (one-line `StitchError`s)
and written to the run's config.json."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, ClassVar

from nas.settings_checks import ResumableSettings, check_number, check_whole
from search_spaces import NasError

SAMPLINGS = ("uniform", "flops")  # how joint training picks the stitch of each step
INITS = ("lstsq", "random")  # how stitching layers start
MAX_ANCHORS = 3
LATENCY_DEVICES = ("cpu", "cuda")  # stitches are timed here, not predicted (docs/stitch.md)
FINE_TUNE_LR = {"sgd": 0.02, "adamw": 2e-4}


class StitchError(NasError):
    """A `nas stitch` setting, anchor or run folder that cannot be used."""


_whole = partial(check_whole, error=StitchError)
_number = partial(check_number, error=StitchError)


@dataclass(frozen=True, kw_only=True)
class StitchSettings(ResumableSettings):
    """One `nas stitch` run. `data` None: the data set the first anchor was trained on."""

    anchors: tuple[str, ...]
    epochs: float = 2.0  # joint training; 0 scores the stitches right after initialisation
    optimizer: str = "sgd"  # sgd or adamw (ViT anchors: AdamW, as they were trained)
    # cosine from this peak; None: FINE_TUNE_LR of the optimizer (the anchors are trained
    # already, so a fine-tuning step)
    lr: float | None = None
    batch_size: int = 128
    train_images: int | None = None  # cap on training images per epoch (None: all)
    sampling: str = "flops"
    buckets: int = 10  # FLOPs intervals of `flops` sampling
    init: str = "lstsq"
    # paired activations for the least-squares fit: a cut late in a network at low resolution
    # has few positions per image (1x1 at 28 px) against hundreds of channels
    init_images: int = 1024
    two_way: bool = True  # also stitch large -> small (SN-Netv2), not only small -> large
    distill: bool = False  # learn from the largest anchor as given (frozen copy) as well
    bn_images: int = 1000  # BatchNorm statistics of each stitch (0: keep the shared ones)
    eval_images: int | None = None  # cap on images scored per split (None: all)
    data: str | None = None
    data_dir: str | None = None
    val_fraction: float | None = None
    seed: int = 0
    threads: int = 1
    device: str | None = None  # cpu or cuda: time every stitch there (latency_ms)

    # what `--resume` may change: how the run is computed, not what it computes
    RESUMABLE: ClassVar[tuple[str, ...]] = ("threads", "device")

    def __post_init__(self) -> None:
        anchors = tuple(str(a) for a in self.anchors)
        object.__setattr__(self, "anchors", anchors)
        if not 2 <= len(anchors) <= MAX_ANCHORS:
            raise StitchError(f"give 2 to {MAX_ANCHORS} anchors (trained model files of one "
                              f"space family), got {len(anchors)}")
        if len(set(anchors)) != len(anchors):
            raise StitchError(f"an anchor is given twice: {sorted(anchors)}")
        _number("epochs", self.epochs, 0)
        if self.optimizer not in FINE_TUNE_LR:
            raise StitchError(f"optimizer must be one of {', '.join(FINE_TUNE_LR)}, got "
                              f"{self.optimizer!r}")
        if self.lr is None:
            object.__setattr__(self, "lr", FINE_TUNE_LR[self.optimizer])
        _number("lr", self.lr, 0, low_open=True)
        for name, low in (("batch_size", 1), ("buckets", 1), ("init_images", 1),
                          ("bn_images", 0), ("seed", 0), ("threads", 1)):
            _whole(name, getattr(self, name), low)
        for name in ("train_images", "eval_images"):
            if getattr(self, name) is not None:
                _whole(name, getattr(self, name), 1)
        if self.val_fraction is not None:
            _number("val_fraction", self.val_fraction, 0, 1, low_open=True)
        if self.sampling not in SAMPLINGS:
            raise StitchError(f"sampling must be one of {', '.join(SAMPLINGS)}, got "
                              f"{self.sampling!r}")
        if self.init not in INITS:
            raise StitchError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.device is not None and self.device not in LATENCY_DEVICES:
            raise StitchError(f"device must be one of {', '.join(LATENCY_DEVICES)} (every "
                              f"stitch is timed on this machine), got {self.device!r}")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "anchors": list(self.anchors)}


__all__ = ["FINE_TUNE_LR", "INITS", "LATENCY_DEVICES", "MAX_ANCHORS", "SAMPLINGS", "StitchError",
           "StitchSettings"]
