"""Random nodes and mutations of layer graphs: what `LayerSpace.sample` and `LayerSpace.mutate`
draw from (the paper's random graphs and node mutations, plus three smaller moves).

One rule here is stricter than a graph's validity (`LayerGraph.check`): a moment (mean or
variance) is only ever taken of a node that depends on x. The moment of a learned per-channel
vector or of a constant is that vector itself or zero, a needless node; the first default
search (stop 22) spent much of its budget on such layers (`mean_group(gamma)`, `var_wh(v1)`),
algebraic variants of one another that no key could tell apart. Keys written by hand may still
hold such nodes.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from search_spaces.layer_graph.graph import LayerGraph, Node, node_index
from search_spaces.layer_graph.primitives import INITIAL_NODES, INPUT, PRIMITIVES

MUTATIONS = ("node", "primitive", "input", "insert")


def depends_on_x(nodes: Sequence[Node]) -> set[str]:
    """x and the nodes of `nodes` that read it, directly or through earlier nodes."""
    dependent = {INPUT}
    for i, node in enumerate(nodes, 1):
        if any(t in dependent for t in node.inputs):
            dependent.add(f"n{i}")
    return dependent


def constant_moments(graph: LayerGraph) -> list[str]:
    """The nodes of `graph` that take a moment of something that does not depend on x."""
    dependent = depends_on_x(graph.nodes)
    return [f"n{i}" for i, node in enumerate(graph.nodes, 1)
            if PRIMITIVES[node.op].aggregate is not None and node.inputs[0] not in dependent]


def available(index: int) -> tuple[str, ...]:
    """What node `index` (1-based) may read."""
    return INITIAL_NODES + tuple(f"n{j}" for j in range(1, index))


def pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def random_node(rng: np.random.Generator, nodes: Sequence[Node], index: int) -> Node:
    """A uniformly drawn primitive at position `index` (1-based) on uniformly drawn inputs
    among the initial nodes and `nodes[:index - 1]`; a moment reads a node that depends on x."""
    op = pick(rng, tuple(PRIMITIVES))
    options = available(index)
    if PRIMITIVES[op].aggregate is not None:
        dependent = depends_on_x(nodes[:index - 1])
        options = tuple(t for t in options if t in dependent)
    return Node(op, tuple(pick(rng, options) for _ in range(PRIMITIVES[op].arity)))


def mutate_node(nodes: list[Node], rng: np.random.Generator) -> list[Node]:
    """The paper's mutation: a node gets a new primitive and new inputs."""
    i = int(rng.integers(len(nodes)))
    nodes[i] = random_node(rng, nodes, i + 1)
    return nodes


def mutate_primitive(nodes: list[Node], rng: np.random.Generator) -> list[Node]:
    """A node gets another primitive, keeping its inputs (a new one where it needs more)."""
    i = int(rng.integers(len(nodes)))
    op = pick(rng, [p for p in PRIMITIVES if p != nodes[i].op])
    inputs = nodes[i].inputs + (pick(rng, available(i + 1)),)
    nodes[i] = Node(op, inputs[:PRIMITIVES[op].arity])
    return nodes


def mutate_input(nodes: list[Node], rng: np.random.Generator) -> list[Node]:
    """One input of a node reads another node."""
    i = int(rng.integers(len(nodes)))
    inputs = list(nodes[i].inputs)
    slot = int(rng.integers(len(inputs)))
    inputs[slot] = pick(rng, [t for t in available(i + 1) if t != inputs[slot]])
    nodes[i] = Node(nodes[i].op, tuple(inputs))
    return nodes


def insert_node(nodes: list[Node], rng: np.random.Generator) -> list[Node]:
    """A new node on an edge: it reads what one input of a node read (and, if binary, another
    earlier node), and that input now reads it."""
    i = int(rng.integers(len(nodes)))
    slot = int(rng.integers(len(nodes[i].inputs)))
    op = pick(rng, tuple(PRIMITIVES))
    first = nodes[i].inputs[slot]
    new = Node(op, ((first,) + (pick(rng, available(i + 1)),))[:PRIMITIVES[op].arity])
    shifted = [Node(n.op, tuple(_shift(t, i + 1) for t in n.inputs)) for n in nodes[i:]]
    consumer = list(shifted[0].inputs)
    consumer[slot] = f"n{i + 1}"
    shifted[0] = Node(shifted[0].op, tuple(consumer))
    return nodes[:i] + [new] + shifted


def _shift(token: str, start: int) -> str:
    """A reference renumbered for a node inserted at `start` (1-based)."""
    index = node_index(token)
    return f"n{index + 1}" if index is not None and index >= start else token


MUTATORS: dict[str, Callable[[list[Node], np.random.Generator], list[Node]]] = {
    "node": mutate_node, "primitive": mutate_primitive, "input": mutate_input,
    "insert": insert_node}

__all__ = ["MUTATIONS", "MUTATORS", "available", "constant_moments", "depends_on_x", "pick",
           "random_node"]
