"""The error of the strategies."""
from __future__ import annotations

from search_spaces import NasError


class StrategyError(NasError):
    """A strategy was asked for something it cannot do (bad option, wrong objectives...)."""
