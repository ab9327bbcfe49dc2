"""Gradient-norm cap pilot (stop 30, docs/train.md): one `mobile_tiny` subnet trained with the
`mobile` ground truth's `e5-5k` recipe, the gradients' global norm capped at CAP (0: no cap),
printing per epoch the mean and largest loss and the median and largest gradient norm (before
the cap), then the test accuracy with the running BatchNorm averages.

    python bench/train_clip_pilot.py KEY CAP SEED [SEED ...]

The runs of stop 30 are kept in results/bench/train-clip/pilot.log.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from ranking_groundtruth import GROUND_TRUTHS, ROOT, load_split_data  # noqa: E402
from torch import nn  # noqa: E402

from estimators.train import evaluate, make_optimizer, plan_steps, train_epoch  # noqa: E402
from search_spaces.supernets.dead_taps import dead_taps_trimmed  # noqa: E402


class NormRecorder:
    """The optimizer, with the gradients' norm recorded (and capped at `cap`, 0: not) first."""

    def __init__(self, optimizer: torch.optim.Optimizer, params, cap: float):
        self.optimizer, self.params, self.cap = optimizer, list(params), cap
        self.norms: list[float] = []

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        norm = nn.utils.clip_grad_norm_(self.params, self.cap if self.cap > 0 else math.inf)
        self.norms.append(float(norm))
        self.optimizer.step()


def main() -> None:
    key, cap, seeds = sys.argv[1], float(sys.argv[2]), [int(s) for s in sys.argv[3:]]
    torch.set_num_threads(1)
    truth = GROUND_TRUTHS["mobile"]
    protocol = truth.protocols["e5-5k"]
    space = truth.space()
    data = load_split_data("mobile", protocol, ROOT.parent / "shared" / "data" / "fashion-mnist")
    arch = space.parse(key)
    resolution, recipe = space.input_size(arch), protocol.recipe
    for seed in seeds:
        torch.manual_seed(seed)
        model = space.build(arch, num_classes=data.num_classes, in_channels=data.in_channels)
        optimizer = NormRecorder(make_optimizer(model, recipe), model.parameters(), cap)
        _, per_epoch, total = plan_steps(data, recipe)
        step = 0
        with dead_taps_trimmed():
            for epoch in range(math.ceil(total / per_epoch)):
                model.train()
                step, _, losses = train_epoch(model, optimizer, data, recipe, seed=seed,
                                              epoch=epoch, step=step, total_steps=total,
                                              resolution=resolution)
                norms = optimizer.norms[-len(losses):]
                print(seed, epoch + 1, f"loss mean {np.mean(losses):.3f} max {np.max(losses):.3f}",
                      f"gradnorm median {np.median(norms):.2f} max {np.max(norms):.2f}",
                      flush=True)
            print(seed, "test", evaluate(model, data, "test", resolution=resolution), flush=True)


if __name__ == "__main__":
    main()
