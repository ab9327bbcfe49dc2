"""A layer graph: a sequence of nodes, each a primitive applied to earlier nodes; its text form
(the body of a key), its validity rules and its canonical form.

Text form: `n1=var_bwh(x);n2=sqrt(n1);n3=div(x,n2)`: nodes `n<i>=<primitive>(<inputs>)`
numbered from 1 and joined by ';', each input an initial node (x, zero, v0, v1, gamma, beta) or
an earlier node; the last node is the layer's output. `x` alone is the identity layer (no
nodes): what a gene assignment without any per-element function of x stands for.

Canonical form (what keys are made of), so that structurally equal graphs have equal keys:
only the nodes the output depends on, no two nodes computing the same thing, nodes numbered in
the post-order of a depth-first walk from the output (inputs of a commutative primitive walked
in an order fixed by their structure), and inputs of commutative primitives written nodes
first, then initial nodes in the order above. Algebraically equal graphs that differ in
structure (`neg(neg(x))` and `x`) keep different keys.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from search_spaces.errors import InvalidArchError
from search_spaces.layer_graph.primitives import (
    FULL_AXES,
    INITIAL_AXES,
    INITIAL_NODES,
    INPUT,
    PRIMITIVES,
    output_axes,
)

_NODE = re.compile(r"n([0-9]+)=([a-z_0-9]*)\(([^()]*)\)", re.ASCII)
_REF = re.compile(r"n([1-9][0-9]*)", re.ASCII)


class GraphError(InvalidArchError):
    """A layer graph that is malformed or breaks a validity rule (the message says which)."""


@dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[str, ...]

    def text(self, index: int) -> str:
        return f"n{index}={self.op}({','.join(self.inputs)})"


def node_index(token: str) -> int | None:
    """1-based index of a node reference `n<i>`, None for anything else."""
    match = _REF.fullmatch(token)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class LayerGraph:
    """Nodes in execution order; the last one is the output (x itself where there are none)."""

    nodes: tuple[Node, ...]

    @property
    def text(self) -> str:
        return ";".join(node.text(i) for i, node in enumerate(self.nodes, 1)) or INPUT

    @property
    def output(self) -> str:
        return f"n{len(self.nodes)}" if self.nodes else INPUT

    def __str__(self) -> str:
        return self.text

    # --- text ---------------------------------------------------------------------------------
    @staticmethod
    def parse(text: str) -> LayerGraph:
        """The graph of a text form; `GraphError` names the first malformed part."""
        text = text.strip()
        if not text:
            raise GraphError("no nodes")
        if text == INPUT:
            return LayerGraph(())
        nodes = []
        for i, part in enumerate(text.split(";"), 1):
            match = _NODE.fullmatch(part.strip())
            if match is None:
                raise GraphError(f"node {i} {part!r} is not n{i}=<primitive>(<inputs>)")
            if match.group(1) != str(i):
                raise GraphError(f"node {i} is numbered n{match.group(1)}; nodes are "
                                 f"numbered n1, n2, ... in order")
            args = match.group(3)
            inputs = tuple(t.strip() for t in args.split(",")) if args.strip() else ()
            nodes.append(Node(match.group(2), inputs))
        return LayerGraph(tuple(nodes))

    # --- validity -----------------------------------------------------------------------------
    def axes(self) -> dict[str, frozenset[str]]:
        """What each initial node and node varies along (b, c, h, w); the graph must be
        well-formed (`check` says)."""
        axes = dict(INITIAL_AXES)
        for i, node in enumerate(self.nodes, 1):
            axes[f"n{i}"] = output_axes(node.op, [axes[t] for t in node.inputs])
        return axes

    def check(self, max_nodes: int) -> LayerGraph:
        """This graph if it is a valid layer; else `GraphError` naming the broken rule: known
        primitives with their number of inputs, inputs among the initial and earlier nodes,
        at most `max_nodes` nodes, and an output that is a per-element function of x."""
        if len(self.nodes) > max_nodes:
            raise GraphError(f"{len(self.nodes)} nodes; a layer has at most {max_nodes}")
        for i, node in enumerate(self.nodes, 1):
            primitive = PRIMITIVES.get(node.op)
            if primitive is None:
                raise GraphError(f"n{i}: unknown primitive {node.op!r}; known: "
                                 f"{', '.join(PRIMITIVES)}")
            if len(node.inputs) != primitive.arity:
                raise GraphError(f"n{i}: {node.op} takes {primitive.arity} input(s), "
                                 f"got {len(node.inputs)}")
            for token in node.inputs:
                index = node_index(token)
                if token not in INITIAL_NODES and (index is None or index >= i):
                    raise GraphError(f"n{i}: input {token!r} is neither an initial node "
                                     f"({', '.join(INITIAL_NODES)}) nor an earlier node")
        if self.axes()[self.output] != FULL_AXES:
            raise GraphError(f"the output {self.output} is not a per-element function of x "
                             f"(it must vary along batch, channel, height and width)")
        return self

    # --- canonical form -----------------------------------------------------------------------
    def canonical(self) -> LayerGraph:
        """The same layer in canonical form (see the module's docstring); the graph must be
        well-formed."""
        digests = {name: name for name in INITIAL_NODES}
        for i, node in enumerate(self.nodes, 1):
            args = [digests[t] for t in node.inputs]
            if PRIMITIVES[node.op].commutative:
                args.sort()
            text = f"{node.op}({','.join(args)})"
            digests[f"n{i}"] = hashlib.sha1(text.encode()).hexdigest()[:16]
        renamed: dict[str, str] = {}  # digest -> name in the new graph
        nodes: list[Node] = []

        def visit(token: str) -> str:
            if token in INITIAL_NODES:
                return token
            digest = digests[token]
            if digest not in renamed:
                node = self.nodes[node_index(token) - 1]
                commutative = PRIMITIVES[node.op].commutative
                walk = sorted(node.inputs, key=digests.__getitem__) if commutative \
                    else node.inputs
                inputs = [visit(t) for t in walk]
                if commutative:
                    inputs.sort(key=_written_order)
                nodes.append(Node(node.op, tuple(inputs)))
                renamed[digest] = f"n{len(nodes)}"
            return renamed[digest]

        visit(self.output)
        return LayerGraph(tuple(nodes))

    def uses(self) -> set[str]:
        """The initial nodes the graph reads."""
        return {t for node in self.nodes for t in node.inputs if t in INITIAL_NODES}


def _written_order(token: str) -> tuple[int, int]:
    index = node_index(token)
    return (0, index) if index is not None else (1, INITIAL_NODES.index(token))
