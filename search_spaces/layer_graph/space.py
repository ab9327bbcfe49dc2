"""The normalization-activation layer search space of EvoNorm (Liu et al. 2020) as a
`SearchSpace`, so that the engine's strategies, runners and result files work on layers as
they do on networks.

Encoding: a fixed-length gene list (as Cartesian genetic programming), `max_nodes` slots of
three genes each: `n<i>` (the primitive), `n<i>a` and `n<i>b` (its inputs: an initial node or
an earlier slot). Every slot has fixed options, so `Arch`, one-hot vectors, single-gene
neighbourhoods, TPE and RL policies apply unchanged. `canonical` (what `make` applies) turns
any assignment into one layer: the output is the last slot that is a per-element function of x
(slots after it, and slots that read an empty one, are dead; with no such slot the layer is the
identity, key `x`), then the graph is put in canonical form (`graph.LayerGraph.canonical`) and
written back to the first slots, the rest None. So equal graphs are equal archs with equal
keys, and `make` never rejects a full assignment of options (as TPE and RL draw them).

Sampling, mutation and keys written by hand are stricter than `make`: the last node is the
output and must be a per-element function of x. A sample draws `max_nodes // 2` (at least 1)
to `max_nodes` nodes, each a uniformly drawn primitive on uniformly drawn earlier nodes (the
paper's random graphs), until its last node is a valid output; dead nodes are pruned.
A mutation (paper: a node gets a new primitive and new inputs) is one of `MUTATIONS`, drawn
uniformly, redrawn until the result is valid and has another key (the identity's mutation
adds a node). Neither takes a moment of a node that does not depend on x (`operators`).

This space describes a layer, not a network: `build_layer` (or `layer_graph.build`) makes its
module; `blocks`, `input_size` and `build` raise a `NasError` saying so.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from search_spaces import settings
from search_spaces.arch import Arch, Gene
from search_spaces.errors import InvalidArchError, NasError
from search_spaces.layer_graph.graph import GraphError, LayerGraph, Node
from search_spaces.layer_graph.operators import MUTATIONS, MUTATORS, constant_moments, random_node
from search_spaces.layer_graph.primitives import (
    FULL_AXES,
    INITIAL_AXES,
    INITIAL_NODES,
    PRIMITIVES,
    output_axes,
)
from search_spaces.space import BlockSpec, Dimension, Rng, SearchSpace, as_rng, config_from_dict

SPACE_NAME = "evonorm"
MAX_TRIES = 100
KEY_FORM = ("'n1=<primitive>(<input>[,<input>]);n2=...' (the last node is the output; an "
            "input is x, zero, v0, v1, gamma, beta or an earlier n<i>), or 'x' (the identity)")

# The four reference layers, in canonical form (eps inside sqrt; `div` exact for them).
# EvoNorm-B0: x / max(sqrt(var_bwh(x) + eps), v1 * x + sqrt(var_wh(x) + eps)) * gamma + beta
# EvoNorm-S0: x * sigmoid(v1 * x) / sqrt(var_group(x) + eps) * gamma + beta
# BN-ReLU: max((x - mean_bwh(x)) / sqrt(var_bwh(x) + eps) * gamma + beta, 0); GN-ReLU alike.
REFERENCES: dict[str, str] = {
    "evonorm_b0": "evonorm:n1=mul(x,v1);n2=var_wh(x);n3=sqrt(n2);n4=add(n1,n3);n5=var_bwh(x);"
                  "n6=sqrt(n5);n7=max(n4,n6);n8=div(x,n7);n9=mul(n8,gamma);n10=add(n9,beta)",
    "evonorm_s0": "evonorm:n1=mul(x,v1);n2=sigmoid(n1);n3=mul(n2,x);n4=var_group(x);n5=sqrt(n4);"
                  "n6=div(n3,n5);n7=mul(n6,gamma);n8=add(n7,beta)",
    "bn_relu": "evonorm:n1=mean_bwh(x);n2=neg(n1);n3=add(n2,x);n4=var_bwh(x);n5=sqrt(n4);"
               "n6=div(n3,n5);n7=mul(n6,gamma);n8=add(n7,beta);n9=max(n8,zero)",
    "gn_relu": "evonorm:n1=mean_group(x);n2=neg(n1);n3=add(n2,x);n4=var_group(x);n5=sqrt(n4);"
               "n6=div(n3,n5);n7=mul(n6,gamma);n8=add(n7,beta);n9=max(n8,zero)",
}


@dataclass(frozen=True)
class LayerSpaceConfig:
    """`max_nodes`: the most intermediate nodes a layer has (the references need 10)."""

    max_nodes: int = 16

    def __post_init__(self) -> None:
        settings.int_value("max_nodes", self.max_nodes, 1, 64)


class LayerSpace(SearchSpace):
    """Layers of at most `config.max_nodes` nodes over the primitives of `PRIMITIVES`."""

    def __init__(self, name: str = SPACE_NAME, config: LayerSpaceConfig = LayerSpaceConfig()):
        self.name = name
        self.config = config
        dims = []
        for i in range(1, config.max_nodes + 1):
            inputs = INITIAL_NODES + tuple(f"n{j}" for j in range(1, i))
            dims += [Dimension(f"n{i}", tuple(PRIMITIVES)), Dimension(f"n{i}a", inputs),
                     Dimension(f"n{i}b", inputs)]
        self.dimensions = tuple(dims)

    # --- graphs and archs ---------------------------------------------------------------------
    def graph(self, arch: Arch) -> LayerGraph:
        """The layer graph of `arch` (canonical)."""
        self.check(arch)
        return _graph_from_slots(arch.as_dict(), self.config.max_nodes)

    def arch(self, graph: LayerGraph) -> Arch:
        """The arch of a valid `graph` (`GraphError` says why one is not)."""
        graph.check(self.config.max_nodes)
        return self.make(_genes(graph, self.config.max_nodes))

    def make(self, genes: Mapping[str, Gene]) -> Arch:
        """As `SearchSpace.make`, but a gene not given is an empty slot, not the first option."""
        return super().make({**{d.name: None for d in self.dimensions}, **genes})

    def canonical(self, genes: dict[str, Gene]) -> dict[str, Gene]:
        for dim in self.dimensions:  # before pruning, which would hide a bad gene
            value = genes.get(dim.name)
            if value is not None and value not in dim.options:
                raise InvalidArchError(f"{self.name}: {dim.name}={value!r} is not one of "
                                       f"{list(dim.options)}")
        graph = _graph_from_slots(genes, self.config.max_nodes)
        return _genes(graph.canonical(), self.config.max_nodes)

    def contains(self, arch: Arch) -> bool:
        try:
            return super().contains(arch)
        except InvalidArchError:
            return False

    # --- keys ---------------------------------------------------------------------------------
    def encode(self, arch: Arch) -> str:
        return self.graph(arch).text

    def decode(self, body: str) -> Arch:
        try:
            return self.arch(LayerGraph.parse(body))
        except GraphError as exc:
            self.bad_key(body, str(exc))

    def key_form(self) -> str:
        return KEY_FORM

    def reference_archs(self) -> dict[str, Arch]:
        """The layers of `REFERENCES` that fit in `max_nodes`."""
        refs = {}
        for name, key in REFERENCES.items():
            graph = LayerGraph.parse(key.partition(":")[2])
            if len(graph.nodes) <= self.config.max_nodes:
                refs[name] = self.arch(graph)
        return refs

    def min_arch(self) -> Arch:
        """The identity layer `x` (no nodes)."""
        return self.decode("x")

    def max_arch(self) -> Arch:
        """A chain of `max_nodes` nodes (the size bound)."""
        nodes = [Node("mul", ("x", "v1"))]
        nodes += [Node("add", (f"n{i}", "x")) for i in range(1, self.config.max_nodes)]
        return self.arch(LayerGraph(tuple(nodes)))

    # --- search operators ---------------------------------------------------------------------
    def sample(self, rng: Rng = None) -> Arch:
        rng = as_rng(rng)
        high = self.config.max_nodes
        for _ in range(MAX_TRIES * 10):
            nodes: list[Node] = []
            for _ in range(int(rng.integers(max(1, high // 2), high + 1))):
                nodes.append(random_node(rng, nodes, len(nodes) + 1))
            graph = LayerGraph(tuple(nodes))
            if graph.axes()[graph.output] == FULL_AXES and \
                    not constant_moments(graph.canonical()):
                return self.arch(graph)
        raise InvalidArchError(f"{self.name}: no valid layer in {MAX_TRIES * 10} draws")

    def mutate(self, arch: Arch, rng: Rng = None, num_genes: int = 1, *,
               kind: str | None = None) -> Arch:
        """`num_genes` successive mutations, each of `kind` (one of `MUTATIONS`; by default
        drawn each time); always another key, else `InvalidArchError` says why not."""
        if kind is not None and kind not in MUTATIONS:
            raise NasError(f"unknown mutation {kind!r}; known: {', '.join(MUTATIONS)}")
        rng = as_rng(rng)
        graph = self.graph(arch)
        for _ in range(max(1, num_genes)):
            graph = self._mutate_once(graph, rng, kind)
        return self.arch(graph)

    def _mutate_once(self, graph: LayerGraph, rng: np.random.Generator,
                     kind: str | None) -> LayerGraph:
        full = len(graph.nodes) >= self.config.max_nodes
        if kind == "insert" and full:
            raise InvalidArchError(f"{self.name}: cannot insert a node into {graph.text}: it "
                                   f"has the most nodes a layer may have "
                                   f"({self.config.max_nodes})")
        kinds = [kind] if kind else [k for k in MUTATIONS if k != "insert" or not full]
        for _ in range(MAX_TRIES):
            kind = kinds[int(rng.integers(len(kinds)))]
            nodes = MUTATORS[kind](list(graph.nodes), rng) if graph.nodes \
                else [random_node(rng, [], 1)]
            child = LayerGraph(tuple(nodes))
            try:
                child = child.check(self.config.max_nodes).canonical()
            except GraphError:
                continue
            if child != graph and not constant_moments(child):
                return child
        what = f"{kinds[0]!r} mutation" if len(kinds) == 1 else "mutation"
        raise InvalidArchError(f"{self.name}: no {what} of {graph.text} in {MAX_TRIES} tries "
                               f"gave a valid layer with another key")

    def crossover(self, a: Arch, b: Arch, rng: Rng = None) -> Arch:
        """Each slot from either parent (where both have it), as long as one parent, chosen at
        random; the first parent again if no such child is valid."""
        rng = as_rng(rng)
        first, second = self.graph(a).nodes, self.graph(b).nodes
        for _ in range(10):
            length = len(first) if rng.random() < 0.5 else len(second)
            nodes = []
            for i in range(length):
                options = [p[i] for p in (first, second) if i < len(p)]
                nodes.append(options[int(rng.integers(len(options)))])
            graph = LayerGraph(tuple(nodes))
            if graph.axes()[graph.output] == FULL_AXES and \
                    not constant_moments(graph.canonical()):
                return self.arch(graph)
        return a

    # --- modules ------------------------------------------------------------------------------
    def build_layer(self, arch: Arch, channels: int, groups: int | None = None,
                    **options: Any):
        """The layer's `nn.Module` (see `build`)."""
        return build(arch, channels, groups, **options)

    def _not_a_network(self) -> NoReturn:
        raise NasError(f"space {self.name!r} describes a normalization-activation layer, not "
                       f"a network: build it with build_layer(arch, channels)")

    def blocks(self, arch: Arch, num_classes: int | None = None,
               in_channels: int | None = None) -> list[BlockSpec]:
        self._not_a_network()

    def input_size(self, arch: Arch) -> int:
        self._not_a_network()

    def build(self, arch: Arch, num_classes: int | None = None,
              in_channels: int | None = None):
        self._not_a_network()


# --- helpers ----------------------------------------------------------------------------------
def _genes(graph: LayerGraph, max_nodes: int) -> dict[str, Gene]:
    genes: dict[str, Gene] = {}
    for i in range(1, max_nodes + 1):
        node = graph.nodes[i - 1] if i <= len(graph.nodes) else None
        inputs = node.inputs if node else ()
        genes[f"n{i}"] = node.op if node else None
        genes[f"n{i}a"] = inputs[0] if inputs else None
        genes[f"n{i}b"] = inputs[1] if len(inputs) > 1 else None
    return genes


def _graph_from_slots(genes: Mapping[str, Gene], max_nodes: int) -> LayerGraph:
    """The graph of any gene assignment: slots without a primitive, or reading such a slot,
    are left out; the output is the last slot that is a per-element function of x, else x."""
    renamed = {t: t for t in INITIAL_NODES}  # slot name -> name in the graph
    axes = dict(INITIAL_AXES)
    nodes: list[Node] = []
    output = 0
    for i in range(1, max_nodes + 1):
        op = genes.get(f"n{i}")
        if op is None:
            continue
        raw = [genes.get(f"n{i}a"), genes.get(f"n{i}b")][:PRIMITIVES[op].arity]
        if any(t not in renamed for t in raw):
            continue
        inputs = tuple(renamed[t] for t in raw)
        nodes.append(Node(op, inputs))
        name = renamed[f"n{i}"] = f"n{len(nodes)}"
        axes[name] = output_axes(op, [axes[t] for t in inputs])
        if axes[name] == FULL_AXES:
            output = len(nodes)
    return LayerGraph(tuple(nodes[:output]))


def build(layer: Any, channels: int, groups: int | None = None, **options: Any):
    """The `nn.Module` of `layer` (an `Arch` of a layer space, its key, or a `LayerGraph`) for
    `channels` channels (`module.build_graph`: groups, eps, momentum, check_finite)."""
    from search_spaces.layer_graph.module import build_graph  # torch loads on first use

    graph, key = graph_of(layer)
    return build_graph(graph, key, channels, groups, **options)


def graph_of(layer: Any) -> tuple[LayerGraph, str]:
    """A layer given as an `Arch` of a layer space, its key, or a `LayerGraph`: its canonical
    graph and its key (the graph's text for a bare graph)."""
    if isinstance(layer, str):
        layer = Arch.decode(layer) if ":" in layer else _default().decode(layer)
    if isinstance(layer, Arch):
        space = layer.search_space
        if not isinstance(space, LayerSpace):
            raise NasError(f"{layer.key} is a network, not a layer of a layer space")
        return space.graph(layer), layer.key
    if isinstance(layer, LayerGraph):
        graph = layer.check(len(layer.nodes)).canonical()
        return graph, graph.text
    raise NasError(f"a layer is an Arch of a layer space, its key or a LayerGraph; got "
                   f"{type(layer).__name__}")


def _default() -> LayerSpace:
    from search_spaces.registry import get_space

    return get_space(SPACE_NAME)


def create(name: str, config: Mapping[str, Any] | None = None) -> LayerSpace:
    """The layer space `name` with `config`'s settings (the registry's entry point)."""
    return LayerSpace(name, config_from_dict(LayerSpaceConfig, name, dict(config or {})))
