"""What a killed `nas stitch` keeps: `joint.pt` in the run folder, written once the stitching
layers are initialised and scored, then after every epoch of joint training. It holds the
family's weights, the scores measured before training and the training state (`JointState`),
so `nas stitch --resume RUN` continues at the epoch it stopped and ends where an uninterrupted
run ends. Loads with `torch.load(..., weights_only=True)`: tensors and plain data only.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from estimators.files import atomic_write_bytes
from nas.run_lock import writing
from nas.stitch.settings import StitchError
from search_spaces import first_line

PROGRESS_FILE = "joint.pt"
FORMAT = "nas.stitch.progress"


@dataclass
class JointState:
    """Joint training so far: whole epochs done, the global step, each step's loss, seconds of
    training, and the optimizer's, the stitch sampler's and torch's generator states (None
    before the first epoch)."""

    epochs_done: int = 0
    step: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    optimizer: dict[str, Any] | None = None
    sampler: dict[str, Any] | None = None
    torch_rng: torch.Tensor | None = None


@dataclass
class Progress:
    """A run's `joint.pt`: the weights, the scores measured before joint training
    (`originals`: the anchors as given; `initial`: every stitch after initialisation;
    `residuals`: the least-squares fits), the training state, and the run's wall seconds."""

    state_dict: dict[str, torch.Tensor]
    originals: list[dict[str, float]]
    initial: list[dict[str, float]]
    residuals: dict[int, float]
    joint: JointState
    seconds: float


def save_progress(run_dir: Path, network: torch.nn.Module, progress: Progress) -> None:
    """`progress` with `network`'s current weights to RUN/joint.pt, atomically."""
    joint = progress.joint
    payload = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu().clone() for k, v in network.state_dict().items()},
        "originals": progress.originals, "initial": progress.initial,
        "residuals": {str(k): v for k, v in progress.residuals.items()},
        "joint": {"epochs_done": joint.epochs_done, "step": joint.step,
                  "losses": list(joint.losses), "seconds": joint.seconds,
                  "optimizer": joint.optimizer, "sampler": joint.sampler,
                  "torch_rng": joint.torch_rng},
        "seconds": progress.seconds}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = Path(run_dir) / PROGRESS_FILE
    with writing(path):  # a full disk is one line, and the previous file stays whole
        atomic_write_bytes(path, buffer.getvalue())


def load_progress(run_dir: Path) -> Progress | None:
    """RUN/joint.pt, or None where the run stopped before its layers were initialised."""
    path = Path(run_dir) / PROGRESS_FILE
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != FORMAT:
            raise ValueError("not a `nas stitch` progress file")
        joint = JointState(**payload["joint"])
        return Progress(payload["state_dict"], list(payload["originals"]),
                        list(payload["initial"]),
                        {int(k): float(v) for k, v in payload["residuals"].items()},
                        joint, float(payload["seconds"]))
    except Exception as exc:  # truncated, foreign or damaged
        raise StitchError(f"{path} is damaged ({type(exc).__name__}: {first_line(exc)}); start "
                          f"the run again in another folder") from None


__all__ = ["PROGRESS_FILE", "JointState", "Progress", "load_progress", "save_progress"]
