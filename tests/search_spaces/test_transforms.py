"""Function-preserving transformations (search_spaces.transforms) on tiny inverted-residual
spaces: in eval mode, with random BatchNorm statistics and affine parameters, the transformed
network computes the same outputs as the original (float32, max |diff| <= 1e-5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transform_checks import MOBILE, MOBILENETV2, Measured, one_line_error, randomised, registered

from search_spaces import NasError, get_space
from search_spaces.transforms import (
    Transform,
    TransformError,
    UnsupportedTransformError,
    apply,
    arch_after,
    available,
)
from search_spaces.transforms.inverted_residual import deepen, enlarge_kernel, widen_expand

torch.set_num_threads(1)

MEASURED = Measured()
assert_same = MEASURED.assert_same
mobile = registered("tiny-transform-mobile", MOBILE)
mobile_sparse = registered("tiny-transform-sparse", MOBILE, sparse=True)
v2 = registered("tiny-transform-v2", MOBILENETV2)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("which", ["mobile", "v2"])
def test_every_transformation_preserves_the_function(which, seed, request):
    space = request.getfixturevalue(which)
    rng = np.random.default_rng(seed)
    arch = space.sample(rng)
    # start from small choices so each transformation has room to grow
    genes = arch.as_dict()
    for i in range(1, space.num_stages + 1):
        genes[f"d{i}"] = int(rng.choice([1, 2]))
        for j in range(1, 4):
            genes[f"k{i}_{j}"] = space.config.kernels[0]
            genes[f"e{i}_{j}"] = space.config.expands[int(rng.integers(2))]
    arch = space.make(genes)
    model = randomised(space, arch, seed)
    for stage in range(1, space.num_stages + 1):
        new_arch, new = deepen(space, arch, model, stage)
        assert new_arch[f"d{stage}"] == arch[f"d{stage}"] + 1
        assert_same(model, new)
        for block in range(1, int(arch[f"d{stage}"]) + 1):
            _, new = widen_expand(space, arch, model, stage, block, rng=seed)
            assert_same(model, new)
            _, new = enlarge_kernel(space, arch, model, stage, block)
            assert_same(model, new)


def test_chained_transformations_preserve_the_function(mobile):
    arch = mobile.parse("r32-k3e3-k3e3-k3e4")
    model = randomised(mobile, arch, 7)
    a, m = deepen(mobile, arch, model, 2)
    a, m = widen_expand(mobile, a, m, 2, 2, rng=1)  # widens the new (zero) block
    a, m = widen_expand(mobile, a, m, 2, 2, rng=2)
    a, m = widen_expand(mobile, a, m, 3, 1, rng=3)  # e4 -> e6: SE hidden width grows too
    a, m = enlarge_kernel(mobile, a, m, 3, 1)
    a, m = enlarge_kernel(mobile, a, m, 3, 1)
    a, m = deepen(mobile, a, m, 3, kernel=7, expand=6)
    assert a.key == "tiny-transform-mobile:r32-k3e3-k3e3.k3e6-k7e6.k7e6"
    assert m.arch_key == a.key
    assert_same(model, m)
    # the new model trains: it is a plain built network with every tensor trainable
    m.train()
    m(torch.randn(2, *m.input_shape)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_se_width_growth_is_covered(mobile):
    """e4 -> e6 on a 16-channel input: mid 64 -> 96, SE hidden 16 -> 24."""
    arch = mobile.parse("r32-k3e3-k3e3-k3e4")
    model = randomised(mobile, arch, 3)
    new_arch, new = widen_expand(mobile, arch, model, 3, 1, rng=0)
    index = {s.name: i for i, s in enumerate(mobile.blocks(new_arch))}
    se = new[index["stage3.0"]].se
    assert (se.reduce.in_channels, se.reduce.out_channels) == (96, 24)
    assert_same(model, new)


def test_keys_change_as_expected(mobile, v2):
    arch = mobile.parse("r32-k3e3-k5e4.k3e6-k7e3")
    model = randomised(mobile, arch, 0)
    prefix = "tiny-transform-mobile:r32-"
    assert deepen(mobile, arch, model, 1)[0].key == prefix + "k3e3.k3e3-k5e4.k3e6-k7e3"
    assert widen_expand(mobile, arch, model, 2, 1)[0].key == prefix + "k3e3-k5e6.k3e6-k7e3"
    assert enlarge_kernel(mobile, arch, model, 2, 2)[0].key == prefix + "k3e3-k5e4.k5e6-k7e3"
    arch = v2.parse("w0.75-r32-k3e3-k5e6.k3e3")
    model = randomised(v2, arch, 0)
    assert deepen(v2, arch, model, 2)[0].key == "tiny-transform-v2:w0.75-r32-k3e3-k5e6.k3e3.k3e3"


def test_bad_requests_raise_one_line_nas_errors(mobile):
    arch = mobile.parse("r32-k3e3-k5e6.k7e4.k3e3-k7e3")
    model = randomised(mobile, arch, 0)
    assert "stage 4" in one_line_error(TransformError, deepen, mobile, arch, model, 4)
    assert "stage 0" in one_line_error(TransformError, widen_expand, mobile, arch, model, 0, 1)
    assert "block 2" in one_line_error(TransformError, enlarge_kernel, mobile, arch, model, 1, 2)
    assert "largest" in one_line_error(TransformError, deepen, mobile, arch, model, 2)
    assert "largest" in one_line_error(TransformError, widen_expand, mobile, arch, model, 2, 1)
    assert "largest" in one_line_error(TransformError, enlarge_kernel, mobile, arch, model, 2, 2)
    other = mobile.parse("r32-k3e3-k3e3-k3e3")
    assert "built for" in one_line_error(TransformError, deepen, mobile, other, model, 1)
    one_line_error(NasError, deepen, mobile, arch, model, 1, kernel=4)  # not a kernel option


def test_unsupported_family_and_sparse_widening(mobile):
    nb201 = get_space("nb201")
    arch = nb201.sample(0)
    message = one_line_error(UnsupportedTransformError, deepen, nb201, arch, None, 1)
    assert "inverted-residual" in message
    sparse = get_space("mobile-sparse")
    genes = sparse.min_arch().as_dict()
    genes["density1"] = 0.5
    arch = sparse.make(genes)

    class Fake(nn.Module):  # _check needs only the key; no need to build the 224px network
        arch_key = arch.key

    message = one_line_error(UnsupportedTransformError, widen_expand, sparse, arch, Fake(), 1, 1)
    assert "sparse" in message


def test_sparse_stages_deepen_and_enlarge(mobile_sparse):
    space = mobile_sparse
    arch = space.parse("r32-k3e3@0.5-k3e4@0.25-k5e3@1.0")
    model = randomised(space, arch, 5)
    for stage in (1, 2, 3):
        assert_same(model, deepen(space, arch, model, stage)[1])
        assert_same(model, enlarge_kernel(space, arch, model, stage, 1)[1])
    assert_same(model, widen_expand(space, arch, model, 3, 1, rng=0)[1])  # dense stage


def test_every_available_transformation_applies_and_preserves(mobile):
    """The family-agnostic API: `available` lists exactly the moves to a larger option, and
    `apply` performs each one without changing the function."""
    arch = mobile.parse("r32-k3e3-k5e6.k7e4-k7e6.k7e6.k7e6")
    model = randomised(mobile, arch, 11)
    moves = available(mobile, arch)
    assert Transform("deepen", 1) in moves and Transform("deepen", 3) not in moves
    assert Transform("widen", 2, 1) not in moves and Transform("kernel", 2, 2) not in moves
    assert {str(t) for t in moves} >= {"deepen stage 2", "widen stage 2 block 2",
                                        "kernel stage 1 block 1"}
    for move in moves:
        new_arch, new = apply(mobile, arch, model, move, rng=0)
        assert arch_after(mobile, arch, move) == new_arch  # the same arch without a network
        assert new_arch != arch and new.arch_key == new_arch.key
        assert_same(model, new)
    nb201 = get_space("nb201")
    assert "supported families" in one_line_error(UnsupportedTransformError, available, nb201,
                                                  nb201.sample(0))
    assert "unknown transformation" in one_line_error(TransformError, Transform, "shrink", 1)


def test_report_measured_differences():
    """Runs last in this file: the largest difference any check above measured."""
    MEASURED.report()
