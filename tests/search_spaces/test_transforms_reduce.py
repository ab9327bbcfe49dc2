"""Reductions (N2N students): remove a block, narrow a width, on tiny inverted-residual and
ResNet spaces. Not function-preserving in general, so the exact checks use networks where
the removed block or the dropped units contribute nothing (then the student computes exactly
what the teacher did, float32, max |diff| <= 1e-5); the others check the kept weights."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from transform_checks import (
    MOBILE,
    MOBILENETV2,
    RESNET,
    assert_same,
    one_line_error,
    randomised,
    registered,
)

from search_spaces.ops.residual import ResidualBlock
from search_spaces.transforms import (
    REDUCTIONS,
    Transform,
    TransformError,
    UnsupportedTransformError,
    apply,
    arch_after,
    available,
    deepen,
    reductions,
)
from search_spaces.transforms.shrink import conv_importance, top_units

torch.set_num_threads(1)

BLOCKS = ["basic", "bottleneck", "plain"]
# stem 8: stage 1 has 8 (identity shortcut), 16 or 24 channels (projections) at w0.5/1.0/1.5
STEM8 = {"stem": 8}

mobile = registered("tiny-reduce-mobile", MOBILE, kernels=[3, 5])
v2 = registered("tiny-reduce-v2", MOBILENETV2)
resnet = registered("tiny-reduce-resnet", RESNET, **STEM8)
resnet_sparse = registered("tiny-reduce-resnet-sp", RESNET, **STEM8, sparse=True)
gaps = registered("tiny-reduce-gaps", RESNET, **STEM8, depths=[[1, 3], [2, 3]])  # depth gaps
resnet_stem16 = registered("tiny-reduce-resnet16", RESNET)  # stage 1 at w1.0: the identity
densenet = registered("tiny-reduce-densenet", "base: densenet\ngrowths: [4, 6]\n"
                      "layers: [[1, 2], [1, 2]]\nresolutions: [32]\nbn_size: 2\n")


def block(space, arch, model, name: str) -> nn.Module:
    return model[[s.name for s in space.blocks(arch)].index(name)]


def kill(bn: nn.BatchNorm2d, units: torch.Tensor) -> None:
    """gamma = beta = 0: the units output 0 after the BN (and after any act with act(0) = 0)."""
    with torch.no_grad():
        bn.weight[units] = 0
        bn.bias[units] = 0


def dead(count: int, drop: int, seed: int) -> torch.Tensor:
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:drop]


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- (a) removal -----------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["mobile", "v2", "resnet"])
def test_deepen_then_remove_gives_back_the_original(which, request):
    space = request.getfixturevalue(which)
    for k, arch in enumerate(_some_archs(space, which)):
        model = randomised(space, arch, k)
        for stage in range(1, space.num_stages + 1):
            depth = int(arch[f"d{stage}"])
            grown_arch, grown = deepen(space, arch, model, stage)
            back_arch, back = apply(space, grown_arch, grown,
                                    Transform("remove", stage, depth + 1))
            assert back_arch.key == arch.key and back.arch_key == arch.key
            assert_same(model, back)


def _some_archs(space, which: str):
    if which == "resnet":
        return [space.parse(f"{b}{'-e2' if b == 'bottleneck' else ''}-d2.1-w1.5.0.5-r32")
                for b in BLOCKS]
    if which == "v2":
        return [space.parse("w0.75-r32-k3e3.k5e6-k5e4")]
    return [space.parse("r32-k3e3.k5e6-k5e4-k3e6.k3e3")]


@pytest.mark.parametrize("which", ["mobile", "resnet-basic", "resnet-bottleneck"])
def test_removing_a_middle_block_moves_the_later_ones_down(which, request):
    """Block 2 of 3 made the identity (its residual branch outputs 0): removing it is exact,
    and block 3's genes and trained weights now sit in slot 2."""
    space = request.getfixturevalue(which.split("-")[0])
    if which == "mobile":
        arch = space.parse("r32-k3e3-k3e4.k5e6.k3e3-k5e4")
        last_bn = lambda b: b.project[1]  # noqa: E731
    else:
        kind = which.split("-")[1]
        arch = space.parse(f"{kind}{'-e2' if kind == 'bottleneck' else ''}-d1.3-w1.0.1.0-r32")
        last_bn = lambda b: b.body[-1][1]  # noqa: E731
    model = randomised(space, arch, 3)
    kill(last_bn(block(space, arch, model, "stage2.1")), slice(None))
    new_arch, new = apply(space, arch, model, Transform("remove", 2, 2))
    if which == "mobile":
        assert new_arch.key == "tiny-reduce-mobile:r32-k3e3-k3e4.k3e3-k5e4"
    old_third = block(space, arch, model, "stage2.2").state_dict()
    new_second = block(space, new_arch, new, "stage2.1").state_dict()
    assert all(torch.equal(old_third[k], v) for k, v in new_second.items())
    assert_same(model, new)


def test_sparse_stages_remove_blocks_with_their_masks(resnet_sparse):
    space = resnet_sparse
    arch = space.parse("basic-d3.2-w1.0.1.0-s0.5.0.25-r32")
    model = randomised(space, arch, 4)
    moves = reductions(space, arch)
    assert all(t.kind == "remove" for t in moves) and len(moves) == 3  # no sparse narrowing
    new_arch, new = apply(space, arch, model, Transform("remove", 1, 2))
    old_third = block(space, arch, model, "stage1.2").state_dict()
    moved = block(space, new_arch, new, "stage1.1").state_dict()
    assert any("mask" in k for k in moved)
    assert all(torch.equal(old_third[k], v) for k, v in moved.items())
    message = one_line_error(UnsupportedTransformError, apply, space, arch, model,
                             Transform("narrow", 1))
    assert "sparse" in message


# --- (b) narrowing keeps the top-importance units ------------------------------------------
def test_inverted_residual_narrow_keeps_the_most_important_hidden_units(mobile):
    """Block stage3.1 (24 -> 24 channels, SE): e6 -> e4 is 144 -> 96 hidden units, SE 40 ->
    24. The expansion conv's row c is all s_c with BN gamma 1, so importance is 24 * s_c and
    the kept units are the 96 largest s_c; every hidden-indexed tensor is sliced at them."""
    arch = mobile.parse("r32-k3e3-k3e3-k3e4.k5e6")
    model = randomised(mobile, arch, 1)
    old = block(mobile, arch, model, "stage3.1")
    s = torch.randperm(144, generator=torch.Generator().manual_seed(0)).float() + 1
    with torch.no_grad():
        old.expand[0].weight.copy_(s[:, None, None, None].expand_as(old.expand[0].weight))
        old.expand[1].weight.fill_(1.0)
    kept = s.argsort(descending=True)[:96].sort().values
    se_kept = top_units(conv_importance(old.se.reduce), 24)
    new_arch, new = apply(mobile, arch, model, Transform("narrow", 3, 2))
    assert new_arch.key == "tiny-reduce-mobile:r32-k3e3-k3e3-k3e4.k5e4"
    nb = block(mobile, new_arch, new, "stage3.1")
    assert torch.equal(nb.expand[0].weight, old.expand[0].weight[kept])
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(nb.expand[1], name), getattr(old.expand[1], name)[kept])
        assert torch.equal(getattr(nb.depthwise[1], name), getattr(old.depthwise[1], name)[kept])
    assert torch.equal(nb.depthwise[0].weight, old.depthwise[0].weight[kept])
    assert torch.equal(nb.project[0].weight, old.project[0].weight[:, kept])
    assert torch.equal(nb.project[1].weight, old.project[1].weight)
    assert torch.equal(nb.se.reduce.weight, old.se.reduce.weight[se_kept][:, kept])
    assert torch.equal(nb.se.expand.weight, old.se.expand.weight[kept][:, se_kept])
    assert torch.equal(nb.se.expand.bias, old.se.expand.bias[kept])


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_resnet_narrow_keeps_one_output_set_per_stage(resnet, kind):
    """Stage 1 (w1.5 -> w1.0): the stage's output channels are scored by the sum over every
    producer (each block's last conv + BN, the projection) of ||row||_1 * |gamma|. Each
    producer gets its own ranking (constant rows of a per-producer size, a permutation as
    gamma, some negative), so no single producer's top set is the answer. Every block's last
    conv + BN, the projection and the next stage's first block use that one set."""
    e = "-e2" if kind == "bottleneck" else ""
    arch = resnet.parse(f"{kind}{e}-d3.1-w1.5.0.5-r32")
    model = randomised(resnet, arch, 2)
    blocks = [block(resnet, arch, model, f"stage1.{j}") for j in range(3)]
    producers = [b.body[-1] for b in blocks] + [blocks[0].shortcut]
    out = blocks[0].body[-1][0].out_channels
    score = torch.zeros(out)
    with torch.no_grad():
        for p, pair in enumerate(producers):
            gen = torch.Generator().manual_seed(p)
            gamma = (torch.randperm(out, generator=gen).float() + 1) * (1 - 2 * (p % 2))
            size = 0.01 * (p + 1)
            pair[0].weight.fill_(size)
            pair[1].weight.copy_(gamma)
            score += size * pair[0].weight[0].numel() * gamma.abs()
    new_arch, new = apply(resnet, arch, model, Transform("narrow", 1))
    new_out = block(resnet, new_arch, new, "stage1.0").body[-1][0].out_channels
    kept = torch.argsort(-score, stable=True)[:new_out].sort().values
    alone = [top_units(conv_importance(*pair[:2]), new_out) for pair in producers]
    assert not any(torch.equal(kept, a) for a in alone)  # the sum decides
    for j, b in enumerate(blocks):
        nb = block(resnet, new_arch, new, f"stage1.{j}")
        for name in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(nb.body[-1][1], name), getattr(b.body[-1][1], name)[kept])
        if j > 0:  # later blocks read the kept set
            assert torch.equal(nb.body[0][0].weight, _rows_cols(b.body[0], nb.body[0], kept))
    first = block(resnet, new_arch, new, "stage1.0")
    assert torch.equal(first.shortcut[0].weight, blocks[0].shortcut[0].weight[kept])
    consumer_old = block(resnet, arch, model, "stage2.0")
    consumer_new = block(resnet, new_arch, new, "stage2.0")
    assert torch.equal(consumer_new.body[0][0].weight, consumer_old.body[0][0].weight[:, kept])
    assert torch.equal(consumer_new.shortcut[0].weight,
                       consumer_old.shortcut[0].weight[:, kept])


def _rows_cols(old_pair, new_pair, cols):
    """The old first conv at its top-importance rows (its own inner set) and columns `cols`."""
    rows = top_units(conv_importance(*old_pair[:2]), new_pair[0].out_channels)
    return old_pair[0].weight[rows][:, cols]


def test_resnet_narrow_of_the_last_stage_slices_the_classifier(resnet):
    arch = resnet.parse("plain-d1.2-w0.5.1.0-r32")
    model = randomised(resnet, arch, 5)
    last = block(resnet, arch, model, "stage2.1")
    kept = top_units(conv_importance(*last.body[-1][:2]), 16)
    new_arch, new = apply(resnet, arch, model, Transform("narrow", 2))
    assert new_arch.key == "tiny-reduce-resnet:plain-d1.2-w0.5.0.5-r32"
    assert torch.equal(_fc(new).weight, _fc(model).weight[:, kept])
    assert torch.equal(_fc(new).bias, _fc(model).bias)


def _fc(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


# --- dead units: narrowing is then exact (every kept index set agrees) ------------------------
@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize("stage", [1, 2])
def test_resnet_narrowing_dead_units_is_exact(resnet, kind, stage):
    """Kill exactly as many units per narrowed layer as narrowing drops (residual stages: one
    shared set of output channels); those score 0, so they are the dropped ones, and the
    student computes what the teacher did. w1.5 -> w1.0 keeps stage 1's projection."""
    e = "-e2" if kind == "bottleneck" else ""
    arch = resnet.parse(f"{kind}{e}-d3.2-w1.5.1.5-r32")
    model = randomised(resnet, arch, stage)
    new_arch = arch_after(resnet, arch, Transform("narrow", stage))
    fresh = resnet.build(new_arch)
    names = [f"stage{stage}.{j}" for j in range(int(arch[f"d{stage}"]))]
    olds = [block(resnet, arch, model, n) for n in names]
    news = [block(resnet, new_arch, fresh, n) for n in names]
    out, new_out = olds[0].body[-1][0].out_channels, news[0].body[-1][0].out_channels
    shared = dead(out, out - new_out, 7)
    residual = isinstance(olds[0], ResidualBlock)
    for j, (o, n) in enumerate(zip(olds, news)):
        pairs = list(zip(o.body[0::2], n.body[0::2]))
        for k, (op, np_) in enumerate(pairs):
            last = k == len(pairs) - 1
            units = shared if last and residual else dead(
                op[0].out_channels, op[0].out_channels - np_[0].out_channels, 10 * j + k)
            kill(op[1], units)
        if residual and not isinstance(o.shortcut, nn.Identity):
            kill(o.shortcut[1], shared)
    student_arch, student = apply(resnet, arch, model, Transform("narrow", stage))
    assert student_arch == new_arch
    assert_same(model, student)


@pytest.mark.parametrize("which", ["mobile", "v2"])
def test_inverted_residual_narrowing_dead_units_is_exact(which, request):
    space = request.getfixturevalue(which)
    arch = _some_archs(space, which)[0]
    checked = 0
    for stage in range(1, space.num_stages + 1):
        for b in range(1, int(arch[f"d{stage}"]) + 1):
            move = Transform("narrow", stage, b)
            if move not in reductions(space, arch):
                continue
            teacher = randomised(space, arch, 6)
            old = block(space, arch, teacher, f"stage{stage}.{b - 1}")
            new = block(space, arch_after(space, arch, move), space.build(
                arch_after(space, arch, move)), f"stage{stage}.{b - 1}")
            mid, new_mid = old.depthwise[0].out_channels, new.depthwise[0].out_channels
            units = dead(mid, mid - new_mid, b)
            kill(old.expand[1], units)
            kill(old.depthwise[1], units)
            if old.se is not None:
                se_drop = dead(old.se.reduce.out_channels,
                               old.se.reduce.out_channels - new.se.reduce.out_channels, b)
                with torch.no_grad():
                    old.se.reduce.weight[se_drop] = 0
                    old.se.reduce.bias[se_drop] = 0
            assert_same(teacher, apply(space, arch, teacher, move)[1])
            checked += 1
    assert checked >= 2


# --- (c) the student builds, runs, trains and is smaller -------------------------------------
@pytest.mark.parametrize("which", ["mobile", "v2", "resnet"])
def test_students_train_and_are_smaller(which, request):
    space = request.getfixturevalue(which)
    for arch in _some_archs(space, which):
        model = randomised(space, arch, 0)
        for move in reductions(space, arch):
            new_arch, new = apply(space, arch, model, move)
            assert new.arch_key == new_arch.key == arch_after(space, arch, move).key
            assert params(new) < params(model) or (
                move.kind == "narrow" and _same_widths(space, arch, new_arch))
            new.train()
            new(torch.randn(2, *new.input_shape)).sum().backward()
            assert all(p.grad is not None for p in new.parameters())


def _same_widths(space, arch, new_arch) -> bool:
    """A narrower gene can round to the same channel counts (then nothing is dropped)."""
    return [s.kwargs for s in space.blocks(arch)] == [s.kwargs for s in space.blocks(new_arch)]


# --- (d) what `reductions` lists ------------------------------------------------------------
@pytest.mark.parametrize("which", ["mobile", "v2", "resnet"])
def test_reductions_list_only_applicable_moves(which, request):
    space = request.getfixturevalue(which)
    for arch in [*_some_archs(space, which), space.max_arch()]:
        moves = reductions(space, arch)
        assert moves and all(t.kind in REDUCTIONS for t in moves)
        assert all(t.kind not in REDUCTIONS for t in available(space, arch))
        for t in moves:
            assert t.kind == "narrow" or t.block >= 2
            assert arch_after(space, arch, t).key != arch.key
    arch = space.max_arch()  # every listed move applies
    model = randomised(space, arch, 0)
    for t in reductions(space, arch):
        assert apply(space, arch, model, t)[0] == arch_after(space, arch, t)
    assert reductions(space, space.min_arch()) == []


def test_reductions_of_the_largest_resnet(resnet):
    arch = resnet.parse("bottleneck-e4-d3.3-w1.5.1.5-r32")
    assert [str(t) for t in reductions(resnet, arch)] == [
        "remove stage 1 block 2", "remove stage 1 block 3", "narrow stage 1",
        "remove stage 2 block 2", "remove stage 2 block 3", "narrow stage 2"]


def test_narrowing_to_the_input_width_drops_the_projection(resnet):
    """w1.0 -> w0.5 on stage 1: 16 -> 8 channels, the stem's width, so the learned projection
    goes (ResNet's identity shortcut is used there)."""
    arch = resnet.parse("basic-d1.1-w1.0.0.5-r32")
    model = randomised(resnet, arch, 0)
    assert not isinstance(block(resnet, arch, model, "stage1.0").shortcut, nn.Identity)
    new_arch, new = apply(resnet, arch, model, Transform("narrow", 1))
    assert isinstance(block(resnet, new_arch, new, "stage1.0").shortcut, nn.Identity)


def test_an_identity_shortcut_becomes_a_channel_selecting_projection(resnet_stem16):
    """Stem 16, stage 1 at w1.0 (16 channels: identity shortcut) -> w0.5 (8: a projection).
    The dropped channels D score 0 (killed BNs) and nobody reads them (their consumers'
    input columns are 0), so the student, whose new projection passes x[kept], is exact."""
    space = resnet_stem16
    arch = space.parse("basic-d2.1-w1.0.0.5-r32")
    model = randomised(space, arch, 8)
    first, second = (block(space, arch, model, f"stage1.{j}") for j in range(2))
    consumer = block(space, arch, model, "stage2.0")
    assert isinstance(first.shortcut, nn.Identity)
    drop = dead(16, 8, 0)
    with torch.no_grad():
        for j, b in enumerate((first, second)):
            kill(b.body[0][1], dead(16, 8, j + 1))  # the inner width narrows too
            kill(b.body[-1][1], drop)
        for conv in (second.body[0][0], consumer.body[0][0], consumer.shortcut[0]):
            conv.weight[:, drop] = 0
    new_arch, new = apply(space, arch, model, Transform("narrow", 1))
    projection = block(space, new_arch, new, "stage1.0").shortcut
    kept = torch.tensor(sorted(set(range(16)) - set(drop.tolist())))
    assert torch.equal(projection[0].weight[:, :, 0, 0], torch.eye(16)[kept])
    assert_same(model, new)


# --- (e) bad requests ------------------------------------------------------------------------
def test_bad_requests_raise_one_line_nas_errors(mobile, resnet, gaps):
    arch = mobile.parse("r32-k3e3-k3e4.k5e6-k5e4")
    model = randomised(mobile, arch, 0)
    assert "block 1" in one_line_error(TransformError, apply, mobile, arch, model,
                                       Transform("remove", 2, 1))
    assert "smallest" in one_line_error(TransformError, apply, mobile, arch, model,
                                        Transform("narrow", 1, 1))
    assert "needs a block" in one_line_error(TransformError, apply, mobile, arch, model,
                                             Transform("narrow", 2))
    assert "out of range" in one_line_error(TransformError, apply, mobile, arch, model,
                                            Transform("remove", 2, 3))
    assert "unknown" in one_line_error(TransformError, Transform, "shrink", 1)
    rn_arch = resnet.parse("basic-d1.2-w0.5.1.0-r32")
    rn_model = randomised(resnet, rn_arch, 0)
    assert "smallest" in one_line_error(TransformError, apply, resnet, rn_arch, rn_model,
                                        Transform("narrow", 1))
    assert "block 1" in one_line_error(TransformError, apply, resnet, rn_arch, rn_model,
                                       Transform("remove", 2, 1))
    assert "no block" in one_line_error(TransformError, apply, resnet, rn_arch, rn_model,
                                        Transform("narrow", 2, 1))
    assert "needs a block" in one_line_error(TransformError, apply, resnet, rn_arch, rn_model,
                                             Transform("remove", 2))
    g_arch = gaps.parse("basic-d3.2-w1.0.1.0-r32")
    g_model = randomised(gaps, g_arch, 0)
    assert "not a depth option" in one_line_error(TransformError, apply, gaps, g_arch,
                                                  g_model, Transform("remove", 1, 2))
    assert "smallest" in one_line_error(TransformError, apply, gaps, g_arch, g_model,
                                        Transform("remove", 2, 2))
    assert reductions(gaps, g_arch) == [Transform("narrow", 1), Transform("narrow", 2)]


def test_densenet_reductions_are_refused(densenet):
    arch = densenet.max_arch()
    assert "concatenated" in one_line_error(UnsupportedTransformError, reductions, densenet, arch)
    assert "concatenated" in one_line_error(UnsupportedTransformError, apply, densenet,
                                            arch, None, Transform("remove", 1, 2))
