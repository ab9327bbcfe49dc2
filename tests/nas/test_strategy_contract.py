"""The contract every search strategy keeps, checked for each one in the registry on a small toy
space: seeded reproducibility, constraints never violated by a proposal, failed or NaN
evaluations handled, duplicates never proposed, a mid-search state round trip that continues
identically, and option/objective errors that name what is accepted. Every strategy also
describes itself: its name, whether it takes several objectives, and its options as a frozen
dataclass with help on every field that refuses a bad value."""
from __future__ import annotations

import dataclasses
import json
import math
import zlib

import numpy as np
import pytest

from nas.objectives import Constraint, Objective
from nas.strategies import (
    STRATEGIES,
    Strategy,
    StrategyContext,
    StrategyError,
    get_strategy,
    is_multi_objective,
    list_strategies,
    make_strategy,
    single_objective_strategies,
    strategy_options,
)
from nas.strategies.neighbourhood import neighbours
from nas.strategies.options import StrategyOptions, option_defaults
from search_spaces import Arch, Chain, Dimension, InvalidArchError, SearchSpace, register_space


class ContractSpace(SearchSpace):
    """Up to three layers whose widths beyond the depth are inactive: 117 distinct archs."""

    name = "contract_toy"
    dimensions = (
        Dimension("depth", (1, 2, 3)),
        Dimension("w1", (8, 16, 32)), Dimension("w2", (8, 16, 32)), Dimension("w3", (8, 16, 32)),
        Dimension("k", (3, 5, 7)),
    )
    default_classes = 10

    def canonical(self, genes):
        depth = genes["depth"]
        return {g: (None if g.startswith("w") and int(g[1:]) > depth else v)
                for g, v in genes.items()}

    def blocks(self, arch, num_classes=None, in_channels=None):
        chain = Chain((in_channels or 3, 8, 8))
        for i in range(1, arch["depth"] + 1):
            chain.add("conv_bn_act", f"conv{i}", out=arch[f"w{i}"], k=arch["k"])
        chain.add("global_pool", "pool")
        chain.add("classifier", "classifier", classes=num_classes or self.default_classes)
        return chain.specs

    def encode(self, arch):
        widths = ".".join(str(arch[f"w{i}"]) for i in range(1, arch["depth"] + 1))
        return f"{widths}-k{arch['k']}"

    def decode(self, body):
        try:
            widths, k = body.split("-k")
            values = [int(w) for w in widths.split(".")]
            genes = {"depth": len(values), "k": int(k)}
            genes.update({f"w{i + 1}": w for i, w in enumerate(values)})
        except ValueError:
            raise InvalidArchError(f"bad key {body!r}: expected W.W.W-kK") from None
        return self.make(genes)

    def input_size(self, arch):
        return 8


SPACE = register_space(ContractSpace())
SIZE = 3 * 3 + 9 * 3 + 27 * 3  # archs of depth 1, 2, 3 (times 3 kernels)
ALL = sorted({SPACE.make(dict(zip(SPACE.dimension_names, v)))
              for v in np.array(np.meshgrid(*[d.options for d in SPACE.dimensions]))
              .T.reshape(-1, 5).tolist()}, key=lambda a: SPACE.encode(a))
# Strategies that train networks themselves (differentiable) have their own tests.
NAMES = [n for n in STRATEGIES if not get_strategy(n).needs_tensors]


def cost(arch: Arch) -> dict[str, float]:
    """A cheap metric: weights of the convs (as a params count)."""
    widths = [3] + [arch[f"w{i}"] for i in range(1, arch["depth"] + 1)]
    return {"params": float(sum(a * b * arch["k"] ** 2 for a, b in zip(widths, widths[1:])))}


def evaluate(arch: Arch) -> dict[str, float]:
    """A deterministic, bumpy score that grows with capacity, plus the cost."""
    bump = zlib.crc32(SPACE.encode(arch).encode()) % 1000 / 100.0
    return {"acc": 50 + 10 * math.log(cost(arch)["params"]) / math.log(50_000) + bump,
            **cost(arch)}


def objectives_for(name: str) -> list[Objective]:
    objectives = [Objective("acc")]
    if get_strategy(name).multi_objective:
        objectives.append(Objective("params", "minimize"))
    return objectives


def build(name: str, seed: int = 0, constraints=(), **options) -> Strategy:
    return make_strategy(name, SPACE, objectives_for(name), constraints, cost, seed, **options)


def run(strategy: Strategy, steps: int, batch: int = 1) -> list[Arch]:
    """Ask/tell `steps` archs; returns them in order."""
    asked: list[Arch] = []
    while len(asked) < steps:
        archs = strategy.ask(min(batch, steps - len(asked)))
        if not archs:
            break
        for arch in archs:
            strategy.tell(arch, evaluate(arch))
        asked += archs
    return asked


def test_toy_space_size():
    assert len(ALL) == SIZE == 117


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_proposals(name):
    first, second = run(build(name, seed=3), 30, batch=2), run(build(name, seed=3), 30, batch=2)
    assert first == second
    assert run(build(name, seed=4), 30, batch=2) != first


@pytest.mark.parametrize("name", NAMES)
def test_no_duplicates_until_the_space_is_exhausted(name):
    strategy = build(name, seed=1)
    asked = run(strategy, SIZE + 10, batch=4)
    assert len(asked) == len(set(asked)) == SIZE
    assert all(SPACE.contains(a) for a in asked)
    assert strategy.ask(3) == [] and strategy.done


@pytest.mark.parametrize("name", NAMES)
def test_pending_archs_are_not_proposed_again(name):
    strategy = build(name, seed=2)
    run(strategy, 25)
    first = strategy.ask(5)
    second = strategy.ask(5)
    assert len(set(first) | set(second)) == 10
    assert set(strategy.pending) == set(first) | set(second)


@pytest.mark.parametrize("name", NAMES)
def test_proposals_meet_the_constraints(name):
    bound = 6000.0  # admits about a third of the space
    feasible = [a for a in ALL if cost(a)["params"] <= bound]
    assert 10 < len(feasible) < SIZE / 2
    strategy = build(name, seed=5, constraints=(Constraint("params", bound),))
    asked = run(strategy, SIZE, batch=3)
    assert all(cost(a)["params"] <= bound for a in asked)
    assert sorted(asked, key=SPACE.encode) == feasible  # every feasible arch, once
    assert strategy.done


@pytest.mark.parametrize("name", NAMES)
def test_failed_and_nan_evaluations_are_handled(name):
    strategy = build(name, seed=6)
    failed = set()
    for step in range(45):
        (arch,) = strategy.ask(1)
        metrics = evaluate(arch)
        if step % 3 == 0:
            metrics["acc"] = math.nan
            failed.add(arch)
        elif step % 3 == 1 and step < 20:
            metrics = {}  # the evaluation crashed: nothing measured
            failed.add(arch)
        trial = strategy.tell(arch, metrics)
        assert trial.failed == (arch in failed)
    asked = run(strategy, 30)
    assert not failed & set(asked)
    best = strategy.best()
    assert best is not None and best.arch not in failed and math.isfinite(best.metrics["acc"])
    # A checkpoint holding failures survives JSON (NaN is written as null).
    state = json.loads(json.dumps(strategy.state_dict(), allow_nan=False))
    restored = build(name, seed=6)
    restored.load_state_dict(state)
    assert [t.failed for t in restored.trials] == [t.failed for t in strategy.trials]


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_mid_search_continues_identically(name):
    original = build(name, seed=7)
    run(original, 60, batch=3)  # past every strategy's initial random phase
    waiting = original.ask(4)  # in flight at checkpoint time
    original.tell(waiting[1], evaluate(waiting[1]))
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    restored = build(name, seed=7)
    restored.load_state_dict(state)
    assert restored.pending == original.pending
    for strategy in (original, restored):
        for arch in strategy.pending:
            strategy.tell(arch, evaluate(arch))
    assert run(restored, 40, batch=2) == run(original, 40, batch=2)
    assert restored.state_dict() == original.state_dict()


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_of_another_setup_is_refused(name):
    state = build(name, seed=0).state_dict()
    with pytest.raises(StrategyError, match="seed"):
        build(name, seed=1).load_state_dict(state)


@pytest.mark.parametrize("name", NAMES)
def test_bad_options_and_misuse_raise_one_line_errors(name):
    with pytest.raises(StrategyError, match="accepted") as info:
        build(name, no_such_option=1)
    assert "\n" not in str(info.value)
    strategy = build(name)
    (arch,) = strategy.ask(1)
    strategy.tell(arch, evaluate(arch))
    with pytest.raises(StrategyError, match="already told"):
        strategy.tell(arch, evaluate(arch))
    with pytest.raises(StrategyError):
        strategy.ask(0)
    with pytest.raises(StrategyError, match="cost_fn"):
        make_strategy(name, SPACE, objectives_for(name), (Constraint("params", 1e4),), None)


@pytest.mark.parametrize("name", [n for n in NAMES if not get_strategy(n).multi_objective])
def test_single_objective_strategies_refuse_several_objectives(name):
    with pytest.raises(StrategyError, match="one objective"):
        make_strategy(name, SPACE, [Objective("acc"), Objective("params", "minimize")])


@pytest.mark.parametrize("name", NAMES)
def test_search_beats_the_average_arch(name):
    """Sanity of learning: after 60 of 117 archs, the best found is in the top tenth."""
    scores = sorted(evaluate(a)["acc"] for a in ALL)
    found = [build(name, seed=s) for s in range(3)]
    for strategy in found:
        run(strategy, 60)
    assert np.mean([s.best().metrics["acc"] for s in found]) >= scores[int(0.9 * SIZE)]


# --- self-description ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategy_describes_itself(name):
    cls = get_strategy(name)
    assert cls.name == name
    declared = [k for c in cls.__mro__[:-1] if c is not Strategy for k in vars(c)]
    assert "multi_objective" in declared and isinstance(cls.multi_objective, bool)
    options = cls.options_type
    assert issubclass(options, StrategyOptions) and dataclasses.is_dataclass(options)
    assert options.__dataclass_params__.frozen
    for f in dataclasses.fields(options):
        assert str(f.metadata.get("help", "")).strip(), f"{name}: option {f.name} has no help"
    assert cls.defaults == option_defaults(options)  # what the CLI routes --option by
    assert options().as_dict() == cls.defaults  # the defaults are valid values
    assert set(strategy_options(name)) == set(cls.defaults)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_option_refuses_a_value_of_the_wrong_kind(name):
    """Checked when the strategy is built, before any search: one line naming the option."""
    cls = get_strategy(name)
    for f in dataclasses.fields(cls.options_type):
        bad = [1] if "str" in str(f.type) else "bogus"  # text where text is wrong, else a word
        with pytest.raises(StrategyError) as info:
            build(name, **{f.name: bad})
        message = str(info.value)
        assert f.name in message and "\n" not in message, message


def test_registry_helpers_derive_from_the_classes():
    assert list_strategies() == list(STRATEGIES)
    assert single_objective_strategies() == ("evolution", "rl", "local")
    assert [n for n in STRATEGIES if is_multi_objective(n)] == ["random", "nsga2", "tpe",
                                                                "bananas", "differentiable"]
    with pytest.raises(StrategyError, match="known: random, evolution"):
        get_strategy("nosuch")


@dataclasses.dataclass(frozen=True)
class GreedyOptions(StrategyOptions):
    pass


class Greedy(Strategy):
    """A strategy defined outside the package: one class and one registry line."""

    name = "greedy"
    multi_objective = False
    options_type = GreedyOptions

    def _propose(self, rng):
        return self._fresh(self.space.sample, rng)


def test_a_new_strategy_is_one_class_and_one_registry_line(monkeypatch, tmp_path):
    monkeypatch.setitem(STRATEGIES, "greedy", f"{__name__}:Greedy")
    assert "greedy" in list_strategies() and "greedy" in single_objective_strategies()
    strategy = build("greedy", seed=0)
    assert len(run(strategy, 10)) == 10 and strategy.defaults == {}
    context = StrategyContext(tmp_path, SPACE.name, (), {}, 0, 1, 0, None, print)
    assert strategy.prepare(context) is None  # the base class's hook does nothing


# --- behaviour of particular strategies -------------------------------------------------------
def test_evolution_early_rejection_drops_children_with_a_poor_proxy():
    def with_proxy(arch: Arch) -> dict[str, float]:
        return {**cost(arch), "proxy": evaluate(arch)["acc"]}  # a perfectly informed proxy

    strategy = make_strategy("evolution", SPACE, [Objective("acc")], cost_fn=with_proxy, seed=0,
                             population=10, proxy="proxy", reject_quantile=0.5)
    asked = run(strategy, 50)
    assert strategy.rejected and not set(strategy.rejected) & set(asked)
    # Children were screened: after the first population, they beat the median arch.
    median = float(np.median([evaluate(a)["acc"] for a in ALL]))
    children = [evaluate(a)["acc"] for a in asked[10:]]
    assert np.mean(children) > median
    plain = make_strategy("evolution", SPACE, [Objective("acc")], cost_fn=with_proxy, seed=0,
                          population=10)
    assert np.mean(children) > np.mean([evaluate(a)["acc"] for a in run(plain, 50)[10:]])


def test_evolution_restarts_a_converged_run():
    strategy = build("evolution", seed=0, population=10, restart=5, exploit=1.0)
    run(strategy, 100)
    assert strategy.run_start > 0  # some best arch had every neighbour evaluated


def test_rl_mnasnet_reward():
    strategy = make_strategy("rl", SPACE, [Objective("acc")], cost_fn=cost,
                             cost_metric="params", cost_target=1000.0, alpha=-0.07, beta=-0.5)
    arch = ALL[0]
    under = strategy.tell(arch, {"acc": 80.0, "params": 500.0})
    assert strategy.reward(under) == pytest.approx(80.0 * 0.5 ** -0.07)
    over = strategy.tell(ALL[1], {"acc": 80.0, "params": 4000.0})
    assert strategy.reward(over) == pytest.approx(80.0 * 4.0 ** -0.5)
    # Without a told cost, the cost_fn gives it.
    estimated = strategy.tell(ALL[2], {"acc": 70.0})
    assert strategy.reward(estimated) == pytest.approx(
        70.0 * (cost(ALL[2])["params"] / 1000.0) ** (-0.07 if cost(ALL[2])["params"] <= 1000
                                                      else -0.5))
    with pytest.raises(StrategyError, match="cost_target"):
        make_strategy("rl", SPACE, [Objective("acc")], cost_metric="params")


def test_rl_policy_moves_towards_rewarded_options():
    strategy = build("rl", seed=0, lr=0.5)
    run(strategy, 60)
    probs = dict(zip(SPACE.dimension_names, strategy.probabilities()))
    # Deeper and wider networks score higher: the policy prefers depth 3 to depth 1.
    assert probs["depth"][2] > probs["depth"][0]


def test_nsga2_front_is_non_dominated_and_covers_both_ends():
    strategy = build("nsga2", seed=0, population=8)
    run(strategy, 60)
    front = strategy.pareto_front()
    points = [(t.metrics["acc"], t.metrics["params"]) for t in front]
    for a in points:
        assert not any(b[0] >= a[0] and b[1] <= a[1] and b != a for b in points)
    cheapest = min(cost(a)["params"] for a in ALL)
    assert min(p[1] for p in points) <= 2 * cheapest


def test_local_search_confirms_each_local_optimum_before_restarting():
    strategy = make_strategy("local", SPACE, [Objective("acc")], seed=0, initial=5)
    run(strategy, 80)
    told = {t.arch: t.metrics["acc"] for t in strategy.trials}
    assert len(strategy.optima) >= 2
    for optimum in strategy.optima:
        around = neighbours(SPACE, optimum)
        assert all(n in told and told[n] <= told[optimum] for n in around)


def test_bananas_uses_the_predictor_and_extra_features():
    def with_proxy(arch: Arch) -> dict[str, float]:
        return {**cost(arch), "proxy": evaluate(arch)["acc"]}  # a perfectly informed feature

    informed = make_strategy("bananas", SPACE, [Objective("acc")], cost_fn=with_proxy, seed=0,
                             initial=5, features=["proxy"], acquisition="mean", random=40)
    asked = run(informed, 20)
    assert informed.models and informed.fitted_on >= 15
    best = max(evaluate(a)["acc"] for a in ALL)
    assert max(evaluate(a)["acc"] for a in asked) >= best - 0.5
    with pytest.raises(StrategyError, match="need a cost_fn"):
        make_strategy("bananas", SPACE, [Objective("acc")], features=["proxy"])


def test_bananas_with_rank_targets_fits_ranks_and_finds_the_best():
    def with_proxy(arch: Arch) -> dict[str, float]:
        return {**cost(arch), "proxy": evaluate(arch)["acc"]}

    ranked = make_strategy("bananas", SPACE, [Objective("acc")], cost_fn=with_proxy, seed=0,
                           initial=5, features=["proxy"], acquisition="mean", random=40,
                           targets="ranks")
    asked = run(ranked, 20)
    assert all(m.opts.targets == "ranks" for m in ranked.models)
    best = max(evaluate(a)["acc"] for a in ALL)
    assert max(evaluate(a)["acc"] for a in asked) >= best - 0.5
    with pytest.raises(StrategyError, match="targets"):
        make_strategy("bananas", SPACE, [Objective("acc")], targets="quantiles")
