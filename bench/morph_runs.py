"""What the EAS and N2N benchmarks (bench/eas.py, bench/n2n.py) share: their run folders,
read from the committed files (trials.csv, summary.json; checkpoint.json is not committed),
and the mean over seeds with its standard error."""
from __future__ import annotations

import math
import statistics
from pathlib import Path


class Runs:
    """The run folders `<root>/<policy>-s<seed>` of one benchmark."""

    def __init__(self, root: Path):
        self.root = root

    def folder(self, policy: str, seed: int) -> Path:
        """`policy` is a run-name prefix: reinforce, random, reinforce-lr0.01."""
        return self.root / f"{policy}-s{seed}"

    def finished(self, policy: str, seed: int) -> bool:
        """All its episodes done: summary.json is written when a run ends (a repeat of a
        trained child is not trained again, so a run may train fewer than episodes x
        children)."""
        return (self.folder(policy, seed) / "summary.json").is_file()

    def rows(self, policy: str, seed: int) -> list[dict]:
        from nas.run_folder import read_trials

        path = self.folder(policy, seed) / "trials.csv"
        return read_trials(path) if path.is_file() else []


def mean_se(values: list[float]) -> tuple[float, float]:
    """The mean and its standard error (NaN where there are too few values)."""
    if len(values) < 2:
        return (values[0] if values else math.nan), math.nan
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


__all__ = ["Runs", "mean_se"]
