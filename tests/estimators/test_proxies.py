"""Zero-cost proxies: closed forms on tiny networks, no side effects on the model, the shared
passes equal the single functions, and agreement with NASLib's published NB201 scores."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from estimators import proxies as P
from search_spaces.ops import SparseConv2d


def small_cnn(seed: int = 0, width: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width),
                         nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 5))


def batch(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=gen), torch.randint(0, 5, (n,), generator=gen)


def test_synflow_of_a_linear_chain_is_layers_times_flow():
    # For a bias-free linear chain every layer carries the same synaptic flow
    # R = 1^T |W3| |W2| |W1| 1, so the score is (number of layers) * R.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Linear(6, 5, bias=False),
                          nn.Linear(5, 3, bias=False))
    w = [m.weight.detach().abs().double() for m in model]
    flow = float(torch.ones(3, dtype=torch.float64) @ w[2] @ w[1] @ w[0]
                 @ torch.ones(4, dtype=torch.float64))
    assert P.synflow(model, torch.randn(7, 4)) == pytest.approx(3 * flow, rel=1e-9)


def test_synflow_ignores_batchnorm_and_data():
    model = small_cnn()
    x, y = batch()
    assert P.synflow(model, x, y) == P.synflow(model, torch.randn_like(x) * 100, y)
    no_bn = nn.Sequential(*[m for m in small_cnn() if not isinstance(m, nn.BatchNorm2d)])
    assert P.synflow(model, x) == pytest.approx(P.synflow(no_bn, x), rel=1e-12)


def test_grad_norm_and_snip_match_autograd():
    model = small_cnn()
    x, y = batch()
    reference = small_cnn().train()
    F.cross_entropy(reference(x), y).backward()
    weights = [m.weight for m in reference if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert P.grad_norm(model, x, y) == pytest.approx(sum(float(w.grad.norm()) for w in weights))
    assert P.snip(model, x, y) == pytest.approx(
        sum(float((w.detach() * w.grad).abs().sum()) for w in weights))


def test_jacov_extremes():
    n = 16
    independent = np.random.default_rng(0).standard_normal((n, 5000))
    assert -1.2 * n < P.jacov_from(independent) < -n + 1e-9  # optimum is -n (identity)
    constant = np.zeros((n, 50))  # the output ignores the input: worst, yet finite
    assert P.jacov_from(constant) < -1e4 * (n - 1)
    assert np.isfinite(P.jacov_from(constant))


def test_jacov_ranks_a_dead_network_last():
    x, y = batch()
    dead = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    with torch.no_grad():
        dead[1].weight.zero_()
    assert P.jacov(dead, x) < P.jacov(small_cnn(), x)


def test_naswot_prefers_distinct_activation_patterns():
    x, _ = batch(8)
    # Identical inputs give identical codes: a rank-one kernel.
    assert P.naswot(small_cnn(), x) > P.naswot(small_cnn(), x[:1].repeat(8, 1, 1, 1))
    with pytest.raises(ValueError, match="activation"):
        P.naswot(nn.Sequential(nn.Flatten(), nn.Linear(64, 5)), x)


def test_params_counts_only_kept_sparse_weights():
    torch.manual_seed(0)
    dense = nn.Conv2d(4, 8, 3, bias=False)
    sparse = SparseConv2d(4, 8, 3, bias=False, density=0.25)
    kept = int(sparse.mask.sum())
    assert P.params(dense) == 288 and P.params(sparse) == kept < 288


def test_proxies_leave_the_model_untouched():
    model = small_cnn().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = batch()
    P.score_proxies(model, x, y)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_shared_passes_equal_single_functions():
    model = small_cnn(3)
    x, y = batch(10, 1)
    together = P.score_proxies(model, x, y)
    assert list(together) == list(P.PROXY_NAMES)
    for name, fn in P.PROXIES.items():
        assert together[name] == pytest.approx(fn(model, x, y), rel=1e-9), name
    assert P.score_proxies(model, x, y, ["snip"]) == {"snip": together["snip"]}
    with pytest.raises(ValueError, match="known: synflow"):
        P.score_proxies(model, x, y, ["fisher"])


def test_agreement_with_naslib_published_nb201_scores(shared_data):
    """8 of NASLib's CIFAR-10 cells (the first ones under 40M flops, to stay fast) scored as
    the benchmark does (same seed for every network, one batch of 32): each proxy ranks them
    as NASLib's does. Inputs: Fashion-MNIST images at 32x32 over 3 channels (no CIFAR-10
    here). bench/proxies_nb201.py checks all 491 cells."""
    from estimators.data import load_data
    from estimators.train import resize_batch
    from search_spaces import get_space

    published = json.loads((shared_data / "nb201" / "naslib_zc_nb201.json").read_text())
    cells = [(k, v) for k, v in published["nasbench201"]["cifar10"].items()
             if v["flops"] < 40][:8]
    naslib_ops = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
    data = load_data("fashion-mnist", shared_data / "fashion-mnist")
    x, y = data.sample_batch(32, seed=0)
    x = resize_batch(x, 32).repeat(1, 3, 1, 1)
    space = get_space("nb201")
    ours, theirs = [], []
    for key, scores in cells:
        a = [naslib_ops[int(t)] for t in key.strip("()").split(",")]
        official = f"|{a[0]}~0|+|{a[1]}~0|{a[3]}~1|+|{a[2]}~0|{a[4]}~1|{a[5]}~2|"
        torch.manual_seed(0)
        model = space.build(space.parse(official), num_classes=10, in_channels=3)
        ours.append(P.score_proxies(model, x, y, ["synflow", "jacov", "grad_norm", "snip",
                                                   "params"]))
        theirs.append(scores)
    for name in ("synflow", "jacov", "grad_norm", "snip", "params"):
        rho = spearmanr([o[name] for o in ours], [t[name] for t in theirs]).statistic
        assert rho >= 0.7, (name, rho)
