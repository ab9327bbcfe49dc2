"""HOW the search runs: budgets, constraint-aware sampling, strategies, runners, CLI."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from search_spaces import Arch, NasError, get_space, list_spaces

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Arch", "NasError", "get_space", "list_spaces", "load"]


def load(path: str | Path) -> nn.Module:
    """The model `nas export` wrote to `path`, rebuilt as an `nn.Module` with its weights."""
    from nas.export import load as load_exported  # torch only when a model is loaded

    return load_exported(path)
