"""Attention spaces (vit, vit-hybrid): DeiT-Tiny counts, exact analytical costs, keys, contract."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from estimators.flops import analytical_cost, fvcore_cost
from search_spaces import (
    Arch,
    InvalidArchError,
    NasError,
    get_space,
    load_space_file,
    register_space,
)
from search_spaces.ops import block_cost
from search_spaces.spaces import vit

SPACES = ["vit", "vit-sparse", "vit-hybrid", "vit-hybrid-sparse"]
SMALL_VIT = {"kind": "vit", "patches": [16, 8], "widths": [24, 48], "depths": [1, 2, 3],
             "heads": [2, 3, 4], "mlp_ratios": [2, 4], "resolutions": [32], "classes": 10}
SMALL_HYBRID = {"kind": "hybrid", "resolutions": [32, 48], "stem": 8, "conv_widths": [8, 16],
                "conv_depths": [[1, 2], [1, 2]], "kernels": [3, 5], "conv_expands": [2, 4],
                "attn_widths": [16, 32], "attn_depths": [[1, 2], [1]], "heads": [1, 2, 4],
                "attn_expands": [2, 3], "classes": 10}


def small(kind: str, sparse: bool):
    config = SMALL_VIT if kind == "vit" else SMALL_HYBRID
    name = f"test-{kind}" + ("-sparse" if sparse else "")
    return register_space(vit.create(name, dict(config), sparse))


def test_deit_tiny_reproduces_published_counts():
    space = get_space("vit")
    arch = space.reference_archs()["deit_tiny"]
    assert space.parse("deit_tiny_patch16_224") == arch
    assert space.encode(arch) == "r224-p16-w192-" + ".".join(["h3m4"] * 12)
    model = space.build(arch)
    counted = fvcore_cost(model, model.example_input())
    assert (counted.params, counted.macs) == (5_717_416, 1_253_683_200)  # 1,253.68M
    assert analytical_cost(arch) == counted
    specs = space.blocks(arch)
    assert block_cost(specs[0]).macs == 28_901_376  # patch conv: 28.90M
    attention = 12 * 2 * 197 ** 2 * 192  # q@k^T and attn@v: 178.83M
    linear = sum(block_cost(s).macs for s in specs[1:]) - attention
    assert (round(attention / 1e6, 2), round(linear / 1e6, 2)) == (178.83, 1045.95)


def test_deit_tiny_in_the_sparse_space_is_dense():
    arch = get_space("vit-sparse").reference_archs()["deit_tiny"]
    cost = analytical_cost(arch)
    assert (cost.params, cost.macs, cost.sparse_macs) == (5_717_416, 1_253_683_200,
                                                          1_253_683_200)


def test_hybrid_references_smallest_largest_and_exact_count():
    space = get_space("vit-hybrid")
    refs = space.reference_archs()
    assert set(refs) >= {"smallest", "largest", "tiny_moat0_layout"}
    assert refs["smallest"] == space.min_arch() and refs["largest"] == space.max_arch()
    small_cost, large_cost = analytical_cost(refs["smallest"]), analytical_cost(refs["largest"])
    assert small_cost.macs < analytical_cost(refs["tiny_moat0_layout"]).macs < large_cost.macs
    assert small_cost.params < large_cost.params
    model = space.build(refs["smallest"])
    assert fvcore_cost(model, model.example_input()) == small_cost


@pytest.mark.parametrize("kind", ["vit", "hybrid"])
@pytest.mark.parametrize("sparse", [False, True])
def test_analytical_equals_fvcore_and_forward_shapes(kind, sparse):
    space = small(kind, sparse)
    rng = np.random.default_rng(0)
    archs = [space.max_arch()] + [space.sample(rng) for _ in range(2)]
    for arch in archs:
        model = space.build(arch, num_classes=5).eval()
        x = model.example_input(2)
        with torch.no_grad():
            assert model(x).shape == (2, 5)
        assert analytical_cost(arch, num_classes=5) == fvcore_cost(model, x[:1]), arch.key


def test_sparse_density_reaches_linear_layers_but_not_the_head():
    space = small("vit", True)
    arch = space.make({"depth": 2, "density1": 0.25, "density2": 1.0})
    specs = space.blocks(arch)
    assert specs[1].kwargs["density"] == 0.25
    assert "density" not in specs[2].kwargs  # dense blocks share lookup-table keys
    assert "density" not in specs[0].kwargs and "density" not in specs[-1].kwargs
    cost = analytical_cost(arch)
    assert cost.sparse_macs < cost.macs
    for name in ("vit-sparse", "vit-hybrid-sparse"):
        dims = [d for d in get_space(name).dimensions if d.name.startswith("density")]
        assert dims and all(d.options == (0.25, 0.5, 1.0) for d in dims)


@pytest.mark.parametrize("name", SPACES)
def test_key_round_trip_and_canonical(name):
    space = get_space(name)
    rng = np.random.default_rng(1)
    for _ in range(200):
        arch = space.sample(rng)
        assert space.contains(arch)
        assert Arch.decode(arch.key) == arch and space.parse(arch.key) == arch
        assert ":" not in space.encode(arch)
    for ref in space.reference_archs().values():
        assert space.decode(space.encode(ref)) == ref


def test_inactive_blocks_are_none_and_non_canonical_is_rejected():
    space = get_space("vit")
    arch = space.make({"depth": 6})
    assert all(arch[f"h{j}"] is None and arch[f"m{j}"] is None for j in range(7, 13))
    assert arch["h6"] == 3 and space.contains(arch)
    assert not space.contains(arch.replace(h7=3))
    assert not space.contains(arch.replace(h1=5))
    hybrid = get_space("vit-hybrid")
    arch = hybrid.make({"d3": 2})
    assert arch["h3_2"] == 2 and arch["h3_3"] is None and arch["e3_7"] is None
    assert not hybrid.contains(arch.replace(e3_7=2))


@pytest.mark.parametrize("name", SPACES)
def test_mutate_and_crossover_stay_in_space(name):
    space = get_space(name)
    rng = np.random.default_rng(2)
    for _ in range(30):
        a, b = space.sample(rng), space.sample(rng)
        child = space.mutate(a, rng)
        assert child != a and space.contains(child)
        assert space.contains(space.crossover(a, b, rng))


@pytest.mark.parametrize("kind", ["vit", "hybrid"])
@pytest.mark.parametrize("sparse", [False, True])
def test_log10_size_counts_canonical_archs(kind, sparse):
    config = dict(SMALL_VIT if kind == "vit" else SMALL_HYBRID)
    if kind == "vit":
        config.update(depths=[1, 2], heads=[2, 4], widths=[24], patches=[16])
    else:
        config.update(resolutions=[32], kernels=[3], conv_expands=[2], heads=[2],
                      attn_depths=[[1, 2], [1]], conv_depths=[[1, 2], [1]])
    space = vit.create("count", config, sparse)
    seen = set()
    for values in itertools.product(*(d.options for d in space.dimensions)):
        seen.add(space.make(dict(zip(space.dimension_names, values))))
    assert math.isclose(10 ** space.log10_size(), len(seen))


@pytest.mark.parametrize("name,body", [
    ("vit", ""), ("vit", "r224-p16-w192"), ("vit", "r225-p16-w192-h3m4.h3m4.h3m4.h3m4.h3m4.h3m4"),
    ("vit", "r224-p16-w192-h3m4"), ("vit", "r224-p16-w192-h5m4.h3m4.h3m4.h3m4.h3m4.h3m4"),
    ("vit", "r224-p16-w192-h3x4.h3m4.h3m4.h3m4.h3m4.h3m4"),
    ("vit", "r224-q16-w192-h3m4.h3m4.h3m4.h3m4.h3m4.h3m4"),
    ("vit-sparse", "r224-p16-w192-h3m4.h3m4.h3m4.h3m4.h3m4.h3m4"),
    ("vit-sparse", "r224-p16-w192-h3m4@0.3.h3m4@1.0.h3m4@1.0.h3m4@1.0.h3m4@1.0.h3m4@1.0"),
    ("vit-hybrid", "r224-k3e2-k3e2-h2e2.h2e2"), ("vit-hybrid", "r224-k3e2-k3e2-h2e2-h2e2"),
    ("vit-hybrid", "r224-k7e2-k3e2-h2e2.h2e2-h2e2"),
    ("vit-hybrid", "r224-h2e2-k3e2-h2e2.h2e2-h2e2"),
    ("vit-hybrid-sparse", "r224-k3e2-k3e2-h2e2.h2e2-h2e2"),
])
def test_bad_keys_raise_one_line_errors(name, body):
    with pytest.raises(InvalidArchError) as info:
        get_space(name).decode(body)
    assert "\n" not in str(info.value) and "expected" in str(info.value)


@pytest.mark.parametrize("config,match", [
    ({"widths": [192, 200]}, "divisible by every heads"),
    ({"resolutions": [224, 200]}, "divisible by every patch"),
    ({"kind": "transformer"}, "kind"),
    ({"depth": [12]}, "unknown settings"),
    ({"heads": []}, "heads"),
])
def test_config_errors_are_nas_errors(config, match):
    with pytest.raises(NasError, match=match):
        vit.create("bad", {**vit.PRESETS["vit"], **config}, False)


def test_hybrid_config_errors_and_space_file(tmp_path):
    with pytest.raises(NasError, match="one list of depth options per stage"):
        vit.create("bad", {**vit.PRESETS["vit-hybrid"], "attn_depths": [[1, 2]]}, False)
    with pytest.raises(NasError, match="divisible"):
        vit.create("bad", {**vit.PRESETS["vit-hybrid"], "attn_widths": [128, 100]}, False)
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "my-hybrid", "base": "vit-hybrid", "sparse": True,
                                "resolutions": [128, 160]}))
    space = register_space(load_space_file(path))
    arch = space.sample(0)
    assert space.input_size(arch) in (128, 160) and Arch.decode(arch.key) == arch
    assert "tiny_moat0_layout" not in space.reference_archs()  # 224 is not an option
