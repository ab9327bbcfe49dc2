"""ViT-ResNAS (vit-resnas): the published tiny network's counts, exact analytical costs per block,
keys, the residual reduction's skip path, one training step, and the supernet on a small space."""
from __future__ import annotations

import ast
import itertools
import math

import numpy as np
import pytest
import torch

from estimators.flops import analytical_cost, fvcore_cost
from search_spaces import Arch, InvalidArchError, NasError, get_space, register_space
from search_spaces.ops import block_cost, build_block
from search_spaces.spaces import vit_resnas
from search_spaces.supernets import build_supernet

# `--network-def` of scripts/vit-sr-nas/searched_net/tiny.sh in github.com/yilunliao/vit-search:
# (4, width) conv embedding; (1, (width, heads, head_dim), (width, mlp), 1) transformer block;
# (3, width_in, width_out) residual spatial reduction; (2, width, classes) head
TINY_NETWORK_DEF = (
    "((4, 176), (1, (176, 3, 32), (176, 704), 1), (1, (176, 3, 32), (176, 576), 1), "
    "(1, (176, 3, 32), (176, 640), 1), (1, (176, 4, 32), (176, 576), 1), "
    "(1, (176, 4, 32), (176, 704), 1), (3, 176, 352), (1, (352, 10, 48), (352, 1408), 1), "
    "(1, (352, 8, 48), (352, 1408), 1), (1, (352, 8, 48), (352, 1280), 1), "
    "(1, (352, 8, 48), (352, 1408), 1), (1, (352, 10, 48), (352, 1280), 1), "
    "(1, (352, 10, 48), (352, 1024), 1), (3, 352, 704), (1, (704, 10, 64), (704, 2560), 1), "
    "(1, (704, 10, 64), (704, 1792), 1), (1, (704, 10, 64), (704, 2816), 1), "
    "(1, (704, 8, 64), (704, 2816), 1), (1, (704, 8, 64), (704, 2560), 1), (2, 704, 1000))")
# what the repository's model (nets/vit_sr_supernet.py, nets/patch_conv.py) holds for it, less
# the training-only ShiftTokenMixup patch head (704 * 1000 + 1000), and what its MAC counter
# (network_utils/compute_flop_mac.py, one class token) gives; the search's constraint: 1.7944G
TINY_PARAMS, TINY_MACS, SEARCH_MAC_BOUND = 40_793_552, 1_782_630_272, 1_794_400_000

SMALL = {"resolutions": [32, 64], "patch": 4, "stem": 8,
         "widths": [[8, 16], [16, 24], [32]], "depths": [[1, 2], [1, 2], [1]],
         "heads": [[1, 2], [2, 3], [2]], "head_dims": [4, 8, 8],
         "mlp_widths": [[16, 32], [32, 48], [64]], "classes": 10}


def small(sparse: bool = False, **changes):
    name = "test-resnas" + ("-sparse" if sparse else "") + "".join(sorted(changes))
    return register_space(vit_resnas.create(name, {**SMALL, **changes}, sparse))


def test_tiny_is_the_published_network_def():
    space = get_space("vit-resnas")
    network = ast.literal_eval(TINY_NETWORK_DEF)
    widths, stages = [network[0][1]], [[]]
    for block in network[1:-1]:
        if block[0] == 3:
            widths.append(block[2])
            stages.append([])
        else:
            (width, heads, head_dim), (_, hidden) = block[1], block[2]
            assert width == widths[-1] and head_dim == space.config.head_dims[len(widths) - 1]
            stages[-1].append((heads, hidden))
    expected = space.from_blocks(224, tuple(widths), tuple(map(tuple, stages)))
    assert space.reference_archs()["vit_resnas_tiny"] == expected
    assert space.parse("vit_resnas_tiny") == expected


def test_tiny_reproduces_the_repository_counts():
    space = get_space("vit-resnas")
    arch = space.reference_archs()["vit_resnas_tiny"]
    cost = analytical_cost(arch)
    assert cost.params == TINY_PARAMS
    assert cost.macs == pytest.approx(TINY_MACS, rel=0.03)
    assert cost.macs == TINY_MACS and cost.macs < SEARCH_MAC_BOUND  # exact, in fact
    assert analytical_cost(get_space("vit-resnas-sparse").reference_archs()["vit_resnas_tiny"]) \
        == cost  # named networks are dense
    model = space.build(arch)
    assert fvcore_cost(model, model.example_input()) == cost


@pytest.mark.parametrize("sparse", [False, True])
def test_every_block_costs_what_fvcore_counts(sparse):
    space = small(sparse)
    rng = np.random.default_rng(0)
    for arch in (space.max_arch(), space.min_arch(), space.sample(rng), space.sample(rng)):
        for spec in space.blocks(arch, 5, 3):
            block = build_block(spec)
            assert block_cost(spec) == fvcore_cost(block, torch.randn(1, *spec.in_shape)), spec
        model = space.build(arch, num_classes=5).eval()
        x = model.example_input(2)
        with torch.no_grad():
            assert model(x).shape == (2, 5)
        assert analytical_cost(arch, num_classes=5) == fvcore_cost(model, x[:1]), arch.key


def test_reduction_skip_path_pools_the_grid_and_pads_channels():
    space = small()
    arch = space.make({**space.max_arch().as_dict(), "r": 32})  # an 8 x 8 grid in stage 1
    block = build_block(space.blocks(arch)[3])  # stage 2's reduction
    assert type(block).__name__ == "ResidualReductionBlock" and block.side == 8
    with torch.no_grad():
        for param in (block.reduce.weight, block.reduce.bias, block.token.weight,
                      block.token.bias, block.grid_pos_embed):
            param.zero_()  # main path off: what is left is the skip path
        x = torch.randn(2, 1 + 8 * 8, 16)
        out = block(x)
    grid = x[:, 1:].reshape(2, 4, 2, 4, 2, 16).mean((2, 4)).reshape(2, 16, 16)  # 2x2 means
    assert out.shape == (2, 1 + 4 * 4, 24)
    torch.testing.assert_close(out[:, 0, :16], x[:, 0])  # the class token passes through
    torch.testing.assert_close(out[:, 1:, :16], grid)
    assert float(out[:, :, 16:].abs().max()) == 0.0  # zero-padded channels


def test_a_small_network_trains_one_step():
    space = small()
    arch = space.sample(np.random.default_rng(1))
    torch.manual_seed(0)
    model = space.build(arch, num_classes=4).train()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(model.example_input(4)),
                                             torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(p.grad is not None for p in model.parameters())  # every weight is used
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_supernet_subnets_equal_standalone_builds_at_every_resolution():
    space = small(sparse=True)
    net = build_supernet(space, 10, 1).eval()
    rng = np.random.default_rng(2)
    for arch in (space.max_arch(), space.min_arch(), space.sample(rng), space.sample(rng)):
        x = torch.randn(2, 1, arch["r"], arch["r"], generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            shared = net(x, arch)
            model = net.extract(arch).eval()
            torch.testing.assert_close(model(x), shared, rtol=1e-4, atol=1e-5)
        with torch.device("meta"):
            reference = space.build(arch, 10, 1)
        assert [type(m) for m in model.modules()] == [type(m) for m in reference.modules()]
    kinds = {info.kind for key, info in net.bank.infos.items() if "pos_embed" in key}
    assert kinds == {"pos", "grid"}  # both grids resampled for the smaller resolution


def test_density_reaches_blocks_and_reductions_not_embedding_or_head():
    space = small(sparse=True)
    arch = space.make({"density1": 1.0, "density2": 0.25, "density3": 1.0, "d2": 2})
    specs = {spec.name: spec for spec in space.blocks(arch)}
    assert specs["stage2.reduce"].kwargs["density"] == 0.25
    assert specs["stage2.2"].kwargs["density"] == 0.25
    assert "density" not in specs["stage3.1"].kwargs  # dense blocks share lookup-table keys
    assert "density" not in specs["embed"].kwargs and "density" not in specs["head"].kwargs
    assert analytical_cost(arch).sparse_macs < analytical_cost(arch).macs


@pytest.mark.parametrize("sparse", [False, True])
def test_keys_round_trip_and_log10_size_counts_canonical_archs(sparse):
    space = small(sparse, resolutions=[32], heads=[[1], [2, 3], [2]], mlp_widths=[[16], [32], [64]])
    seen = set()
    for values in itertools.product(*(d.options for d in space.dimensions)):
        arch = space.make(dict(zip(space.dimension_names, values)))
        seen.add(arch)
    for arch in seen:
        assert space.decode(space.encode(arch)) == arch and Arch.decode(arch.key) == arch
    assert math.isclose(10 ** space.log10_size(), len(seen))


def test_readable_key_and_inactive_blocks():
    space = get_space("vit-resnas")
    arch = space.min_arch()
    assert space.encode(arch) == "r224-w160.320.640-" + "-".join(
        ".".join([f"h{h}m{m}"] * 3) for h, m in ((3, 384), (6, 768), (6, 1536)))
    assert arch["h1_4"] is None and arch["m3_6"] is None
    assert not space.contains(arch.replace(h1_4=3))
    sparse = get_space("vit-resnas-sparse").max_arch()
    assert get_space("vit-resnas-sparse").encode(sparse).endswith("h12m3072@1.0")


@pytest.mark.parametrize("name,body", [
    ("vit-resnas", "r224-w176.352-h3m704.h3m704.h3m704-h6m768.h6m768.h6m768-"
                   "h6m1536.h6m1536.h6m1536"),
    ("vit-resnas", "r224-w176.352.704-h3m704.h3m704-h6m768.h6m768.h6m768-h6m1536.h6m1536.h6m1536"),
    ("vit-resnas", "r224-w176.352.704-h3m700.h3m704.h3m704-h6m768.h6m768.h6m768-"
                   "h6m1536.h6m1536.h6m1536"),
    ("vit-resnas", "r224-w176.352.704-h3e704.h3m704.h3m704-h6m768.h6m768.h6m768-"
                   "h6m1536.h6m1536.h6m1536"),
    ("vit-resnas", "r224-x176.352.704-h3m704.h3m704.h3m704-h6m768.h6m768.h6m768-"
                   "h6m1536.h6m1536.h6m1536"),
    ("vit-resnas-sparse", "r224-w176.352.704-h3m704.h3m704.h3m704-h6m768.h6m768.h6m768-"
                          "h6m1536.h6m1536.h6m1536"),
])
def test_bad_keys_raise_one_line_errors(name, body):
    with pytest.raises(InvalidArchError) as info:
        get_space(name).decode(body)
    assert "\n" not in str(info.value) and "expected" in str(info.value)


@pytest.mark.parametrize("changes,match", [
    ({"widths": [[8, 32], [16, 24], [32]]}, "zero-pads"),
    ({"patch": 3}, "even"),
    ({"resolutions": [40]}, "divisible"),
    ({"head_dims": [4, 8]}, "head_dims"),
    ({"depths": [[1], [1]]}, "depths"),
    ({"kind": "vit"}, "unknown settings"),
])
def test_config_errors_are_nas_errors(changes, match):
    with pytest.raises(NasError, match=match):
        vit_resnas.create("bad", {**SMALL, **changes}, False)


def test_named_network_only_in_spaces_with_its_skeleton_and_options():
    assert "vit_resnas_tiny" not in small().reference_archs()
    narrow = vit_resnas.create("narrow", {**vit_resnas.PRESETS["vit-resnas"],
                                          "widths": [[160], [320], [640]]}, False)
    assert set(narrow.reference_archs()) == {"smallest", "largest"}
