"""The contract of every registered op (`search_spaces.ops.OPS`): it builds on the meta device
(no memory, no initialisation), its `out_shape` is what a real forward gives, and its analytical
cost equals fvcore's count of the built module. Each op is checked at the smallest input any
built-in space feeds it (its smallest and largest archs, dense and sparse), so a new op is
covered as soon as a space uses it; an op no space uses needs an entry in EXTRA."""
from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from estimators.flops import fvcore_cost
from search_spaces import BlockSpec, get_space, list_spaces
from search_spaces.ops import OPS, block_cost, block_out_shape, build_block
from search_spaces.registry import SPARSE_SUFFIX, sparse_spaces

# ops no built-in space's smallest or largest arch uses, at a small shape, and odd spatial
# sizes with both shortcut kinds and sparse masks (what the spaces' square inputs miss)
EXTRA = {
    "zero": [BlockSpec.of("zero", (8, 6, 6))],
    "basic": [BlockSpec.of("basic", (16, 9, 7), out=24, stride=2, density=0.25),
              BlockSpec.of("basic", (16, 9, 7), out=16, stride=1)],
    "bottleneck": [BlockSpec.of("bottleneck", (16, 9, 7), out=48, width=8, stride=2, density=0.5),
                   BlockSpec.of("bottleneck", (16, 9, 7), out=16, width=8, stride=1)],
    "plain": [BlockSpec.of("plain", (16, 9, 7), out=24, stride=2, density=0.25),
              BlockSpec.of("plain", (16, 9, 7), out=16, stride=1)],
    "dense_layer": [BlockSpec.of("dense_layer", (20, 9, 7), growth=12, bn_size=4, density=0.25)],
    "transition": [BlockSpec.of("transition", (20, 9, 7), out=10, density=0.5),
                   BlockSpec.of("transition", (20, 9, 7), out=24)],
    "osa": [BlockSpec.of("osa", (20, 9, 7), stage=16, n=3, out=40, density=0.5)],
}


def _size(spec: BlockSpec) -> int:
    count = 1
    for dim in spec.in_shape:
        count *= dim
    return count


@lru_cache(maxsize=1)
def cases() -> dict[str, list[BlockSpec]]:
    """op -> its smallest dense spec and its smallest sparse one (when a space has one)."""
    sparse = sparse_spaces()
    names = list(list_spaces()) + sparse
    smallest: dict[tuple[str, bool], BlockSpec] = {}
    for name in dict.fromkeys(names):
        space = get_space(name)
        for arch in (space.min_arch(), space.max_arch()):
            for spec in space.blocks(arch, 10, 3):
                slot = (spec.op, name.endswith(SPARSE_SUFFIX))
                if slot not in smallest or _size(spec) < _size(smallest[slot]):
                    smallest[slot] = spec
    found: dict[str, list[BlockSpec]] = {op: list(specs) for op, specs in EXTRA.items()}
    for (op, _), spec in sorted(smallest.items()):
        if spec not in found.setdefault(op, []):
            found[op].append(spec)
    return found


def test_every_op_is_checked():
    missing = sorted(set(OPS) - set(cases()))
    assert not missing, f"ops no space uses and EXTRA lacks: {missing}"


@pytest.mark.parametrize("op", sorted(OPS))
def test_op_builds_on_meta_device(op):
    for spec in cases()[op]:
        with torch.device("meta"):
            block = build_block(spec)
        assert all(p.is_meta for p in block.parameters()), spec


@pytest.mark.parametrize("op", sorted(OPS))
def test_op_out_shape_matches_forward(op):
    for spec in cases()[op]:
        torch.manual_seed(0)
        block = build_block(spec).eval()
        with torch.no_grad():
            out = block(torch.randn(2, *spec.in_shape))
        assert tuple(out.shape[1:]) == tuple(block_out_shape(spec)), spec


@pytest.mark.parametrize("op", sorted(OPS))
def test_op_cost_equals_fvcore(op):
    for spec in cases()[op]:
        block = build_block(spec)
        assert block_cost(spec) == fvcore_cost(block, torch.randn(1, *spec.in_shape)), spec
