"""HOW the search runs: budgets, constraint-aware sampling, strategies, runners, CLI."""
from search_spaces import Arch, NasError, get_space, list_spaces

__all__ = ["Arch", "NasError", "get_space", "list_spaces"]
