"""The callback types that long-running estimator work reports through, one name per shape."""
from __future__ import annotations

from collections.abc import Callable

StepProgress = Callable[[int, int, float], None]  # (step, total steps, running loss): training
CountProgress = Callable[[int, int], None]  # (done, total): measuring blocks, validating
Log = Callable[[str], None]  # one line per event

__all__ = ["CountProgress", "Log", "StepProgress"]
