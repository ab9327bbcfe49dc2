"""Differentiable search (DARTS / Gumbel-softmax): the relaxation is exact, the expected cost is
exact, a few steps on scikit-learn's 8x8 digits derive architectures of the space that meet
their budget, a larger cost weight gives a cheaper one, and the strategy keeps the contract."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from estimators.data import load_data
from estimators.flops import FlopsEstimator
from nas.differentiable import (
    DifferentiableSearch,
    LinearCost,
    RelaxationError,
    RelaxedSupernet,
    SearchConfig,
    SearchConfigError,
    extract,
    relax,
    table_cost,
)
from nas.differentiable.costs import ExpectedCost, analytical
from nas.differentiable.derive import derive
from nas.differentiable.distribution import ArchDistribution, one_hot
from nas.differentiable.relax import describe
from nas.differentiable.result import skip_stats
from nas.differentiable.strategy import _CACHE, DifferentiableSearchStrategy
from nas.differentiable.supernet import DECOMPOSERS, MixedCell
from nas.objectives import Constraint, Objective
from search_spaces import get_space, register_space
from search_spaces.spaces import fbnet as fbnet_family
from search_spaces.spaces import inverted_residual as ir_family
from search_spaces.spaces import nb201 as nb201_family

FAST = dict(steps=4, warmup_steps=2, batch_size=16, eval_images=64)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", seed=0)


@pytest.fixture(scope="module")
def cell_space():
    """NB201 cells in a 3-cell skeleton with 4 channels (the same cell ops and edges)."""
    return register_space(nb201_family.create(
        "nb201-tiny", {"channels": 4, "cells": 1, "classes": 10, "resolution": 8}, False))


@pytest.fixture(scope="module")
def fbnet_sparse():
    """FBNet layers (4 candidate ops, 3 layers) with per-stage densities."""
    return register_space(fbnet_family.create("fbnet-tiny-sparse", {
        "widths": [8, 16], "depths": [1, 2], "strides": [1, 2],
        "ops": ["skip", "k3_e1", "k3_e3", "k5_e3"], "stem": 8, "head": 16,
        "resolution": 16, "classes": 10}, True))


@pytest.fixture(scope="module")
def mobile_tiny():
    """OFA-style stages: elastic depth 1-2, kernel 3/5, expand 3/6, SE in stage 2."""
    return register_space(ir_family.create("mobile-tiny", {
        **ir_family.PRESETS["mobile"], "widths": [8, 16], "strides": [2, 2],
        "acts": ["relu", "hswish"], "se": [False, True], "depths": [1, 2], "kernels": [3, 5],
        "expands": [3, 6], "resolutions": [16, 24], "stem": 8, "first": 8, "head": 16,
        "mix": 0, "dropout": 0.0, "classes": 10}, False))


# --- relaxation -------------------------------------------------------------------------------
def test_relaxation_of_the_real_spaces():
    nb201 = describe(relax(get_space("nb201")))
    assert nb201["searched"] == list(get_space("nb201").dimension_names)
    assert nb201["positions"] == {"fixed": 6, "decomposed": 15}
    mobile = relax(get_space("mobile-sparse"))
    summary = describe(mobile)
    assert summary["pinned"] == ["r"] and summary["fixed"] == {"r": 224}
    assert summary["depths"] == ["d1", "d2", "d3", "d4", "d5"]
    assert "density3" in summary["searched"]
    # a stage slot depends jointly on its kernel, expand ratio and the stage density
    slot = next(p for p in mobile.positions if p.kind == "joint")
    assert len(slot.dims) == 3 and len(slot.candidates) == 27
    fbnet = describe(relax(get_space("fbnet")))
    assert fbnet["positions"] == {"fixed": 4, "joint": 22} and not fbnet["pinned"]


def test_relaxation_errors_name_what_is_accepted():
    with pytest.raises(RelaxationError, match="no dimension a differentiable search can mix"):
        relax(get_space("densenet"))
    with pytest.raises(RelaxationError, match="has the dimensions"):
        relax(get_space("nb201"), fixed={"depth": 3})
    with pytest.raises(RelaxationError, match="not one of"):
        relax(get_space("mobile"), fixed={"r": 100})
    with pytest.raises(SearchConfigError, match="known: auto, darts, gumbel"):
        SearchConfig(method="enas")
    with pytest.raises(SearchConfigError, match="steps must be a positive integer"):
        SearchConfig(steps=0)
    # Every op that declares itself decomposable has a mixed module, and no other.
    from search_spaces.ops import OPS

    assert set(DECOMPOSERS) == {name for name, op in OPS.items() if op.decomposable}


@pytest.mark.parametrize("space_fixture", ["cell_space", "fbnet_sparse", "mobile_tiny"])
def test_one_hot_supernet_is_the_space_network(space_fixture, request):
    """The supernet with one option per dimension computes what `space.build` builds, with the
    same modules (the extracted weights load strictly)."""
    space = request.getfixturevalue(space_fixture)
    relaxation = relax(space, num_classes=10, in_channels=1)
    torch.manual_seed(0)
    net = RelaxedSupernet(relaxation)
    x = torch.randn(3, 1, 16, 16)
    net(x, ArchDistribution(relaxation.searched).probs()).sum().backward()  # stats move
    net.eval()
    rng = np.random.default_rng(0)
    for _ in range(3):
        arch = space.sample(rng)
        choice = relaxation.choice_of(arch)
        built = space.build(arch, num_classes=10, in_channels=1)
        built.load_state_dict(extract(net, relaxation, choice).state_dict(), strict=True)
        built.eval()
        with torch.no_grad():
            assert torch.allclose(net(x, one_hot(choice, relaxation.searched)), built(x),
                                  atol=1e-5)


def test_auxiliary_skip_adds_identity_paths_to_mixed_edges(cell_space):
    relaxation = relax(cell_space, num_classes=10, in_channels=1)
    cell = MixedCell(next(p for p in relaxation.positions if p.kind == "decomposed"))
    none = one_hot({d.name: 0 for d in relaxation.searched}, relaxation.searched)
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(cell(x, none), torch.zeros_like(x))
    # node1 = x, node2 = x + node1, node3 = x + node1 + node2 = 4x
    assert torch.allclose(cell(x, none, aux=1.0), 4 * x)


# --- costs ------------------------------------------------------------------------------------
def test_expected_cost_is_exact(fbnet_sparse):
    relaxation = relax(fbnet_sparse)
    estimator = FlopsEstimator()
    model = ExpectedCost(relaxation, analytical("flops_sparse"), "flops_sparse")
    gen = torch.Generator().manual_seed(0)
    probs = {d.name: torch.softmax(torch.randn(len(d.options), generator=gen).double(), 0)
             for d in relaxation.searched}
    names = relaxation.dim_names
    total = 0.0
    for combo in itertools.product(*(range(len(d.options)) for d in relaxation.searched)):
        choice = dict(zip(names, combo))
        weight = math.prod(float(probs[n][i]) for n, i in choice.items())
        value = estimator(relaxation.arch(choice))["flops_sparse"]
        assert model.of(choice) == value
        total += weight * value
    assert float(model.expected(probs)) == pytest.approx(total, rel=1e-9)


def test_block_tables_and_linearised_costs(fbnet_sparse):
    relaxation = relax(fbnet_sparse)
    flops = analytical("flops")
    table = {}
    for spec in get_space("fbnet-tiny-sparse").blocks(fbnet_sparse.max_arch()):
        table[spec.signature] = 0.5
    with pytest.raises(Exception, match="latency table has no entry"):
        ExpectedCost(relaxation, table_cost(table), "latency_ms")
    full = {}
    for arch in (fbnet_sparse.sample(s) for s in range(300)):
        for spec in fbnet_sparse.blocks(arch):
            full[spec.signature] = 1e-6 * flops([spec])[0] + 0.01
    for pos in relaxation.positions:
        for cand in pos.candidates:
            full[cand.cost_spec.signature] = 1e-6 * flops([cand.cost_spec])[0] + 0.01
    latency = ExpectedCost(relaxation, table_cost(full), "latency_ms", offset=0.2, scale=2.0)
    arch = fbnet_sparse.sample(7)
    expected = 0.2 + 2.0 * sum(full[s.signature] for s in fbnet_sparse.blocks(arch))
    assert latency.of(relaxation.choice_of(arch)) == pytest.approx(expected)
    # a per-layer additive metric is linear in the one-hot choices: the linearisation is exact
    dense = relax(get_space("fbnet"))
    linear = LinearCost(dense, FlopsEstimator(), "flops")
    for seed in range(3):
        arch = get_space("fbnet").sample(seed)
        choice = dense.choice_of(arch)
        assert float(linear.expected(one_hot(choice, dense.searched))) == pytest.approx(
            FlopsEstimator()(arch)["flops"])


# --- search -----------------------------------------------------------------------------------
def test_darts_steps_learn_a_cell_and_repeat_with_the_seed(cell_space, digits):
    config = SearchConfig(**FAST)
    search = DifferentiableSearch(cell_space, digits, config, seed=3)
    assert search.guard == "early_stop"  # the default for DARTS (see docs/differentiable.md)
    first = search.run()
    again = DifferentiableSearch(cell_space, digits, config, seed=3).run()
    assert first.probs == again.probs and first.arch == again.arch
    assert cell_space.contains(first.arch)
    assert first.skip_dims == 6 and 0 <= first.skip_edges <= 6
    uniform = 1 / 5
    assert max(abs(p - uniform) for v in first.probs.values() for p in v) > 1e-3  # it moved
    assert [h["step"] for h in first.history][0] == 0.0
    assert 0.0 <= first.supernet_acc <= 100.0


def test_aux_skip_decays_from_one_to_zero(cell_space, digits):
    config = SearchConfig(**{**FAST, "steps": 4}, guard="aux_skip")
    history = DifferentiableSearch(cell_space, digits, config, seed=3).run().history
    aux = [h["aux"] for h in history]
    assert aux[0] == 1.0 and aux == sorted(aux, reverse=True) and aux[-1] < 1.0


def test_each_cost_weight_of_a_sweep_is_its_own_run(cell_space, digits):
    """A sweep's result for one weight does not depend on the other weights (so the weights may
    run as separate, parallel searches)."""
    config = SearchConfig(**{**FAST, "steps": 2}, guard="none")
    sweep = DifferentiableSearch(cell_space, digits, config, seed=1).sweep([0.0, 3.0])
    alone = DifferentiableSearch(cell_space, digits, config, seed=1).run(3.0)
    assert sweep[1].probs == alone.probs and sweep[1].arch == alone.arch
    assert sweep[0].probs != sweep[1].probs


def test_early_stop_ignores_transients_and_restores_the_logits_before_dominance(
        cell_space, digits, monkeypatch):
    def pretend(dominated_at):  # which steps see the skips dominate
        seen: list[list[torch.Tensor]] = []

        def dominated(self, dist):
            seen.append([p.detach().clone() for p in dist.logits])
            return dominated_at(len(seen) - 1)

        monkeypatch.setattr(DifferentiableSearch, "_skip_dominated", dominated)
        return seen

    config = SearchConfig(**{**FAST, "steps": 10}, guard="early_stop", stop_patience=0.2)
    pretend(lambda step: step == 2)  # one step: a transient, shorter than the patience (2)
    transient = DifferentiableSearch(cell_space, digits, config, seed=0).run()
    assert transient.stopped_at is None and transient.steps == 10
    seen = pretend(lambda step: step >= 2)  # lasting from step 2: stop after step 3
    result = DifferentiableSearch(cell_space, digits, config, seed=0).run()
    assert result.stopped_at == 2 and result.steps == 2 and len(seen) == 4
    for name, logits in zip(cell_space.dimension_names, seen[1]):  # the last clean logits
        assert result.probs[name] == pytest.approx(torch.softmax(logits, 0).tolist())
    assert not any(torch.equal(a, b) for a, b in zip(seen[1], seen[2]))


def test_gumbel_derived_arch_meets_a_flops_budget(fbnet_sparse, digits):
    estimator = FlopsEstimator()
    largest = estimator(fbnet_sparse.max_arch())["flops"]
    smallest = estimator(fbnet_sparse.min_arch())["flops"]
    bound = smallest + 0.25 * (largest - smallest)
    config = SearchConfig(**FAST, method="gumbel", arch_lr=0.05)
    result = DifferentiableSearch(fbnet_sparse, digits, config, [Constraint("flops", bound)],
                                  estimator, seed=0).run()
    assert fbnet_sparse.contains(result.arch)
    assert result.metrics["flops"] == estimator(result.arch)["flops"] <= bound


def test_constrained_derivation_keeps_the_most_probable_options(fbnet_sparse):
    estimator = FlopsEstimator()
    relaxation = relax(fbnet_sparse)
    largest = estimator(fbnet_sparse.max_arch())["flops"]
    smallest = estimator(fbnet_sparse.min_arch())["flops"]
    bound = smallest + 0.5 * (largest - smallest)
    # every dimension prefers its largest option; layer 1 strongly
    probs = {d.name: [0.1 / (len(d.options) - 1)] * (len(d.options) - 1) + [0.9]
             for d in relaxation.searched}
    probs["l1"] = [0.001, 0.001, 0.001, 0.997]
    assert estimator(derive(relaxation, probs))["flops"] > bound
    arch = derive(relaxation, probs, [Constraint("flops", bound)], estimator)
    assert fbnet_sparse.contains(arch) and estimator(arch)["flops"] <= bound
    assert arch["l1"] == "k5_e3"  # the confident choice survives the repair
    with pytest.raises(RelaxationError, match="no architecture with the fixed genes"):
        derive(relaxation, probs, [Constraint("flops", smallest / 2)], estimator)


@pytest.mark.parametrize("space_fixture,metric", [("fbnet_sparse", "flops_sparse"),
                                                  ("mobile_tiny", "flops")])
def test_sweep_larger_cost_weight_gives_cheaper_arch(space_fixture, metric, request, digits):
    space = request.getfixturevalue(space_fixture)
    config = SearchConfig(**FAST, method="gumbel", arch_lr=0.1, cost_metric=metric)
    search = DifferentiableSearch(space, digits, config, seed=0)
    free, costly = search.sweep([0.0, 20.0])
    assert free.cost_weight == 0.0 and costly.cost_weight == 20.0
    assert costly.metrics[metric] < free.metrics[metric]
    assert costly.expected_cost < free.expected_cost
    if metric == "flops_sparse":  # the sparsity-aware cost makes sparse candidates win
        densities = [costly.arch[f"density{s}"] for s in (1, 2)]
        assert any(d is not None and d < 1.0 for d in densities)
        assert costly.metrics["flops_sparse"] < costly.metrics["flops"]
    if space_fixture == "mobile_tiny":
        assert search.relaxation.fixed == {"r": 24}  # resolution reshapes: held fixed


def test_skip_statistics():
    options = {"a": ("none", "skip_connect", "c3"), "b": ("k3", "skip"), "c": ("x", "y")}
    probs = {"a": [0.2, 0.5, 0.3], "b": [0.505, 0.495], "c": [0.5, 0.5]}
    assert skip_stats(options, probs) == (1, 2, pytest.approx(0.4975))
    assert skip_stats(options, probs, margin=0.25)[0] == 0


# --- the strategy -----------------------------------------------------------------------------
STRATEGY_OPTIONS = dict(data="digits", cost_weights=[0.0, 20.0], method="gumbel", arch_lr=0.1,
                        **FAST)


def _strategy(space, seed=0, constraints=(), **changes):
    estimator = FlopsEstimator()
    return DifferentiableSearchStrategy(space, [Objective("acc"), Objective("flops", "minimize")],
                                        constraints, estimator, seed,
                                        **{**STRATEGY_OPTIONS, **changes})


def test_strategy_proposes_the_derived_archs_then_samples(fbnet_sparse):
    budget = Constraint("flops", FlopsEstimator()(fbnet_sparse.max_arch())["flops"] * 0.6)
    strategy = _strategy(fbnet_sparse, constraints=[budget])
    first = strategy.ask(2)
    results = strategy.results
    assert [strategy.key(a) for a in first] == [r["arch"] for r in results]
    assert results[1]["metrics"]["flops"] < results[0]["metrics"]["flops"]
    proposals = first + strategy.ask(6)
    assert len(proposals) == len(set(proposals)) == 8
    assert all(FlopsEstimator()(a)["flops"] <= budget.bound for a in proposals)
    for i, arch in enumerate(proposals):
        flops = FlopsEstimator()(arch)["flops"]
        strategy.tell(arch, {"acc": math.nan if i == 1 else float(i), "flops": flops})
    assert strategy.trials[1].failed and not strategy.trials[0].failed
    assert strategy.best().arch == proposals[-1]


def test_strategy_state_round_trip_and_shared_search(fbnet_sparse, monkeypatch):
    strategy = _strategy(fbnet_sparse, seed=1)
    for arch in strategy.ask(3):
        strategy.tell(arch, {"acc": 1.0, "flops": 1.0})
    state = json.loads(json.dumps(strategy.state_dict()))
    restored = _strategy(fbnet_sparse, seed=1)

    def no_search(self):
        raise AssertionError("a restored strategy must not search again")

    monkeypatch.setattr(DifferentiableSearchStrategy, "_run_search", no_search)
    restored.load_state_dict(state)
    assert restored.ask(4) == strategy.ask(4)
    # the same search in this process is shared, not run twice
    twin = _strategy(fbnet_sparse, seed=1)
    assert twin.ask(3) == [t.arch for t in strategy.trials]
    assert len(_CACHE) >= 1


def test_strategy_options_are_checked(fbnet_sparse):
    from nas.strategies.base import StrategyError

    with pytest.raises(StrategyError, match="differentiable: cost_weights must be a non-empty"):
        _strategy(fbnet_sparse, cost_weights=[])
    with pytest.raises(StrategyError, match="unknown options"):
        _strategy(fbnet_sparse, temperature=1.0)
    # SearchConfig's own checks, with its message unchanged
    with pytest.raises(StrategyError, match="^unknown guard 'shrink'; known: auto, none, "
                                            "aux_skip, early_stop$"):
        _strategy(fbnet_sparse, guard="shrink")
    with pytest.raises(StrategyError, match="steps must be a positive integer"):
        _strategy(fbnet_sparse, steps=0)
    with pytest.raises(StrategyError, match="differentiable: lr must be a number"):
        _strategy(fbnet_sparse, lr="fast")
    with pytest.raises(StrategyError, match="fixed must map"):
        _strategy(fbnet_sparse, fixed=[1])
    assert _strategy(fbnet_sparse).config.cost_metric == "flops"


def test_strategy_options_cover_every_search_setting():
    from dataclasses import fields

    defaults = DifferentiableSearchStrategy.defaults
    config = SearchConfig().as_dict()
    assert {f.name for f in fields(SearchConfig)} <= set(defaults)
    assert {k: v for k, v in defaults.items() if k in config and k != "cost_metric"} == \
        {k: v for k, v in config.items() if k != "cost_metric"}
    assert defaults["cost_metric"] is None  # resolved from the objectives and constraints


def test_strategy_prepare_in_process_does_nothing(fbnet_sparse, tmp_path):
    from nas.strategies import StrategyContext

    strategy = _strategy(fbnet_sparse, seed=5)
    logged = []
    strategy.prepare(StrategyContext(tmp_path, fbnet_sparse.name, (), {}, 5, 1, 0, None,
                                     logged.append))
    assert strategy.results == [] and not logged  # workers=0: searched at the first ask
    assert strategy._cache_key() not in _CACHE


# --- command line -----------------------------------------------------------------------------
def test_cli_sweeps_and_reports(cell_space, capsys, tmp_path):
    from nas.cli import main

    out = tmp_path / "report.json"
    status = main(["differentiable", "--space", "nb201-tiny", "--data", "digits", "--steps", "3",
                   "--warmup", "1", "--batch-size", "16", "--cost-weights", "0,5", "--json",
                   "--out", str(out)])
    assert status == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["method"] == "darts" and payload["guard"] == "early_stop"
    assert [r["cost_weight"] for r in payload["results"]] == [0.0, 5.0]
    for row in payload["results"]:
        assert cell_space.contains(cell_space.parse(row["key"]))
        assert row["official"].startswith("|")
    assert json.loads(out.read_text())["results"] == payload["results"]
    assert main(["differentiable", "--space", "densenet", "--data", "digits"]) == 2
    assert "no dimension a differentiable search can mix" in capsys.readouterr().err
    assert main(["differentiable", "--space", "nb201", "--fix", "e1_0=conv"]) == 2
    assert "is not one of none, skip_connect" in capsys.readouterr().err
