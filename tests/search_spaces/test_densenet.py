"""DenseNet family: reference counts, exact analytical costs, keys, genes, forward shapes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from estimators.flops import analytical_cost, fvcore_cost
from search_spaces import Arch, InvalidArchError, NasError, get_space
from search_spaces.ops import block_out_shape
from search_spaces.spaces import densenet


@pytest.fixture(scope="module")
def space():
    return get_space("densenet")


@pytest.fixture(scope="module")
def sparse():
    return get_space("densenet-sparse")


def at_resolution(space, arch: Arch, resolution: int) -> Arch:
    return space.make({**arch.as_dict(), "r": resolution})


def test_densenet121_counts(space) -> None:
    """REFERENCE_ARCHS.md section 2: 7,978,856 params exactly, 2,834.16 M MACs."""
    arch = space.reference_archs()["densenet121"]
    model = space.build(arch)
    measured = fvcore_cost(model, model.example_input())
    assert measured.params == 7_978_856
    assert round(measured.macs / 1e6, 2) == 2834.16
    assert analytical_cost(arch) == measured


def test_densenet169_params(space) -> None:
    """torchvision's published DenseNet-169 size (14,149,480); MACs (3.36 G) to 2 digits."""
    cost = analytical_cost(space.reference_archs()["densenet169"])
    assert cost.params == 14_149_480
    assert round(cost.macs / 1e9, 2) == 3.36


def test_reference_keys_and_names(space, sparse) -> None:
    d121 = space.reference_archs()["densenet121"]
    assert space.encode(d121) == "g32-c0.5-dense.dense.dense.dense-b6.12.24.16-r224"
    assert space.parse("densenet121") == space.parse("DenseNet-121") == d121
    assert space.parse(d121.key) == d121
    sparse121 = sparse.reference_archs()["densenet121"]
    assert sparse.encode(sparse121) == \
        "g32-c0.5-dense.dense.dense.dense-b6.12.24.16-s1.0.1.0.1.0.1.0-r224"
    assert analytical_cost(sparse121) == analytical_cost(d121)


def test_osa_is_the_cheaper_block_type(space) -> None:
    """Block types are ordered cheapest first."""
    assert space.dimension("t1").options == ("osa", "dense")
    d121 = space.reference_archs()["densenet121"]
    for growth in space.dimension("growth").options:
        costs = [analytical_cost(space.make({**d121.as_dict(), "growth": growth,
                                             **{f"t{i}": kind for i in range(1, 5)}}))
                 for kind in ("osa", "dense")]
        assert costs[0].macs < costs[1].macs and costs[0].params < costs[1].params


def test_osa_block_matches_dense_width(space) -> None:
    """An OSA block with L layers outputs the dense block's width, so transitions agree."""
    d121 = space.reference_archs()["densenet121"]
    osa = space.make({**d121.as_dict(), "t3": "osa"})
    shapes = {s.name: block_out_shape(s) for s in space.blocks(osa)}
    assert shapes["block3.osa"] == (1024, 14, 14)
    spec = next(s for s in space.blocks(osa) if s.op == "osa")
    assert spec.kwargs == {"stage": 128, "n": 6, "out": 1024}
    assert [block_out_shape(s) for s in space.blocks(osa)][-4:] == \
        [block_out_shape(s) for s in space.blocks(d121)][-4:]


@pytest.mark.parametrize("space_name", ["densenet", "densenet-sparse"])
def test_analytical_matches_fvcore(space_name: str) -> None:
    space = get_space(space_name)
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = at_resolution(space, space.sample(rng), 128)
        model = space.build(arch, num_classes=10)
        assert analytical_cost(arch, num_classes=10) == fvcore_cost(model, model.example_input())


@pytest.mark.parametrize("space_name", ["densenet", "densenet-sparse"])
def test_forward_shapes(space_name: str) -> None:
    space = get_space(space_name)
    rng = np.random.default_rng(2)
    with torch.no_grad():
        for _ in range(3):
            arch = at_resolution(space, space.sample(rng), 128)
            model = space.build(arch, num_classes=7, in_channels=1).eval()
            assert model(torch.randn(1, 1, 128, 128)).shape == (1, 7)


def test_canonical_and_contains(space, sparse) -> None:
    d121 = space.reference_archs()["densenet121"]
    assert space.contains(d121) and not sparse.contains(d121)
    assert not space.contains(d121.replace(b1=5))
    assert not space.contains(d121.replace(t2="vov"))
    assert not space.contains(d121.replace(growth=None))
    assert not space.contains(Arch("resnet", d121.genes))
    assert space.make({"growth": 32}) == space.make({"growth": 32, "t1": "osa"})
    assert math.isclose(space.log10_size(), math.log10(4 * 3 * 2 ** 4 * 3 * 3 * 4 * 4 * 4))


@pytest.mark.parametrize("space_name", ["densenet", "densenet-sparse"])
def test_mutate_and_crossover_stay_in_space(space_name: str) -> None:
    space = get_space(space_name)
    rng = np.random.default_rng(3)
    for _ in range(50):
        a, b = space.sample(rng), space.sample(rng)
        child = space.mutate(a, rng)
        assert space.contains(child) and child != a
        assert space.contains(space.crossover(a, b, rng))
    assert space.contains(space.min_arch()) and space.contains(space.max_arch())
    assert analytical_cost(space.min_arch()).macs < analytical_cost(space.max_arch()).macs


@pytest.mark.parametrize("body", [
    "", "densenet121x", "g32-c0.5-dense.dense.dense.dense-b6.12.24.16",  # malformed
    "g32-c0.5-dense.dense.dense-b6.12.24.16-r224",                       # three block types
    "g32-c0.5-dense.dense.dense.dense-b6.12.24-r224",                    # three layer counts
    "g32-c1-dense.dense.dense.dense-b6.12.24.16-r224",                   # compression w/o decimals
    "g32-c0.5-dense.dense.vov.dense-b6.12.24.16-r224",                   # unknown block type
    "g20-c0.5-dense.dense.dense.dense-b6.12.24.16-r224",                 # growth not an option
    "g32-c0.5-dense.dense.dense.dense-b6.12.24.16-s1.0.1.0.1.0.1.0-r224",  # dense space
])
def test_bad_keys(space, body: str) -> None:
    with pytest.raises(InvalidArchError, match="expected|not one of"):
        space.decode(body)


def test_bad_sparse_key(sparse) -> None:
    with pytest.raises(InvalidArchError):
        sparse.decode("g32-c0.5-dense.dense.dense.dense-b6.12.24.16-r224")


@pytest.mark.parametrize("config", [
    {"bogus": 1}, {"block_types": ["dense", "dense"]}, {"compressions": [1.5]},
    {"layers": [[6], []]}, {"growths": [0]},
])
def test_bad_config(config: dict) -> None:
    with pytest.raises(NasError):
        densenet.create("bad", config, False)


def test_user_config_space() -> None:
    space = densenet.create("densenet-small", {"layers": [[2, 3], [2], [4]], "growths": [8],
                                               "block_types": ["dense"]}, True)
    assert space.reference_archs() == {}
    arch = space.sample(0)
    assert space.decode(space.encode(arch)) == arch
    names = [s.name for s in space.blocks(arch, num_classes=3)]
    assert names.count("transition1") == 1 and "transition3" not in names
