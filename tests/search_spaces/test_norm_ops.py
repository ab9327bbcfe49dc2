"""Normalization-activation layers (search_spaces/ops/norm.py) and the `norm` gene of the resnet
and inverted-residual families: each formula against a direct computation, exact costs, keys,
BatchNorm networks unchanged, supernets that match the standalone subnets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from estimators.batchnorm import recalibrate_batchnorm
from estimators.flops import analytical_cost, fvcore_cost
from search_spaces import Arch, InvalidArchError, NasError, get_space, register_space
from search_spaces.ops import block_cost, block_out_shape, build_block
from search_spaces.ops.norm import (
    NORMS,
    ChannelAffine,
    EvoNormB0,
    EvoNormS0,
    group_count,
    norm_act_cost,
    norm_and_act,
)
from search_spaces.registry import load_space_file
from search_spaces.space import BlockSpec
from search_spaces.spaces import inverted_residual as ir
from search_spaces.spaces import resnet
from search_spaces.supernets import build_supernet
from search_spaces.transforms import UnsupportedTransformError, available

EPS = 1e-5
ALL = list(NORMS)
TINY_RESNET = {"blocks": ["basic", "bottleneck", "plain"], "expansions": [2], "norms": ALL,
               "depths": [[1, 2], [1], [1], [1]], "widths": [0.5, 1.0],
               "stage_channels": [16, 16, 32, 32], "resolutions": [32], "stem": 16}
TINY_MOBILE = {**ir.PRESETS["mobilenetv2"], "widths": [16, 24], "strides": [2, 2],
               "acts": ["relu6", "hswish"], "se": [False, True], "depths": [1, 2],
               "kernels": [3, 5], "expands": [3, 4], "resolutions": [32], "width_mults": [1.0],
               "stem": 16, "first": 8, "head": 64, "mix": 48, "dropout": 0.0, "norms": ALL}
_spaces: dict[str, object] = {}


def tiny(family: str):
    """The tiny space of a family offering all four norms (registered, so keys decode)."""
    if family not in _spaces:
        module, config = (resnet, TINY_RESNET) if family == "resnet" else (ir, TINY_MOBILE)
        _spaces[family] = register_space(module.create(f"norms-{family}", config, False))
    return _spaces[family]


def randomised(module: nn.Module) -> nn.Module:
    """Parameters away from their initial ones/zeros, so every term of a formula counts."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() == 1 else 0.0))
    return module


def channel(t: torch.Tensor) -> torch.Tensor:
    return t.view(1, -1, 1, 1)


# --- the formulas --------------------------------------------------------------------------------
def b0_expected(x, var_bwh, layer):
    """EvoNorm-B0 written out: x / max(sqrt(s2_bwh + eps), v1 x + sqrt(s2_wh + eps)) g + b."""
    mean_wh = x.mean(dim=(2, 3), keepdim=True)
    var_wh = ((x - mean_wh) ** 2).mean(dim=(2, 3), keepdim=True)
    left = torch.sqrt(channel(var_bwh) + EPS).expand_as(x)
    right = channel(layer.v) * x + torch.sqrt(var_wh + EPS)
    return x / torch.maximum(left, right) * channel(layer.weight) + channel(layer.bias)


def test_evonorm_b0_train_mode_uses_the_batch_variance_and_updates_the_running_one():
    layer = randomised(EvoNormB0(6)).train()
    x = torch.randn(4, 6, 5, 3) * 2 + 1
    mean = x.mean(dim=(0, 2, 3))
    var = ((x - channel(mean)) ** 2).mean(dim=(0, 2, 3))  # biased, as the reference code's
    torch.testing.assert_close(layer(x), b0_expected(x, var, layer))
    torch.testing.assert_close(layer.running_var, 0.9 * torch.ones(6) + 0.1 * var)
    torch.testing.assert_close(layer.running_mean, 0.1 * mean)
    assert int(layer.num_batches_tracked) == 1


def test_evonorm_b0_eval_mode_uses_the_running_variance():
    layer = randomised(EvoNormB0(5))
    layer.running_var.copy_(torch.rand(5) + 0.5)
    layer.eval()
    x = torch.randn(3, 5, 4, 4)
    torch.testing.assert_close(layer(x), b0_expected(x, layer.running_var, layer))
    torch.testing.assert_close(layer(x[:1]), layer(x)[:1])  # no batch dependence in eval


def test_evonorm_b0_recalibrates_like_batchnorm():
    """momentum None (a cumulative average) and the engine's recalibration both work on it."""
    layer = EvoNormB0(3).train()
    layer.momentum = None
    first, second = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4) * 3
    layer(first), layer(second)
    expected = (first.var(dim=(0, 2, 3), correction=0) + second.var(dim=(0, 2, 3), correction=0))
    torch.testing.assert_close(layer.running_var, expected / 2)
    model = nn.Sequential(EvoNormB0(3))
    images = torch.randn(8, 3, 4, 4)
    recalibrate_batchnorm(model, images)
    torch.testing.assert_close(model[0].running_var, images.var(dim=(0, 2, 3), correction=0))
    assert not model.training


def s0_expected(x, groups, layer):
    """EvoNorm-S0 written out, group by group: x sigmoid(v1 x) / sqrt(s2_whc/g + eps) g + b."""
    n, c, h, w = x.shape
    size = c // groups
    std = torch.empty_like(x)
    for sample in range(n):
        for g in range(groups):
            part = x[sample, g * size:(g + 1) * size]
            variance = ((part - part.mean()) ** 2).mean()
            std[sample, g * size:(g + 1) * size] = torch.sqrt(variance + EPS)
    numerator = x * torch.sigmoid(channel(layer.v) * x)
    return numerator / std * channel(layer.weight) + channel(layer.bias)


@pytest.mark.parametrize("channels,groups", [(12, None), (12, 3), (16, None), (6, 1)])
def test_evonorm_s0_normalises_per_sample_and_group(channels, groups):
    layer = randomised(EvoNormS0(channels, groups))
    expected_groups = group_count(channels) if groups is None else groups
    assert layer.groups == expected_groups
    x = torch.randn(3, channels, 4, 5) * 2 - 1
    out = layer.train()(x)
    torch.testing.assert_close(out, s0_expected(x, expected_groups, layer))
    torch.testing.assert_close(layer.eval()(x), out)  # batch-independent: no train/eval gap
    torch.testing.assert_close(layer(x[1:2]), out[1:2])
    with pytest.raises(ValueError):
        EvoNormS0(12, groups=5)


def test_group_count_divides_and_keeps_two_channels_per_group():
    assert [group_count(c) for c in (8, 16, 24, 40, 64, 72, 120, 960, 1280)] == \
        [4, 8, 12, 20, 32, 24, 30, 32, 32]
    for c in range(2, 1100):
        g = group_count(c)
        assert c % g == 0 and g <= 32 and c // g >= 2


def test_norm_and_act_pairs_and_the_form_without_activation():
    norm, act = norm_and_act("bn_relu", 8, "relu6")
    assert isinstance(norm, nn.BatchNorm2d) and isinstance(act, nn.ReLU6)
    norm, act = norm_and_act("gn_relu", 24, "hswish")
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 12
    assert isinstance(act, nn.Hardswish)
    for kind, cls in (("evonorm_b0", EvoNormB0), ("evonorm_s0", EvoNormS0)):
        norm, act = norm_and_act(kind, 8, "relu6")
        assert isinstance(norm, cls) and isinstance(act, nn.Identity)
        plain, act = norm_and_act(kind, 8, "none")
        assert isinstance(plain, ChannelAffine) and isinstance(act, nn.Identity)
        randomised(plain)
        x = torch.randn(2, 8, 3, 3)
        torch.testing.assert_close(plain(x), x * channel(plain.weight) + channel(plain.bias))
    with pytest.raises(ValueError, match="evonorm_b1"):
        norm_and_act("evonorm_b1", 8)


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("act", ["relu", "none"])
def test_norm_cost_counts_the_parameters(kind, act):
    norm, act_module = norm_and_act(kind, 24, act)
    counted = sum(p.numel() for m in (norm, act_module) for p in m.parameters())
    cost = norm_act_cost(kind, 24, act)
    assert cost.params == counted and cost.macs == cost.sparse_macs == 0


# --- the ops with a norm argument ----------------------------------------------------------------
OP_SPECS = [
    ("conv_bn_act", (3, 9, 7), dict(out=16, k=3, stride=2, act="hswish")),
    ("conv_bn_act", (8, 5, 5), dict(out=8, k=1, act="none")),
    ("bn_act", (16, 5, 5), dict(act="relu")),
    ("basic", (16, 9, 7), dict(out=24, stride=2, density=0.5)),
    ("plain", (16, 9, 7), dict(out=16, stride=1)),
    ("bottleneck", (16, 9, 7), dict(out=32, width=8, stride=2)),
    ("mbconv", (16, 9, 7), dict(out=24, mid=48, k=5, stride=2, act="relu6", se=16)),
    ("mbconv", (16, 9, 7), dict(out=16, mid=16, k=3, act="relu", expand=False)),
]


@pytest.mark.parametrize("kind", ALL)
def test_ops_with_each_norm_keep_the_op_contract(kind):
    for op, shape, args in OP_SPECS:
        spec = BlockSpec.of(op, shape, norm=kind, **args)
        with torch.device("meta"):
            assert all(p.is_meta for p in build_block(spec).parameters())
        block = build_block(spec)
        x = torch.randn(2, *shape)
        block.train()(x).sum().backward()
        assert tuple(block.eval()(x).shape[1:]) == block_out_shape(spec)
        assert block_cost(spec) == fvcore_cost(block, x[:1]), spec


def test_bn_relu_blocks_are_todays():
    """The default kind builds the same modules, names and seeded weights as no norm at all."""
    for op, shape, args in OP_SPECS:
        plain, named = BlockSpec.of(op, shape, **args), BlockSpec.of(op, shape, norm="bn_relu",
                                                                     **args)
        torch.manual_seed(0)
        before = build_block(plain).state_dict()
        torch.manual_seed(0)
        after = build_block(named).state_dict()
        assert list(before) == list(after)
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert block_cost(plain) == block_cost(named)


# --- the gene in spaces --------------------------------------------------------------------------
@pytest.mark.parametrize("base", ["resnet", "mobile", "mobilenetv2"])
def test_offering_only_bn_relu_changes_nothing(base):
    preset = get_space(base)
    module = resnet if base == "resnet" else ir
    same = module.create(f"{base}-bn", {**module.PRESETS[base], "norms": ["bn_relu"]}, False)
    assert [(d.name, d.options) for d in same.dimensions] == \
        [(d.name, d.options) for d in preset.dimensions]
    arch = preset.sample(np.random.default_rng(0))
    assert same.encode(Arch(same.name, arch.genes)) == preset.encode(arch)
    assert all("norm" not in spec.kwargs for spec in preset.blocks(arch))


@pytest.mark.parametrize("family", ["resnet", "mobile"])
def test_bn_relu_arch_of_a_norm_space_is_the_batchnorm_network(family):
    space = tiny(family)
    module = resnet if family == "resnet" else ir
    plain = register_space(module.create(f"plain-{family}", {
        k: v for k, v in (TINY_RESNET if family == "resnet" else TINY_MOBILE).items()
        if k != "norms"}, False))
    arch = space.make({**space.max_arch().as_dict(), "norm": "bn_relu"})
    same = plain.make({k: v for k, v in arch.as_dict().items() if k != "norm"})
    assert space.blocks(arch) == plain.blocks(same)
    torch.manual_seed(0)
    ours = space.build(arch, 10, 1).state_dict()
    torch.manual_seed(0)
    theirs = plain.build(same, 10, 1).state_dict()
    assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("family", ["resnet", "mobile"])
def test_every_norm_builds_trains_and_counts_exactly(family):
    space = tiny(family)
    rng = np.random.default_rng(0)
    for kind in ALL:
        arch = space.make({**space.sample(rng).as_dict(), "norm": kind})
        assert Arch.decode(arch.key) == arch and arch.key.count(kind) == 1
        model = space.build(arch, 10, 1)
        x = torch.randn(2, 1, 32, 32)
        model.train()(x).logsumexp(1).sum().backward()
        assert all(p.grad is not None for p in model.parameters())
        assert analytical_cost(arch, 10, 1) == fvcore_cost(model, x[:1]), arch.key
        kinds = {type(m) for m in model.modules()}
        assert (EvoNormB0 in kinds) == (kind == "evonorm_b0")
        assert (EvoNormS0 in kinds) == (kind == "evonorm_s0")
        assert (nn.GroupNorm in kinds) == (kind == "gn_relu")
        assert (nn.BatchNorm2d in kinds) == (kind == "bn_relu")


def test_norm_gene_in_keys_and_references():
    space = tiny("resnet")
    arch = space.make({**space.min_arch().as_dict(), "norm": "evonorm_b0"})
    assert space.encode(arch) == "basic-d1.1.1.1-w0.5.0.5.0.5.0.5-r32-evonorm_b0"
    for body in ("basic-d1.1.1.1-w0.5.0.5.0.5.0.5-r32",              # no norm
                 "basic-d1.1.1.1-w0.5.0.5.0.5.0.5-r32-evonorm_b1"):  # unknown norm
        with pytest.raises(InvalidArchError, match="expected"):
            space.decode(body)
    with pytest.raises(InvalidArchError):
        get_space("resnet").decode("basic-d2.2.2.2-w1.0.1.0.1.0.1.0-r224-bn_relu")
    mobile = tiny("mobile")
    key = mobile.encode(mobile.make({**mobile.min_arch().as_dict(), "norm": "gn_relu"}))
    assert key.startswith("r32-gn_relu-k3e3")
    with pytest.raises(InvalidArchError):
        mobile.decode(key.replace("-gn_relu", ""))
    full = register_space(resnet.create("resnet-all-norms",
                                        {**resnet.PRESETS["resnet"], "norms": ALL}, False))
    r50 = full.reference_archs()["resnet50"]
    assert r50["norm"] == "bn_relu" and full.encode(r50).endswith("-r224-bn_relu")
    preset_r50 = get_space("resnet").reference_archs()["resnet50"]
    assert analytical_cost(r50) == analytical_cost(preset_r50)
    evo_only = resnet.create("resnet-evo", {**resnet.PRESETS["resnet"], "norms": ["evonorm_s0"]},
                             False)
    assert evo_only.reference_archs() == {} and "norm" not in evo_only.dimension_names


def test_ofa_json_carries_the_norm():
    space = register_space(ir.create("mobile-all-norms", {**ir.PRESETS["mobile"], "norms": ALL},
                                     False))
    ref = space.reference_archs()["ofa_subnet_204"]
    assert ref["norm"] == "bn_relu"
    arch = space.make({**ref.as_dict(), "norm": "evonorm_s0"})
    assert space.from_ofa_json(space.to_ofa_json(arch)) == arch
    with pytest.raises(InvalidArchError):
        space.from_ofa_json(space.to_ofa_json(arch).replace("evonorm_s0", "layernorm"))


@pytest.mark.parametrize("norms", ["[bn_relu, evonorm_b1]", "[bn_relu, bn_relu]", "[]", "bn"])
def test_bad_norms_in_a_space_file_are_one_line_errors(tmp_path, norms):
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad-norms\nbase: resnet\nnorms: {norms}\n")
    with pytest.raises(NasError, match="norms") as info:
        load_space_file(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("example", ["resnet_norms", "mobile_norms"])
def test_example_space_files_offer_every_norm(example):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / f"{example}.yaml"
    space = register_space(load_space_file(path))
    assert space.dimension("norm").options == tuple(ALL)
    arch = space.sample(np.random.default_rng(1))
    assert Arch.decode(arch.key) == arch


def test_transformations_refuse_networks_without_batchnorm():
    space = tiny("resnet")
    arch = space.make({**space.min_arch().as_dict(), "norm": "evonorm_s0"})
    with pytest.raises(UnsupportedTransformError, match="BatchNorm"):
        available(space, arch)
    assert available(space, space.make({**arch.as_dict(), "norm": "bn_relu"}))


# --- supernets -----------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["resnet", "mobile"])
def test_supernet_subnets_with_each_norm_equal_the_standalone_ones(family):
    space = tiny(family)
    net = build_supernet(space, 10, 1, probe_samples=2)
    rng = np.random.default_rng(3)
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    first = space.dimension_names[0]  # resnet: the block; mobile: the resolution
    cheap_first = space.make({**space.max_arch().as_dict(), first: space.min_arch()[first]})
    for kind in ALL:  # each kind at its largest shapes with every block: probed kind by kind
        for base in (space.max_arch(), space.min_arch(), cheap_first, space.sample(rng)):
            arch = space.make({**base.as_dict(), "norm": kind})
            model = net.extract(arch)
            for train in (False, True):
                net.train(train), model.train(train)
                with torch.no_grad():
                    torch.testing.assert_close(model(x), net(x, arch), rtol=1e-4, atol=1e-5)
    keys = set(net.bank.infos)
    for kind in ALL[1:]:  # every other kind has weights of its own; bn_relu keeps today's keys
        assert any(f"_norm{kind}/" in k for k in keys), kind
    assert not any("_normbn_relu" in k for k in keys)


def test_supernet_norm_parameters_slice_with_the_channels_and_statistics_are_shared():
    space = tiny("resnet")
    net = build_supernet(space, 10, 1, probe_samples=2)
    wide = space.make({**space.max_arch().as_dict(), "norm": "evonorm_b0"})
    narrow = space.make({**wide.as_dict(), "w1": 0.5})
    model = net.extract(narrow)
    block = model[2]  # stage 1, block 1: stem, pool, then the stages
    evo = block.body[0][1]
    assert isinstance(evo, EvoNormB0) and evo.v.shape == (8,)
    key = f"stage1.0/{narrow['block']}_normevonorm_b0/body.0.1.v"
    torch.testing.assert_close(evo.v, net.bank.tensor(key).detach()[:8])
    shared = net.bank.tensor(key.replace(".v", ".running_var")).clone()
    net.train()
    with torch.no_grad():
        net(torch.randn(4, 1, 32, 32), narrow)
    moved = net.bank.tensor(key.replace(".v", ".running_var"))
    assert not torch.equal(moved[:8], shared[:8])  # the subnet's statistics land in the bank
    assert torch.equal(moved[8:], shared[8:])  # channels it does not use stay as they were
