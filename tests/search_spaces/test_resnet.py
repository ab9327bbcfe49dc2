"""ResNet family: reference counts, exact analytical costs, keys, genes, forward shapes."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from estimators.flops import analytical_cost, fvcore_cost
from search_spaces import Arch, InvalidArchError, NasError, get_space, register_space
from search_spaces.spaces import resnet

# REFERENCE_ARCHS.md section 2: params exact, MACs in millions (224 px, 1000 classes)
REFERENCE = {
    "resnet18": (11_689_512, 1814.07),
    "resnet34": (21_797_672, 3663.76),
    "resnet50": (25_557_032, 4089.18),
}


@pytest.fixture(scope="module")
def space():
    return get_space("resnet")


@pytest.fixture(scope="module")
def sparse():
    return get_space("resnet-sparse")


def at_resolution(space, arch: Arch, resolution: int) -> Arch:
    return space.make({**arch.as_dict(), "r": resolution})


@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_counts(space, name: str) -> None:
    params, macs_m = REFERENCE[name]
    arch = space.reference_archs()[name]
    model = space.build(arch)
    measured = fvcore_cost(model, model.example_input())
    assert measured.params == params
    assert round(measured.macs / 1e6, 2) == macs_m
    assert analytical_cost(arch) == measured


def test_reference_keys_and_names(space, sparse) -> None:
    r50 = space.reference_archs()["resnet50"]
    assert space.encode(r50) == "bottleneck-e4-d3.4.6.3-w1.0.1.0.1.0.1.0-r224"
    r18 = space.reference_archs()["resnet18"]
    assert space.encode(r18) == "basic-d2.2.2.2-w1.0.1.0.1.0.1.0-r224"
    assert space.parse("resnet50") == space.parse("ResNet-50") == space.parse(r50.key) == r50
    assert sparse.encode(sparse.reference_archs()["resnet50"]).endswith("-s1.0.1.0.1.0.1.0-r224")
    assert analytical_cost(sparse.reference_archs()["resnet50"]) == analytical_cost(r50)


@pytest.mark.parametrize("space_name", ["resnet", "resnet-sparse"])
def test_analytical_matches_fvcore(space_name: str) -> None:
    space = get_space(space_name)
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = at_resolution(space, space.sample(rng), 128)
        model = space.build(arch, num_classes=10)
        assert analytical_cost(arch, num_classes=10) == fvcore_cost(model, model.example_input())


@pytest.mark.parametrize("space_name", ["resnet", "resnet-sparse"])
def test_forward_shapes(space_name: str) -> None:
    space = get_space(space_name)
    rng = np.random.default_rng(2)
    with torch.no_grad():
        for _ in range(3):
            arch = at_resolution(space, space.sample(rng), 128)
            model = space.build(arch, num_classes=7, in_channels=1).eval()
            assert model(torch.randn(1, 1, 128, 128)).shape == (1, 7)


def test_canonical_and_contains(space, sparse) -> None:
    r18 = space.reference_archs()["resnet18"]
    assert space.contains(r18) and not sparse.contains(r18)
    assert not space.contains(r18.replace(expansion=4))  # basic blocks have no expansion
    assert space.make({**r18.as_dict(), "expansion": 4}) == r18
    r50 = space.reference_archs()["resnet50"]
    assert not space.contains(r50.replace(expansion=None))
    assert not space.contains(r50.replace(d3=7))
    assert not space.contains(r50.replace(d1=None))
    assert not space.contains(Arch("mobile", r50.genes))
    assert space.make({"block": "bottleneck"})["expansion"] == 2


def test_log10_size_counts_canonical_archs() -> None:
    for norms in (["bn_relu"], ["bn_relu", "evonorm_b0"]):
        space = resnet.create("resnet-tiny", {"depths": [[1, 2], [1], [2, 3], [1]],
                                              "widths": [0.5, 1.0], "resolutions": [64],
                                              "norms": norms}, True)
        canon = {space.make(dict(zip(space.dimension_names, values)))
                 for values in itertools.product(*(d.options for d in space.dimensions))}
        assert math.isclose(space.log10_size(), math.log10(len(canon)))
    preset = get_space("resnet")
    assert math.isclose(preset.log10_size(), math.log10(3 * 4 * 6 * 3 * 3 ** 4 * 4 * (1 + 3)))


@pytest.mark.parametrize("space_name", ["resnet", "resnet-sparse"])
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
    "", "resnet50x", "basic-d2.2.2.2-w1.0.1.0.1.0.1.0",            # malformed / no resolution
    "basic-e4-d2.2.2.2-w1.0.1.0.1.0.1.0-r224",                     # expansion on basic blocks
    "bottleneck-d2.2.2.2-w1.0.1.0.1.0.1.0-r224",                   # bottleneck without expansion
    "wide-d2.2.2.2-w1.0.1.0.1.0.1.0-r224",                         # unknown block
    "basic-d2.2.2-w1.0.1.0.1.0.1.0-r224",                          # three depths
    "basic-d2.2.2.2-w1.0.1.0.1.0-r224",                            # three widths
    "basic-d2.2.2.2-w1.1.0.1.0.1.0-r224",                          # width without decimals
    "basic-d2.2.9.2-w1.0.1.0.1.0.1.0-r224",                        # depth out of range
    "basic-d2.2.2.2-w1.0.1.0.1.0.1.0-r225",                        # resolution not an option
    "basic-d2.2.2.2-w1.0.1.0.1.0.1.0-s1.0.1.0.1.0.1.0-r224",       # densities in a dense space
])
def test_bad_keys(space, body: str) -> None:
    with pytest.raises(InvalidArchError, match="expected|not one of"):
        space.decode(body)


def test_bad_sparse_key(sparse) -> None:
    with pytest.raises(InvalidArchError):
        sparse.decode("basic-d2.2.2.2-w1.0.1.0.1.0.1.0-r224")
    with pytest.raises(InvalidArchError):
        sparse.decode("basic-d2.2.2.2-w1.0.1.0.1.0.1.0-s0.3.1.0.1.0.1.0-r224")


@pytest.mark.parametrize("config", [
    {"bogus": 1}, {"depths": [[1, 2]]}, {"blocks": ["wide"]}, {"widths": []},
    {"densities": [0.5, 2.0]}, {"resolutions": ["big"]}, {"widths": [1e-7]},
    {"norms": ["evonorm"]}, {"norms": []}, {"norms": ["gn_relu", "gn_relu"]},
    {"stem_kernel": 4}, {"stem_stride": 0}, {"stem_pool": "no"},
])
def test_bad_config(config: dict) -> None:
    with pytest.raises(NasError):
        resnet.create("bad", config, False)


def test_user_config_space() -> None:
    space = register_space(resnet.create("resnet-basic-only", {"blocks": ["basic"],
                                                               "resolutions": [32]}, False))
    assert set(space.reference_archs()) == set()  # 224 px is not an option
    arch = space.sample(0)
    assert arch["expansion"] is None and Arch.decode(arch.key) == arch
    assert math.isclose(space.log10_size(), math.log10(3 * 4 * 6 * 3 * 3 ** 4))


def test_cifar_stem() -> None:
    """A 3x3 stride-1 stem without the pool: stage 1 runs at the input resolution, the costs
    still equal fvcore's, and the ImageNet references are not offered."""
    config = {"blocks": ["basic"], "depths": [[1, 2]] * 3, "stage_channels": [16, 32, 64],
              "widths": [0.5, 1.0], "resolutions": [32], "stem": 16, "stem_kernel": 3,
              "stem_stride": 1, "stem_pool": False}
    space = register_space(resnet.create("resnet-cifar-stem", config, False))
    assert space.reference_archs() == {}
    body = "basic-d1.1.1-w1.0.1.0.1.0-r32"
    arch = space.parse(body)
    specs = space.blocks(arch)
    assert [s.name for s in specs[:2]] == ["stem", "stage1.0"]
    assert specs[1].in_shape == (16, 32, 32)
    imagenet = resnet.create("resnet-imagenet-stem", {k: v for k, v in config.items()
                                                      if not k.startswith("stem_")}, False)
    assert imagenet.blocks(imagenet.parse(body))[2].in_shape == (16, 8, 8)
    for sample in (arch, space.sample(0), space.sample(1)):
        model = space.build(sample, num_classes=10)
        assert analytical_cost(sample, num_classes=10) == fvcore_cost(model,
                                                                      model.example_input())
