"""FBNet (v1) space: macro-architecture counts, HELP's 5,000 archs, keys and space behaviour."""
from __future__ import annotations

import csv
import itertools
import math

import numpy as np
import pytest
import torch

from estimators.flops import analytical_cost, fvcore_cost
from search_spaces import Arch, InvalidArchError, NasError, get_space, register_space
from search_spaces.spaces import fbnet

# REFERENCE_ARCHS.md section 4, "Measured" (224, 1000 classes): op -> (params, MACs in M)
SINGLE_OP_ROWS = {
    "k3_e1": (2_525_176, 109.61),
    "k3_e1_g2": (2_294_584, 74.54),
    "k3_e3": (3_491_640, 263.11),
    "k3_e6": (4_941_336, 493.35),
    "k5_e1": (2_552_312, 121.37),
    "k5_e1_g2": (2_321_720, 86.30),
    "k5_e3": (3_573_048, 298.37),
    "k5_e6": (5_104_152, 563.88),
    "skip": (2_135_160, 40.66),
}


def counts(space, arch: Arch, **kwargs):
    model = space.build(arch, **kwargs)
    return analytical_cost(arch, **kwargs), fvcore_cost(model, model.example_input())


@pytest.mark.parametrize("op", list(SINGLE_OP_ROWS))
def test_single_candidate_networks(op):
    space = get_space("fbnet")
    predicted, counted = counts(space, space.reference_archs()[f"all_{op}"])
    params, macs_m = SINGLE_OP_ROWS[op]
    assert predicted == counted
    assert counted.params == params
    assert round(counted.macs / 1e6, 2) == macs_m


def test_largest_with_a_1984_head():
    space = register_space(fbnet.create("fbnet-test-1984", {**fbnet.PRESETS["fbnet"],
                                                            "head": 1984}, False))
    predicted, counted = counts(space, space.max_arch())
    assert predicted == counted
    assert counted.params == 5_754_072
    assert round(counted.macs / 1e6, 2) == 572.63


def test_fbnet_b_layer_list_is_expressible():
    space = get_space("fbnet")
    arch = space.reference_archs()["fbnet_b"]
    assert space.encode(arch).split("-") == list(fbnet.FBNET_B)
    cost = analytical_cost(arch)  # unverified network: only the documented rebuild, loosely
    assert 4.1e6 < cost.params < 4.2e6 and 285e6 < cost.macs < 290e6


def test_skip_is_identity_only_without_a_shape_change():
    space = get_space("fbnet")
    specs = space.blocks(space.reference_archs()["all_skip"])
    layers = [s for s in specs if s.name.startswith("stage")]
    assert len(layers) == 22
    assert [s.op for s in layers if s.op != "skip"] == ["conv_bn_act"] * 6
    firsts = {s.name: s for s in layers if s.name.endswith(".0")}
    assert firsts["stage1.0"].op == "skip"
    assert firsts["stage5.0"].kwargs == {"act": "relu", "k": 1, "out": 112, "stride": 1}
    assert [s.name for s in specs[-3:]] == ["head.conv", "head.pool", "classifier"]


def test_candidate_blocks():
    space = get_space("fbnet")
    specs = space.blocks(space.from_ops(["k5_e1_g2"] + ["k3_e6"] * 21))
    assert specs[1].kwargs == {"act": "relu", "groups": 2, "k": 5, "mid": 16, "out": 16,
                               "stride": 1}
    assert specs[2].kwargs == {"act": "relu", "k": 3, "mid": 96, "out": 24, "stride": 2}


@pytest.mark.parametrize("name,samples", [("fbnet", 2), ("fbnet-sparse", 3)])
def test_samples_count_exactly_and_run(name, samples):
    space = get_space(name)
    rng = np.random.default_rng(4)
    for _ in range(samples):
        arch = space.sample(rng)
        model = space.build(arch, num_classes=100).eval()
        x = model.example_input()
        with torch.no_grad():
            assert model(x).shape == (1, 100)
        assert analytical_cost(arch, num_classes=100) == fvcore_cost(model, x), arch.key


# --- keys ----------------------------------------------------------------------------------------
def test_every_published_fbnet_arch_parses(shared_data):
    space = get_space("fbnet")
    with open(shared_data / "fbnet" / "fbnet_latency.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5000
    for row in rows:
        arch = space.parse(row["arch"])
        assert space.encode(arch) == row["arch"]
        assert space.parse(f"fbnet:{row['arch']}") == arch


def test_sparse_key_form():
    space = get_space("fbnet-sparse")
    arch = space.min_arch()  # all skip: stage 1 is one identity, so it has no density
    assert arch["density1"] is None and arch["density2"] == 0.25
    assert space.encode(arch) == "-".join(["skip"] * 22) + "@-" + ",0.25" * 6
    assert space.parse(space.encode(arch)) == arch
    assert space.parse("all_k5_e6").key.endswith("@" + ",".join(["1.0"] * 7))


VALID = "-".join(["k3_e1"] * 22)


@pytest.mark.parametrize("name,body", [
    ("fbnet", ""), ("fbnet", "garbage"), ("fbnet", "-".join(["k3_e1"] * 21)),
    ("fbnet", VALID + "-k3_e1"), ("fbnet", VALID.replace("k3_e1", "k7_e1", 1)),
    ("fbnet", VALID.replace("k3_e1", "k3_e1_g4", 1)), ("fbnet", VALID + "@1.0"),
    ("fbnet-sparse", VALID), ("fbnet-sparse", VALID + "@1.0,1.0"),
    ("fbnet-sparse", VALID + "@" + ",".join(["0.3"] * 7)),
    ("fbnet-sparse", VALID + "@-" + ",1.0" * 6),  # stage 1 has a conv, so needs a density
])
def test_bad_keys_raise(name, body):
    with pytest.raises(InvalidArchError) as info:
        get_space(name).decode(body)
    assert "\n" not in str(info.value) and "expected" in str(info.value)


# --- space behaviour -----------------------------------------------------------------------------
def test_options_are_ordered_by_cost():
    space = get_space("fbnet")
    assert space.dimension("l1").options[0] == "skip"
    assert space.dimension("l22").options[-1] == "k5_e6"
    refs = space.reference_archs()
    macs = [analytical_cost(refs[f"all_{op}"]).macs for op in space.dimension("l1").options]
    assert macs == sorted(macs)
    assert space.min_arch() == refs["all_skip"] and space.max_arch() == refs["all_k5_e6"]


def test_contains_and_canonical():
    space = get_space("fbnet-sparse")
    arch = space.from_ops(["k3_e1"] * 22)
    assert space.contains(arch)
    skipped = space.make({**arch.as_dict(), "l1": "skip"})
    assert skipped["density1"] is None
    assert not space.contains(skipped.replace(density1=0.5))
    assert not space.contains(arch.replace(density1=None))
    assert not space.contains(arch.replace(l3="k7_e1"))
    assert not space.contains(Arch("fbnet", arch.genes))
    assert space.canonical({**arch.as_dict(), "l1": "skip"})["density1"] is None


@pytest.mark.parametrize("name", ["fbnet", "fbnet-sparse"])
def test_mutate_and_crossover_stay_in_space(name):
    space = get_space(name)
    rng = np.random.default_rng(6)
    for _ in range(50):
        a, b = space.sample(rng), space.sample(rng)
        child = space.mutate(a, rng, num_genes=3)
        assert child != a and space.contains(child)
        assert space.contains(space.crossover(a, b, rng))


def test_log10_size_counts_distinct_archs():
    config = {**fbnet.PRESETS["fbnet"], "widths": [16, 24], "depths": [2, 1], "strides": [1, 2],
              "ops": ["skip", "k3_e1"]}
    for sparse in (False, True):
        space = fbnet.create("fbnet-test-tiny", config, sparse)
        distinct = {tuple(space.canonical(dict(zip(space.dimension_names, values))).items())
                    for values in itertools.product(*(d.options for d in space.dimensions))}
        assert math.isclose(space.log10_size(), math.log10(len(distinct)))
    assert math.isclose(get_space("fbnet").log10_size(), 22 * math.log10(9))


def test_config_errors_are_user_errors():
    for bad in ({"depths": [1, 4]}, {"ops": ["skip", "k3e1"]}, {"act": "swish"},
                {"head_width": 1984}):
        with pytest.raises(NasError):
            fbnet.create("fbnet-test-bad", {**fbnet.PRESETS["fbnet"], **bad}, False)
