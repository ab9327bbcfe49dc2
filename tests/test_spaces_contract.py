"""The contract every registered space passes (as Optuna runs one suite over every sampler)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from estimators.flops import FlopsEstimator, analytical_cost, fvcore_cost
from nas.objectives import Constraint
from nas.sampling import sample_within
from search_spaces import Arch, InvalidArchError, get_space, list_spaces
from search_spaces.registry import BUILTIN, NO_SPARSE, SPARSE_SUFFIX

SPACES = list_spaces()
ALL_SPACES = SPACES + [s + SPARSE_SUFFIX for s in SPACES if BUILTIN[s] not in NO_SPARSE]


@pytest.mark.parametrize("name", ALL_SPACES)
def test_keys_round_trip_and_samples_are_canonical(name):
    space = get_space(name)
    rng = np.random.default_rng(0)
    lengths = set()
    for _ in range(200):
        arch = space.sample(rng)
        body = space.encode(arch)
        assert space.contains(arch)
        assert space.decode(body) == arch and ":" not in body
        assert Arch.decode(arch.key) == arch
        assert space.parse(arch.key) == space.parse(body) == arch
        assert arch.key == f"{name}:{body}"
        lengths.add(arch.to_vector().shape)
    assert len(lengths) == 1


@pytest.mark.parametrize("name", ALL_SPACES)
def test_mutation_and_crossover_stay_in_space(name):
    space = get_space(name)
    rng = np.random.default_rng(1)
    for _ in range(30):
        a, b = space.sample(rng), space.sample(rng)
        child = space.mutate(a, rng)
        assert child != a and space.contains(child)
        assert space.contains(space.crossover(a, b, rng))


@pytest.mark.parametrize("name", ALL_SPACES)
def test_references_min_and_max(name):
    space = get_space(name)
    assert space.reference_archs(), f"{name} has no reference architectures"
    for ref_name, arch in space.reference_archs().items():
        assert space.contains(arch), ref_name
        assert space.parse(ref_name) == arch
    flops = FlopsEstimator()
    assert flops(space.min_arch())["flops"] <= flops(space.max_arch())["flops"]
    assert space.log10_size() > 0


@pytest.mark.parametrize("name", ALL_SPACES)
def test_analytical_count_equals_fvcore_and_forward_works(name):
    space = get_space(name)
    rng = np.random.default_rng(2)
    for arch in (space.min_arch(), space.sample(rng), space.sample(rng)):
        model = space.build(arch, num_classes=7).eval()
        x = model.example_input(2)
        with torch.no_grad():
            assert model(x).shape == (2, 7)
        counted = fvcore_cost(model, x[:1])
        predicted = analytical_cost(arch, num_classes=7)
        assert predicted.params == counted.params
        assert predicted.macs == pytest.approx(counted.macs, rel=0.005)
        assert predicted.sparse_macs == pytest.approx(counted.sparse_macs, rel=0.005)


@pytest.mark.parametrize("name", SPACES)
def test_sampling_under_a_tight_budget(name):
    space = get_space(name)
    flops = FlopsEstimator()
    low, high = flops(space.min_arch())["flops"], flops(space.max_arch())["flops"]
    budget = (Constraint("flops", low + 0.1 * (high - low)),)
    rng = np.random.default_rng(3)
    samples = [sample_within(space, budget, flops, rng) for _ in range(20)]
    assert all(flops(a)["flops"] <= budget[0].bound for a in samples)
    assert len(set(samples)) > 10  # repaired samples stay spread out


@pytest.mark.parametrize("name", SPACES)
def test_malformed_keys_raise(name):
    space = get_space(name)
    for body in ("", "garbage", "x" * 50, "1-2-3"):
        with pytest.raises(InvalidArchError):
            space.decode(body)
