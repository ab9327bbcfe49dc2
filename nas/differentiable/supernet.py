"""The over-parameterised network of a relaxation: every candidate block of every position,
mixed by per-dimension weights.

- `MixedBlock`: the candidates of a joint position, each built with `build_block` from the
  space's own spec; output = sum over candidates of (product of its options' weights) x block.
- `MixedCell`: an NB201 cell whose searched edges mix their candidate ops (the edge modules
  the cell op itself builds), so the derived cell is exactly what the space builds.
- Depth: output of a depth run = sum over options of weight x activation after `keep` blocks.

`aux` adds `aux * x` to every shape-preserving mixed output: DARTS-'s auxiliary skip, which
takes the advantage of residual paths away from the architecture weights while it decays.
A candidate whose weight is a constant (no gradient flows to it: a weight step, a one-hot
evaluation) below `NEGLIGIBLE` is not run: late in a Gumbel search most sampled weights are
that small, and their blocks would cost as much as the chosen ones.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from nas.differentiable.relax import Position, Relaxation
from search_spaces.ops import block_out_shape, build_block
from search_spaces.ops.cell import EDGE_ARGS, EDGES, make_edge

Weights = Mapping[str, torch.Tensor]
NEGLIGIBLE = 1e-4


def _skippable(weight: torch.Tensor) -> bool:
    return not weight.requires_grad and float(weight) < NEGLIGIBLE


class MixedBlock(nn.Module):
    """The candidates of a joint position."""

    def __init__(self, pos: Position):
        super().__init__()
        self.dims = pos.dims
        self.candidates = nn.ModuleList(build_block(c.spec) for c in pos.candidates)
        self.register_buffer("combos", torch.tensor([c.combo for c in pos.candidates],
                                                    dtype=torch.long), persistent=False)
        spec = pos.base.spec
        self.preserves_shape = tuple(block_out_shape(spec)) == tuple(spec.in_shape)

    def mix(self, weights: Weights) -> torch.Tensor:
        """Weight of each candidate: the product of its options' weights."""
        total = weights[self.dims[0]][self.combos[:, 0]]
        for k, dim in enumerate(self.dims[1:], 1):
            total = total * weights[dim][self.combos[:, k]]
        return total

    def forward(self, x: torch.Tensor, weights: Weights, aux: float = 0.0) -> torch.Tensor:
        mix = self.mix(weights)
        out: torch.Tensor | None = None
        for weight, block in zip(mix, self.candidates):
            if _skippable(weight):
                continue
            term = weight * block(x)
            out = term if out is None else out + term
        assert out is not None, "every candidate's weight is negligible"
        if aux and self.preserves_shape:
            out = out + aux * x
        return out


class MixedCell(nn.Module):
    """An NB201 cell (node i = sum over j < i of edge(j -> i)(node j)) with mixed edges."""

    def __init__(self, pos: Position):
        super().__init__()
        spec = pos.base.spec
        channels = spec.in_shape[0]
        args = spec.kwargs
        self.edge_dims: list[str | None] = []
        self.edges = nn.ModuleList()
        for arg in EDGE_ARGS:
            if arg in pos.dims:
                per_option = pos.per_dim[pos.dims.index(arg)]
                ops = [c.spec.kwargs[arg] for c in per_option]
                self.edge_dims.append(arg)
                self.edges.append(nn.ModuleList(make_edge(op, channels) for op in ops))
            else:
                self.edge_dims.append(None)
                self.edges.append(nn.ModuleList([make_edge(args[arg], channels)]))

    def forward(self, x: torch.Tensor, weights: Weights, aux: float = 0.0) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            total: torch.Tensor | None = None
            for dim, ops, (i, j) in zip(self.edge_dims, self.edges, EDGES):
                if i != node:
                    continue
                out = self._edge(nodes[j], dim, ops, weights)
                if aux and dim is not None:
                    out = out + aux * nodes[j]
                total = out if total is None else total + out
            assert total is not None
            nodes.append(total)
        return nodes[3]

    @staticmethod
    def _edge(x: torch.Tensor, dim: str | None, ops: nn.ModuleList,
              weights: Weights) -> torch.Tensor:
        if dim is None:
            return ops[0](x)
        out: torch.Tensor | None = None
        for weight, op in zip(weights[dim], ops):
            if _skippable(weight):
                continue
            term = weight * op(x)
            out = term if out is None else out + term
        assert out is not None, "every edge op's weight is negligible"
        return out


# Decomposed positions: op name -> module that mixes the op's own arguments.
DECOMPOSERS: dict[str, type[nn.Module]] = {"nb201_cell": MixedCell}


class Fixed(nn.Module):
    def __init__(self, pos: Position):
        super().__init__()
        self.block = build_block(pos.base.spec)

    def forward(self, x: torch.Tensor, weights: Weights, aux: float = 0.0) -> torch.Tensor:
        return self.block(x)


def _unit(pos: Position) -> nn.Module:
    if pos.kind == "fixed":
        return Fixed(pos)
    if pos.kind == "joint":
        return MixedBlock(pos)
    return DECOMPOSERS[pos.base.spec.op](pos)


class RelaxedSupernet(nn.Module):
    """Every position of a relaxation in order, with depth runs mixed at their ends."""

    def __init__(self, relaxation: Relaxation):
        super().__init__()
        self.units = nn.ModuleList(_unit(p) for p in relaxation.positions)
        self.depth_at = {d.start: d for d in relaxation.depths}

    def forward(self, x: torch.Tensor, weights: Weights, aux: float = 0.0) -> torch.Tensor:
        index = 0
        while index < len(self.units):
            depth = self.depth_at.get(index)
            if depth is None:
                x = self.units[index](x, weights, aux)
                index += 1
                continue
            mix = weights[depth.dim]
            needed = max(k for k, w in zip(depth.keep, mix) if not _skippable(w))
            outs = [x]
            for unit in self.units[depth.start:depth.start + needed]:
                outs.append(unit(outs[-1], weights, aux))
            x = sum(w * outs[k] for k, w in zip(depth.keep, mix) if not _skippable(w))
            index = depth.end
        return x

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())


def extract(supernet: RelaxedSupernet, relaxation: Relaxation, choice: Mapping[str, int]):
    """The discrete network of `choice` with the supernet's trained weights copied in: the same
    modules `space.build` makes (its state dict loads strictly into the built network)."""
    import copy

    from nas.differentiable.relax import position_spec
    from search_spaces.network import Network

    arch = relaxation.arch(choice)
    active = relaxation.active_positions(choice)
    blocks = []
    for pos, unit in zip(relaxation.positions, supernet.units):
        if pos.index not in active:
            continue
        if isinstance(unit, Fixed):
            blocks.append(copy.deepcopy(unit.block))
        elif isinstance(unit, MixedBlock):
            combo = torch.tensor([int(choice[d]) for d in pos.dims])
            index = int(torch.nonzero((unit.combos == combo).all(dim=1))[0])
            blocks.append(copy.deepcopy(unit.candidates[index]))
        else:
            cell = build_block(position_spec(pos, choice))
            for k, (dim, ops) in enumerate(zip(unit.edge_dims, unit.edges)):
                chosen = ops[0] if dim is None else ops[int(choice[dim])]
                cell.edges[k] = copy.deepcopy(chosen)
            blocks.append(cell)
    space = relaxation.space
    size = space.input_size(arch)
    channels = relaxation.in_channels or space.default_channels
    return Network(blocks, arch.key, (channels, size, size))
