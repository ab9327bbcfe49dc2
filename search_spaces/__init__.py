"""WHAT can be built: ops, architectures, search spaces (the bottom layer; imports nothing of ours)."""
from search_spaces.arch import Arch
from search_spaces.errors import InvalidArchError, NasError, UnknownSpaceError, first_line
from search_spaces.registry import get_space, list_spaces, load_space_file, register_space
from search_spaces.space import BlockSpec, Chain, Dimension, SearchSpace

__all__ = ["Arch", "BlockSpec", "Chain", "Dimension", "InvalidArchError", "NasError", "Network",
           "SearchSpace", "UnknownSpaceError", "first_line", "get_space", "list_spaces",
           "load_space_file", "register_space"]


def __getattr__(name: str):
    """`Network` imports torch: load it only when asked for."""
    if name == "Network":
        from search_spaces.network import Network

        return Network
    raise AttributeError(f"module 'search_spaces' has no attribute {name!r}")
