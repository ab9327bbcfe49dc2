"""Normalization-activation layers as searchable computation graphs (EvoNorm, Liu et al. 2020):
the primitives, the graph and its key, the space, and the layer as an `nn.Module`.

`build` loads torch on first use, `LayerGraphModule` on first access; the rest does not.
"""
from search_spaces.layer_graph.graph import GraphError, LayerGraph, Node
from search_spaces.layer_graph.primitives import INITIAL_NODES, PARAMETERS, PRIMITIVES, Primitive
from search_spaces.layer_graph.space import (
    MUTATIONS,
    REFERENCES,
    SPACE_NAME,
    LayerSpace,
    LayerSpaceConfig,
    build,
    graph_of,
)

__all__ = ["INITIAL_NODES", "MUTATIONS", "PARAMETERS", "PRIMITIVES", "REFERENCES", "SPACE_NAME",
           "GraphError", "LayerGraph", "LayerGraphModule", "LayerSpace", "LayerSpaceConfig",
           "Node", "NonFiniteLayerError", "Primitive", "build", "graph_of"]


def __getattr__(name: str):
    if name in ("LayerGraphModule", "NonFiniteLayerError"):
        from search_spaces.layer_graph import module

        return getattr(module, name)
    raise AttributeError(f"module 'search_spaces.layer_graph' has no attribute {name!r}")
