"""Function-preserving transformations of the ResNet (basic, bottleneck, plain blocks) and
DenseNet (dense, osa blocks) families on tiny spaces: in eval mode, with random BatchNorm
statistics and affine parameters, the transformed network computes the same outputs as the
original (float32, max |diff| <= 1e-5); plus the `plain` ResNet block through the engine."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transform_checks import DENSENET, RESNET, Measured, one_line_error, randomised, registered

from estimators.flops import analytical_cost, fvcore_cost
from search_spaces import BlockSpec, get_space
from search_spaces.ops import block_cost, block_out_shape, build_block
from search_spaces.ops.base import kept_weights
from search_spaces.ops.sparse import SparseConv2d
from search_spaces.supernets import build_supernet
from search_spaces.transforms import (
    Transform,
    TransformError,
    UnsupportedTransformError,
    apply,
    arch_after,
    available,
)
from search_spaces.transforms import densenet as dn_transforms
from search_spaces.transforms import resnet as rn_transforms

torch.set_num_threads(1)

MEASURED = Measured()
assert_same = MEASURED.assert_same
resnet = registered("tiny-tf-resnet", RESNET)
resnet_sparse = registered("tiny-tf-resnet-sp", RESNET, sparse=True)
resnet_plain_first = registered("tiny-tf-plain", RESNET, blocks="[plain, basic]")
densenet = registered("tiny-tf-densenet", DENSENET)
densenet_sparse = registered("tiny-tf-densenet-sp", DENSENET, sparse=True)


def check_move(space, arch, model, move, new_arch) -> None:
    """The key moved exactly one gene to its next option, and `arch_after` agrees."""
    changed = {k for k in arch.as_dict() if arch[k] != new_arch[k]}
    gene = {"deepen": "d" if "d1" in arch.as_dict() else "b", "widen": "w"}[move.kind]
    if gene == "w" and "growth" in arch.as_dict():
        gene, name = "growth", "growth"
    else:
        name = f"{gene}{move.stage}"
    assert changed == {name}, (move, changed)
    options = space.dimension(name).options
    assert options.index(new_arch[name]) == options.index(arch[name]) + 1
    assert arch_after(space, arch, move) == new_arch


# --- ResNet family -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("block", ["basic", "bottleneck", "plain"])
def test_resnet_transformations_preserve_the_function(resnet, block, seed):
    rng = np.random.default_rng(seed)
    moves = 0
    for _ in range(3):
        arch = resnet.make({**resnet.sample(rng).as_dict(), "block": block})
        model = randomised(resnet, arch, seed)
        for move in available(resnet, arch):
            new_arch, new = apply(resnet, arch, model, move, rng=seed)
            assert new.arch_key == new_arch.key
            check_move(resnet, arch, model, move, new_arch)
            assert_same(model, new)
            moves += 1
        if block == "bottleneck" and arch["expansion"] == 2:
            new_arch, new = rn_transforms.widen_expansion(resnet, arch, model, rng=seed)
            assert new_arch == arch.replace(expansion=4)
            assert_same(model, new)
    assert moves >= 3


def test_resnet_shortcut_cases(resnet):
    """Widening stage 1 from the stem's width turns its identity shortcut into a projection
    (built as the identity); from below the stem's width it would lose a learned projection,
    which is refused and not listed."""
    arch = resnet.parse("basic-d2.1-w1.0.0.5-r32")
    model = randomised(resnet, arch, 1)
    new_arch, new = rn_transforms.widen(resnet, arch, model, 1, rng=0)
    assert isinstance(model[2].shortcut, nn.Identity)
    assert not isinstance(new[2].shortcut, nn.Identity)
    assert_same(model, new)
    narrow = resnet.parse("basic-d2.1-w0.5.0.5-r32")
    assert Transform("widen", 1) not in available(resnet, narrow)
    assert Transform("widen", 2) in available(resnet, narrow)
    message = one_line_error(UnsupportedTransformError, rn_transforms.widen, resnet, narrow,
                             randomised(resnet, narrow, 0), 1)
    assert "projection" in message


def test_resnet_keys_change_as_expected(resnet):
    arch = resnet.parse("bottleneck-e2-d1.2-w0.5.1.0-r32")
    model = randomised(resnet, arch, 0)
    prefix = "tiny-tf-resnet:bottleneck-"
    assert rn_transforms.deepen(resnet, arch, model, 2)[0].key == prefix + "e2-d1.3-w0.5.1.0-r32"
    assert rn_transforms.widen(resnet, arch, model, 2)[0].key == prefix + "e2-d1.2-w0.5.1.5-r32"
    assert rn_transforms.widen_expansion(resnet, arch, model)[0].key == (
        prefix + "e4-d1.2-w0.5.1.0-r32")
    plain = resnet.parse("plain-d1.1-w0.5.0.5-r32")
    assert [str(t) for t in available(resnet, plain)] == [
        "deepen stage 1", "widen stage 1", "deepen stage 2", "widen stage 2"]
    assert arch_after(resnet, plain, Transform("widen", 1)).key == (
        "tiny-tf-resnet:plain-d1.1-w1.0.0.5-r32")


def test_resnet_bad_requests_raise_one_line_nas_errors(resnet, densenet):
    arch = resnet.parse("basic-d3.1-w1.5.1.0-r32")
    model = randomised(resnet, arch, 0)
    assert "kernel" in one_line_error(TransformError, apply, resnet, arch, model,
                                      Transform("kernel", 1, 1))
    assert "no block" in one_line_error(TransformError, apply, resnet, arch, model,
                                        Transform("widen", 2, 1))
    assert "stage 3" in one_line_error(TransformError, rn_transforms.deepen, resnet, arch,
                                       model, 3)
    assert "largest" in one_line_error(TransformError, rn_transforms.deepen, resnet, arch,
                                       model, 1)
    assert "largest" in one_line_error(TransformError, rn_transforms.widen, resnet, arch, model,
                                       1)
    assert "bottleneck" in one_line_error(TransformError, rn_transforms.widen_expansion, resnet,
                                          arch, model)
    other = resnet.parse("basic-d1.1-w1.5.1.0-r32")
    assert "built for" in one_line_error(TransformError, rn_transforms.deepen, resnet, other,
                                         model, 1)
    assert "ResNet" in one_line_error(UnsupportedTransformError, rn_transforms.available,
                                      densenet, densenet.sample(0))
    assert not any(t.kind == "kernel" for t in available(resnet, resnet.min_arch()))


def test_resnet_sparse_stages_deepen_but_do_not_widen(resnet_sparse):
    space = resnet_sparse
    for block in ("basic", "bottleneck", "plain"):
        genes = {"block": block, "d1": 1, "d2": 1, "w1": 1.0, "w2": 1.0, "density1": 0.25,
                 "density2": 1.0, "r": 32}
        arch = space.make(genes)
        model = randomised(space, arch, 2)
        moves = available(space, arch)
        # stage 1 is sparse; stage 2 is dense but feeds nothing sparse
        assert Transform("widen", 1) not in moves and Transform("widen", 2) in moves
        for move in moves:
            assert_same(model, apply(space, arch, model, move, rng=0)[1])
        new_arch, new = rn_transforms.deepen(space, arch, model, 1)
        for m in new.modules():
            if isinstance(m, SparseConv2d):
                fan_in = m.weight[0].numel()
                assert (m.mask.flatten(1).sum(1) == kept_weights(fan_in, m.density)).all()
        assert "sparse" in one_line_error(UnsupportedTransformError, rn_transforms.widen, space,
                                          arch, model, 1)
        # stage 1 is dense but its consumer (stage 2's first block) is sparse
        consumer = space.make({**genes, "density1": 1.0, "density2": 0.5})
        assert Transform("widen", 1) not in available(space, consumer)


def test_resnet_new_model_trains(resnet):
    arch = resnet.parse("bottleneck-e2-d1.1-w1.0.0.5-r32")
    model = randomised(resnet, arch, 4)
    a, m = rn_transforms.deepen(resnet, arch, model, 1)
    a, m = rn_transforms.widen(resnet, a, m, 1, rng=1)
    a, m = rn_transforms.widen(resnet, a, m, 2, rng=2)
    a, m = rn_transforms.widen_expansion(resnet, a, m, rng=3)
    assert a.key == "tiny-tf-resnet:bottleneck-e4-d2.1-w1.5.1.0-r32"
    assert_same(model, m)
    m.train()
    m(torch.randn(2, *m.input_shape)).logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    zeroed = m[3].body[-1][1]  # the appended block's last BN (gamma = beta = 0)
    assert zeroed.weight.grad.abs().sum() > 0 and zeroed.bias.grad.abs().sum() > 0


# --- DenseNet family ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("types", ["dense", "osa", "mixed"])
def test_densenet_transformations_preserve_the_function(densenet, types, seed):
    rng = np.random.default_rng(seed)
    moves = 0
    for _ in range(3):
        genes = densenet.sample(rng).as_dict()
        if types != "mixed":
            genes.update({f"t{i}": types for i in range(1, densenet.num_blocks + 1)})
        arch = densenet.make(genes)
        model = randomised(densenet, arch, seed)
        for move in available(densenet, arch):
            new_arch, new = apply(densenet, arch, model, move)
            check_move(densenet, arch, model, move, new_arch)
            assert_same(model, new)
            moves += 1
        if arch["compression"] == 0.5:
            new_arch, new = dn_transforms.widen_compression(densenet, arch, model)
            assert new_arch == arch.replace(compression=1.0)
            assert_same(model, new)
    assert moves >= 3


def test_densenet_keys_and_available(densenet):
    arch = densenet.parse("g4-c0.5-dense.osa.dense-b1.4.2-r32")
    model = randomised(densenet, arch, 0)
    assert [str(t) for t in available(densenet, arch)] == ["deepen stage 1", "deepen stage 2",
                                                            "widen stage 1"]
    prefix = "tiny-tf-densenet:"
    assert dn_transforms.deepen(densenet, arch, model, 2)[0].key == (
        prefix + "g4-c0.5-dense.osa.dense-b1.5.2-r32")
    assert dn_transforms.widen(densenet, arch, model)[0].key == (
        prefix + "g6-c0.5-dense.osa.dense-b1.4.2-r32")
    top = densenet.parse("g8-c1.0-dense.dense.dense-b3.5.2-r32")
    assert available(densenet, top) == []


def test_densenet_bad_requests_raise_one_line_nas_errors(densenet, resnet):
    arch = densenet.parse("g8-c0.5-dense.dense.dense-b3.1.2-r32")
    model = randomised(densenet, arch, 0)
    assert "global" in one_line_error(TransformError, apply, densenet, arch, model,
                                      Transform("widen", 2))
    assert "kernel" in one_line_error(TransformError, apply, densenet, arch, model,
                                      Transform("kernel", 1))
    assert "no layer" in one_line_error(TransformError, apply, densenet, arch, model,
                                        Transform("deepen", 2, 1))
    assert "stage 4" in one_line_error(TransformError, dn_transforms.deepen, densenet, arch,
                                       model, 4)
    assert "largest" in one_line_error(TransformError, dn_transforms.deepen, densenet, arch,
                                       model, 1)
    assert "largest" in one_line_error(TransformError, dn_transforms.widen, densenet, arch,
                                       model)
    assert "DenseNet" in one_line_error(UnsupportedTransformError, dn_transforms.widen, resnet,
                                        resnet.min_arch(), model)


def test_densenet_sparse_blocks(densenet_sparse):
    """Old units keep their masked weights; masks are recomputed and keep each unit's share."""
    space = densenet_sparse
    arch = space.parse("g4-c0.5-dense.osa.dense-b2.2.1-s0.5.0.25.1.0-r32")
    model = randomised(space, arch, 3)
    for move in available(space, arch):
        new_arch, new = apply(space, arch, model, move)
        assert_same(model, new)
        for m in new.modules():
            if isinstance(m, SparseConv2d):
                fan_in = m.weight[0].numel()
                assert (m.mask.flatten(1).sum(1) == kept_weights(fan_in, m.density)).all()


def test_densenet_new_model_trains(densenet):
    arch = densenet.parse("g4-c0.5-dense.osa.dense-b1.2.1-r32")
    model = randomised(densenet, arch, 5)
    a, m = dn_transforms.deepen(densenet, arch, model, 1)
    a, m = dn_transforms.widen(densenet, a, m)
    a, m = dn_transforms.deepen(densenet, a, m, 2)
    a, m = dn_transforms.widen_compression(densenet, a, m)
    assert a.key == "tiny-tf-densenet:g6-c1.0-dense.osa.dense-b2.4.1-r32"
    assert_same(model, m)
    m.train()
    m(torch.randn(2, *m.input_shape)).logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    index = {s.name: i for i, s in enumerate(densenet.blocks(a))}
    transition = m[index["transition1"]][2]
    old_in = model[{s.name: i for i, s in enumerate(densenet.blocks(arch))}["transition1"]][2]
    # the zero weights reading new channels learn: the new channels carry signal
    new_cols = transition.weight.grad[:old_in.out_channels, old_in.in_channels:]
    assert new_cols.abs().sum() > 0


# --- the plain block through the engine --------------------------------------------------------
def test_plain_blocks_build_count_and_pass_the_ops_contract(resnet, resnet_sparse):
    for space in (resnet, resnet_sparse):
        arch = space.make({**space.max_arch().as_dict(), "block": "plain"})
        assert space.decode(space.encode(arch)) == arch and arch["expansion"] is None
        model = space.build(arch, num_classes=10)
        assert analytical_cost(arch, num_classes=10) == fvcore_cost(model, model.example_input())
    for spec in (BlockSpec.of("plain", (16, 9, 7), out=24, stride=2, density=0.25),
                 BlockSpec.of("plain", (16, 9, 7), out=16, stride=1)):
        with torch.device("meta"):
            assert all(p.is_meta for p in build_block(spec).parameters())
        block = build_block(spec).eval()
        with torch.no_grad():
            out = block(torch.randn(2, *spec.in_shape))
        assert tuple(out.shape[1:]) == block_out_shape(spec)
        assert block_cost(spec) == fvcore_cost(block, torch.randn(1, *spec.in_shape))
    assert get_space("resnet").config.blocks == ("basic", "bottleneck")  # the preset is unchanged


def test_plain_blocks_in_a_supernet(resnet_plain_first):
    space = resnet_plain_first
    net = build_supernet(space, 10, 3, probe_samples=2).eval()
    assert any("/plain/" in k for k in net.bank.infos)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for arch in (space.max_arch(), space.min_arch()):
        with torch.no_grad():
            torch.testing.assert_close(net.extract(arch).eval()(x), net(x, arch), rtol=1e-4,
                                       atol=1e-5)


def test_report_measured_differences():
    """Runs last in this file: the largest difference any check above measured."""
    MEASURED.report()
