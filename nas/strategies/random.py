"""`random`: uniform samples of the space, repaired to meet the constraints."""
from __future__ import annotations

import numpy as np

from nas.strategies.base import Strategy
from search_spaces import Arch


class RandomSearch(Strategy):
    """Constraint-aware random search; any number of objectives (it ignores them)."""

    name = "random"
    multi_objective = True
    # No options: the base class's `NoOptions`.

    def _propose(self, rng: np.random.Generator) -> Arch | None:
        return self._fresh(self.space.sample, rng)
