"""Weight-sharing supernets: for random archs of every space (sparse variants included) the
extracted network computes what the supernet computes, is the network `space.build` defines,
and shares weights the way the scheme says (kernels, widths, depth, masks, candidates)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from search_spaces import get_space, list_spaces
from search_spaces.registry import sparse_spaces
from search_spaces.supernets import ElasticSupernet, OneShotSupernet, SupernetError, build_supernet
from search_spaces.supernets.dead_taps import dead_taps, dead_taps_trimmed
from search_spaces.supernets.elastic import position_grid, transformed_kernel

SPACES = list_spaces()
ALL_SPACES = SPACES + sparse_spaces()
CLASSES, CHANNELS = 10, 1
_cache: dict[str, object] = {}


def supernet(name: str):
    """One supernet per space for the whole module (building one probes the space)."""
    if name not in _cache:
        _cache[name] = build_supernet(name, CLASSES, CHANNELS)
    return _cache[name]


def input_for(space, arch, batch: int = 2) -> torch.Tensor:
    """ViT position embeddings fix the input size to the arch's own; the others run at 32."""
    size = space.input_size(arch) if type(space).__name__ in ("ViTSpace", "ResNASSpace") else 32
    return torch.randn(batch, CHANNELS, size, size, generator=torch.Generator().manual_seed(0))


def param_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ALL_SPACES)
def test_extracted_subnet_equals_supernet_and_space_build(name):
    space = get_space(name)
    net = supernet(name).eval()
    rng = np.random.default_rng(7)
    for arch in (space.max_arch(), space.min_arch(), space.sample(rng), space.sample(rng)):
        x = input_for(space, arch)
        net.set_active(arch)
        with torch.no_grad():
            shared = net(x)
            model = net.extract(arch).eval()
            alone = model(x)
        assert shared.shape == (2, CLASSES)
        torch.testing.assert_close(alone, shared, rtol=1e-4, atol=1e-5)
        with torch.device("meta"):  # the same modules and counts, without initialisation
            reference = space.build(arch, CLASSES, CHANNELS)
        assert param_count(model) == param_count(reference), arch.key
        assert [type(m) for m in model.modules()] == [type(m) for m in reference.modules()]
        assert not any(p.is_meta for p in model.parameters())


def test_supernet_styles():
    assert isinstance(supernet("mobile"), ElasticSupernet)
    assert isinstance(supernet("fbnet"), ElasticSupernet)
    for name in ("nb201", "resnet", "vit"):
        assert isinstance(supernet(name), OneShotSupernet)


def test_elastic_kernel_is_the_transformed_centre_of_the_largest():
    net = supernet("mobile")
    space = net.space
    big = space.max_arch()
    small = space.make({**big.as_dict(), "k1_1": 3})
    shared = {t: v for t, v in net.materialize(big).items() if "depthwise.0.weight" in t}
    cut = {t: v for t, v in net.materialize(small).items() if "depthwise.0.weight" in t}
    name = "2.depthwise.0.weight"  # blocks: stem, stage0.0, stage1.0
    assert cut[name].shape[-1] == 3 and shared[name].shape[-1] == 7
    key = next(k for k in net.bank.transforms if k.startswith("stage1.0/"))
    matrices = net.bank.matrices(key)
    assert sorted(matrices) == [(5, 3), (7, 5)]
    expected = transformed_kernel(shared[name], tuple(cut[name].shape), matrices)
    torch.testing.assert_close(cut[name], expected)
    # at initialisation the matrices are the identity: the 3x3 kernel is the centre crop
    torch.testing.assert_close(cut[name], shared[name][:, :, 2:5, 2:5])


def test_depth_skips_trailing_blocks_and_widths_are_leading_slices():
    net = supernet("mobile")
    space = net.space
    shallow = space.make({**space.max_arch().as_dict(), "d2": 2, "e1_1": 3})
    slots = [slot for _, slot, _ in net._slots(shallow)]
    assert "stage2.1" in slots and "stage2.2" not in slots and "stage3.0" in slots
    expand = net.materialize(shallow)["2.expand.0.weight"]  # stage 1 block 1: 16 in, 48 mid
    assert tuple(expand.shape[:2]) == (48, 16)
    shared = net.bank.tensor("stage1.0/mbconv/expand.0.weight")
    assert shared.shape[0] == 96  # expand ratio 6
    torch.testing.assert_close(expand, shared[:48, :16])


def test_sparse_subnets_mask_the_shared_weight():
    net = supernet("resnet-sparse")
    space = net.space
    dense = space.max_arch()
    sparse = space.make({**dense.as_dict(), "density1": 0.25})
    model = net.extract(sparse).requires_grad_(False)
    conv = model[2].body[0][0]  # stage 1, block 1, first conv
    assert type(conv).__name__ == "SparseConv2d" and conv.density == 0.25
    key = f"stage1.0/{sparse['block']}/body.0.0.weight"
    shared = net.bank.tensor(key).detach()[:conv.weight.shape[0], :conv.weight.shape[1]]
    kept = conv.mask.bool()
    torch.testing.assert_close(conv.weight[kept], shared[kept])  # the same weights, masked
    assert float(conv.weight[~kept].abs().sum()) == 0.0
    fan_in = conv.weight[0].numel()
    assert int(conv.mask[0].sum()) == round(fan_in * 0.25)
    # the kept ones are the largest in magnitude
    row = shared[0].abs().flatten()
    assert row[conv.mask[0].flatten().bool()].min() >= row[~conv.mask[0].flatten().bool()].max()


def test_candidates_that_do_not_nest_have_their_own_weights():
    keys = set(supernet("nb201").bank.infos)
    cell = [k for k in keys if k.startswith("stage1.0/nb201_cell")]
    assert any("nor_conv_1x1" in k for k in cell) and any("nor_conv_3x3" in k for k in cell)
    resnet = set(supernet("resnet").bank.infos)
    assert any("/basic/" in k for k in resnet) and any("/bottleneck/" in k for k in resnet)
    fbnet = set(supernet("fbnet").bank.infos)
    assert any("mbconv_groups2" in k for k in fbnet) and any("/conv_bn_act/" in k for k in fbnet)


def test_training_mode_gradients_reach_the_shared_weights():
    net = supernet("fbnet").train()
    space = net.space
    arch = space.sample(np.random.default_rng(3))
    net.zero_grad(set_to_none=True)
    net(torch.randn(4, CHANNELS, 32, 32), arch).logsumexp(1).sum().backward()
    used = {k for _, _, ts in net._slots(arch) for t in ts for k in [t.key] if k}
    grads = {k for k, p in net.bank.named_parameters() if p.grad is not None}
    # every gradient belongs to a weight the subnet uses (or to its kernel transforms)
    assert grads and all(k.replace(":", ".").split("#")[0] in used for k in grads)
    unused = [k for k in net.bank.infos if k not in used and net.bank.infos[k].is_param]
    assert unused  # other candidates of the same slots are left alone
    net.zero_grad(set_to_none=True)


def test_vit_position_embeddings_are_resampled_for_smaller_resolutions():
    shared = torch.randn(1, 1 + 14 * 14, 8)
    small = position_grid(shared, (1, 1 + 10 * 10, 6))
    assert small.shape == (1, 101, 6)
    torch.testing.assert_close(small[:, 0], shared[:, 0, :6])
    assert torch.equal(position_grid(shared, (1, 197, 8)), shared)


def test_dead_taps_are_cut_exactly():
    assert dead_taps(1, 7, 1, 3) == (3, 3)
    assert dead_taps(2, 7, 1, 3) == (2, 2)
    assert dead_taps(28, 3, 2, 1) == (0, 0)
    x = torch.randn(3, 8, 2, 2)
    w = torch.randn(8, 1, 7, 7)
    plain = torch.nn.functional.conv2d(x, w, None, 1, 3, 1, 8)
    with dead_taps_trimmed():
        trimmed = torch.nn.functional.conv2d(x, w, None, 1, 3, 1, 8)
    torch.testing.assert_close(trimmed, plain)


def test_foreign_arch_is_refused():
    with pytest.raises(SupernetError):
        supernet("mobile").set_active(get_space("nb201").max_arch())
