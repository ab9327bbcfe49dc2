"""Weight-sharing supernets: every architecture of a space as a view of one set of weights."""
from search_spaces.supernets.base import Supernet, SupernetError
from search_spaces.supernets.factory import (
                                             ElasticSupernet,
                                             OneShotSupernet,
                                             build_supernet,
                                             supernet_class,
)

__all__ = ["ElasticSupernet", "OneShotSupernet", "Supernet", "SupernetError", "build_supernet",
           "supernet_class"]
