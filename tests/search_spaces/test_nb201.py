"""NAS-Bench-201 space: measured counts, official strings and index order, keys, contract."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from estimators.flops import analytical_cost, fvcore_cost
from search_spaces import (
    Arch,
    InvalidArchError,
    NasError,
    UnknownSpaceError,
    get_space,
    register_space,
)
from search_spaces.ops.cell import CELL_OPS, EDGE_ARGS
from search_spaces.spaces import nb201

ALL_C3 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
          "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")


@pytest.fixture(scope="module")
def space() -> nb201.NB201Space:
    return get_space("nb201")


@pytest.fixture(scope="module")
def tiny() -> nb201.NB201Space:
    """One cell per stage at 8x8: the same ops, quick to trace."""
    return register_space(nb201.create("nb201-tiny", {"cells": 1, "resolution": 8, "channels": 8},
                                       False))


def test_dimensions_are_the_six_edges_ordered_by_cost(space):
    assert space.dimension_names == EDGE_ARGS
    assert all(d.options == ("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1",
                             "nor_conv_3x3") for d in space.dimensions)
    assert space.input_size(space.min_arch()) == 32 and space.default_classes == 10
    assert 10 ** space.log10_size() == pytest.approx(15_625)


def test_all_conv3x3_cell_reproduces_the_benchmark_counts(space):
    arch = space.parse(ALL_C3)
    assert arch == space.reference_archs()["all_c3"] == space.max_arch()
    model = space.build(arch)
    counted = fvcore_cost(model, model.example_input())
    assert (counted.params, counted.macs) == (1_531_546, 220_119_680)
    assert analytical_cost(arch) == counted
    c100 = analytical_cost(arch, num_classes=100)
    assert (c100.params, c100.macs) == (1_537_396, 220_125_440)


def test_imagenet16_skeleton_counts():
    space = register_space(nb201.create("nb201-in16", {"classes": 120, "resolution": 16}, False))
    cost = analytical_cost(space.reference_archs()["all_c3"])
    assert cost.params == 1_538_696
    assert round(cost.macs / 1e6, 2) == 55.04


@pytest.mark.parametrize("ref", ["all_none", "all_skip"])
def test_parameter_free_cells_leave_the_skeleton(space, ref):
    arch = space.parse(ref)
    assert analytical_cost(arch) == fvcore_cost(space.build(arch),
                                                torch.randn(1, 3, 32, 32))
    cost = analytical_cost(arch)
    assert (cost.params, cost.macs) == (73_306, 7_783_040)


def test_analytical_equals_fvcore_and_forward_shapes(tiny):
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = tiny.sample(rng)
        model = tiny.build(arch, num_classes=7).eval()
        x = model.example_input(2)
        with torch.no_grad():
            assert model(x).shape == (2, 7)
        assert analytical_cost(arch, num_classes=7) == fvcore_cost(model, x[:1])


def test_blocks_are_stem_cells_reductions_head(space):
    names = [s.name for s in space.blocks(space.min_arch())]
    assert names[:2] == ["stem", "stage1.0"] and "reduce1" in names and "reduce2" in names
    assert names[-3:] == ["head.bn", "head.pool", "classifier"]
    assert sum(s.op == "nb201_cell" for s in space.blocks(space.min_arch())) == 15


def test_key_round_trip_and_official_string(space):
    rng = np.random.default_rng(1)
    for _ in range(200):
        arch = space.sample(rng)
        assert space.contains(arch)
        assert Arch.decode(arch.key) == arch
        official = space.to_official(arch)
        assert space.parse(official) == arch
        assert space.from_index(space.index_of(arch)) == arch
    assert space.encode(space.parse(ALL_C3)) == "c3+c3.c3+c3.c3.c3"
    arch = space.decode("c3+c3.avg+skip.c3.skip")
    assert space.to_official(arch) == ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+"
                                       "|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    assert space.index_of(arch) == 1  # row 1 of the benchmark
    assert space.parse("nb201:c3+c3.avg+skip.c3.skip") == arch


@pytest.mark.parametrize("body", ["", "c3", "c3+c3+c3", "c3+c3.c3+c3.c3", "c3+c3.c3+c3.c3.c5",
                                  "c3+c3.c3+c3.c3.c3.c3", "c3+c3.c3+c3.c3.c3+none"])
def test_bad_keys_raise(space, body):
    with pytest.raises(InvalidArchError) as info:
        space.decode(body)
    assert "\n" not in str(info.value) and "expected" in str(info.value)


@pytest.mark.parametrize("text", [
    "|nor_conv_3x3~0|",
    "|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|",  # wrong source node
    "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # unknown op
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2",  # no closing bar
])
def test_bad_official_strings_raise(space, text):
    with pytest.raises(InvalidArchError):
        space.parse(text)


def test_bad_index_and_foreign_arch_raise(space, tiny):
    for index in (-1, 15_625, 2.0):
        with pytest.raises(InvalidArchError):
            space.from_index(index)  # type: ignore[arg-type]
    foreign = tiny.min_arch()
    assert not space.contains(foreign)
    with pytest.raises(InvalidArchError):
        space.index_of(foreign)


def test_contains_mutate_crossover(space):
    rng = np.random.default_rng(2)
    bad = space.min_arch().replace(e1_0="sep_conv_3x3")
    assert not space.contains(bad)
    for _ in range(30):
        a, b = space.sample(rng), space.sample(rng)
        child = space.mutate(a, rng)
        assert child != a and space.contains(child)
        assert space.contains(space.crossover(a, b, rng))


def test_no_sparse_variant_and_config_errors():
    with pytest.raises(UnknownSpaceError):
        get_space("nb201-sparse")
    with pytest.raises(NasError):
        nb201.create("x", {}, True)
    with pytest.raises(NasError, match="resolution"):
        nb201.create("x", {"resolution": 30}, False)
    with pytest.raises(NasError, match="unknown settings"):
        nb201.create("x", {"width": 16}, False)


def test_order_file_is_a_permutation():
    order = nb201._official_order()
    assert len(order) == len(set(order)) == len(CELL_OPS) ** 6
    assert all(len(d) == 6 and set(d) <= set("01234") for d in order)


def test_every_official_string_parses_to_its_row_index(space, shared_data):
    table = pd.read_csv(shared_data / "nb201" / "nb201.csv", usecols=["index", "arch"])
    assert len(table) == 15_625
    for index, text in zip(table["index"], table["arch"]):
        arch = space.parse(text)
        assert space.index_of(arch) == index
        assert space.to_official(arch) == text
    assert math.isclose(10 ** space.log10_size(), len(set(table["arch"])))


def test_output_connected_follows_the_non_none_edges():
    from search_spaces.spaces.nb201 import output_connected

    space = get_space("nb201")
    assert output_connected(space.parse("none+none.none+c3.none.none"))  # 0 -> 3 directly
    assert output_connected(space.parse("c3+none.skip+none.none.c3"))  # 0 -> 1 -> 2 -> 3
    assert output_connected(space.parse("c3+none.none+none.c3.none"))  # 0 -> 1 -> 3
    assert not output_connected(space.parse("none+c3.none+none.c3.none"))  # node 1 unfed
    assert not output_connected(space.parse("c3+c1.avg+none.none.none"))  # node 3 unfed
    # by brute force over paths: 0->3, 0->1->3, 0->2->3, 0->1->2->3
    def brute(arch) -> bool:
        on = {edge: arch[f"e{edge[0]}_{edge[1]}"] != "none" for edge in
              ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))}
        return (on[3, 0] or (on[1, 0] and on[3, 1]) or (on[2, 0] and on[3, 2])
                or (on[1, 0] and on[2, 1] and on[3, 2]))
    archs = [space.from_index(i) for i in range(0, 15_625, 7)]
    assert [output_connected(a) for a in archs] == [brute(a) for a in archs]
