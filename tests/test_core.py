"""The generic machinery (Arch, SearchSpace, sampling under a budget) on a small toy space."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from estimators.flops import FlopsEstimator, analytical_cost, fvcore_cost
from nas.objectives import Constraint
from nas.sampling import InfeasibleBudgetError, check_feasible, sample_within
from search_spaces import Arch, Chain, Dimension, InvalidArchError, SearchSpace, register_space


class ToySpace(SearchSpace):
    """Up to three conv layers; widths of layers beyond the depth are inactive."""

    name = "toy"
    dimensions = (
        Dimension("depth", (1, 2, 3)),
        Dimension("w1", (8, 16, 32)), Dimension("w2", (8, 16, 32)), Dimension("w3", (8, 16, 32)),
        Dimension("density", (0.25, 0.5, 1.0)),
    )
    default_classes = 10

    def canonical(self, genes):
        depth = genes["depth"]
        return {k: (None if k.startswith("w") and int(k[1:]) > depth else v)
                for k, v in genes.items()}

    def blocks(self, arch, num_classes=None, in_channels=None):
        chain = Chain((in_channels or 3, 16, 16))
        for i in range(1, arch["depth"] + 1):
            chain.add("conv_bn_act", f"conv{i}", out=arch[f"w{i}"], k=3, stride=2,
                      density=arch["density"])
        chain.add("global_pool", "pool")
        chain.add("classifier", "classifier", classes=num_classes or self.default_classes)
        return chain.specs

    def encode(self, arch):
        widths = ".".join(str(arch[f"w{i}"]) for i in range(1, arch["depth"] + 1))
        return f"{widths}-p{arch['density']}"

    def decode(self, body):
        try:
            widths, density = body.split("-p")
            values = [int(w) for w in widths.split(".")]
            genes = {"depth": len(values), "density": float(density)}
            genes.update({f"w{i + 1}": w for i, w in enumerate(values)})
        except ValueError:
            raise InvalidArchError(f"bad toy key {body!r}: expected W.W.W-pDENSITY") from None
        return self.make(genes)

    def input_size(self, arch):
        return 16


@pytest.fixture(scope="module")
def toy() -> ToySpace:
    return register_space(ToySpace())


def test_key_round_trip_and_canonical_inactive_genes(toy):
    rng = np.random.default_rng(0)
    for _ in range(100):
        arch = toy.sample(rng)
        assert Arch.decode(arch.key) == arch
        assert toy.contains(arch)
        assert all(arch[f"w{i}"] is None for i in range(arch["depth"] + 1, 4))
    assert Arch.decode("toy:8.16-p0.5") == toy.make({"depth": 2, "w1": 8, "w2": 16, "w3": 32,
                                                     "density": 0.5})


def test_bad_keys_raise_one_line_errors(toy):
    for key in ("toy:abc", "toy:8.16", "toy:9-p1.0", "no-prefix"):
        with pytest.raises(InvalidArchError) as info:
            Arch.decode(key)
        assert "\n" not in str(info.value)


def test_contains_rejects_foreign_and_non_canonical(toy):
    arch = toy.make({"depth": 1, "w1": 8, "density": 1.0})
    assert not toy.contains(arch.replace(w2=16))
    assert not toy.contains(arch.replace(w1=12))
    assert not toy.contains(Arch("other", arch.genes))


def test_mutate_and_crossover_stay_in_space_and_are_seeded(toy):
    a, b = toy.sample(1), toy.sample(2)
    for seed in range(30):
        child = toy.mutate(a, seed)
        assert child != a and toy.contains(child)
        assert toy.contains(toy.crossover(a, b, seed))
    assert toy.mutate(a, 5) == toy.mutate(a, 5)
    assert [toy.sample(7) for _ in range(3)] == [toy.sample(7)] * 3


def test_to_vector_fixed_length_one_hot(toy):
    vectors = {toy.sample(s).to_vector().shape for s in range(20)}
    assert vectors == {(15,)}
    assert toy.min_arch().to_vector().sum() == 3  # depth, w1 and density active


def test_min_max_and_size(toy):
    assert toy.min_arch().key == "toy:8-p0.25"
    assert toy.max_arch().key == "toy:32.32.32-p1.0"


def test_analytical_equals_fvcore_including_sparse(toy):
    for seed in range(5):
        arch = toy.sample(seed)
        model = toy.build(arch).eval()
        assert model(model.example_input(2)).shape == (2, 10)
        assert analytical_cost(arch) == fvcore_cost(model, model.example_input())


def test_sparse_weights_stay_zero_through_training(toy):
    arch = toy.make({"depth": 2, "w1": 16, "w2": 16, "density": 0.25})
    model = toy.build(arch)
    conv = model[0][0]
    zero_before = conv.weight.detach() == 0
    assert zero_before.float().mean() >= 0.7
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3, 16, 16)).sum().backward()
        opt.step()
    assert torch.all(conv.weight.detach()[zero_before] == 0)
    assert not torch.all(conv.weight.detach()[~zero_before] == 0)


def test_sample_within_budget_is_fast_and_feasible(toy):
    flops = FlopsEstimator()
    tight = (Constraint("flops", flops(toy.min_arch())["flops"] * 1.05),)
    rng = np.random.default_rng(0)
    for _ in range(50):
        arch = sample_within(toy, tight, flops, rng)
        assert flops(arch)["flops"] <= tight[0].bound


def test_infeasible_budget_is_reported(toy):
    flops = FlopsEstimator()
    with pytest.raises(InfeasibleBudgetError, match="smallest architecture"):
        check_feasible(toy, (Constraint("flops", 10.0),), flops)
