"""Errors of differentiable search: one-line messages naming what is accepted."""
from __future__ import annotations

from search_spaces import NasError


class RelaxationError(NasError):
    """A space (or a requested setting of it) cannot be searched by a differentiable method."""


class SearchConfigError(NasError):
    """A bad setting of a differentiable search (method, steps, cost metric, guard...)."""
