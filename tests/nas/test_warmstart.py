"""Zero-cost warm start: the initial archs of local, bananas and evolution are the best of a
seeded random pool under a cheap metric (checked against a pool drawn here, independently of
the strategy's code); several objectives rank the pool by non-dominated layers; the tabular
benchmark gives cheap columns as the cost_fn; `nas search` computes a named proxy as a cost."""
from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pandas as pd
import pytest

from nas.benchmark import read_table, run_benchmark
from nas.cli import main
from nas.objectives import Objective
from nas.pareto import pareto_mask
from nas.strategies import StrategyError, make_strategy
from nas.strategies.warmstart import POOL_STREAM
from search_spaces import Arch, get_space

SPACE = get_space("nb201")
WARM = ("local", "bananas", "evolution")
INITIAL = 6


def score(arch: Arch) -> float:
    """A cheap metric with no ties."""
    return zlib.crc32(SPACE.encode(arch).encode()) / 2**32


def cheap(arch: Arch) -> dict[str, float]:
    return {"score": score(arch), "latency": 1 + zlib.crc32(arch.key.encode()[::-1]) % 97}


def evaluate(arch: Arch) -> dict[str, float]:
    return {"acc": 50 + 10 * score(arch), **cheap(arch)}


def pool_of(seed: int, size: int) -> list[Arch]:
    """The strategy's pool, drawn here from its documented generator."""
    rng = np.random.default_rng([seed, POOL_STREAM])
    pool: dict[Arch, None] = {}
    while len(pool) < size:
        pool[SPACE.sample(rng)] = None
    return list(pool)


def initial_options(name: str, **warm) -> dict:
    size = {"evolution": "population"}.get(name, "initial")
    return {size: INITIAL, "warm_start": "score", "warm_start_pool": 200, **warm}


def ask_tell(strategy, n: int) -> list[Arch]:
    asked = []
    for _ in range(n):
        (arch,) = strategy.ask(1)
        strategy.tell(arch, evaluate(arch))
        asked.append(arch)
    return asked


@pytest.mark.parametrize("name", WARM)
@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_initial_archs_are_the_pools_best(name, direction):
    strategy = make_strategy(name, SPACE, [Objective("acc")], cost_fn=cheap, seed=3,
                             **initial_options(name, warm_start_direction=direction))
    asked = ask_tell(strategy, INITIAL)
    ranked = sorted(pool_of(3, 200), key=score, reverse=direction == "maximize")
    assert asked == ranked[:INITIAL]
    cold = make_strategy(name, SPACE, [Objective("acc")], cost_fn=cheap, seed=3,
                         **initial_options(name, warm_start=None))
    best = max if direction == "maximize" else min
    assert best(map(score, asked)) == best(best(map(score, asked)),
                                           best(map(score, ask_tell(cold, INITIAL))))


def test_failed_scores_rank_last():
    def half_failed(arch: Arch) -> dict[str, float]:
        return {"score": score(arch) if score(arch) < 0.5 else math.nan}

    strategy = make_strategy("local", SPACE, [Objective("acc")], cost_fn=half_failed, seed=0,
                             **initial_options("local"))
    asked = ask_tell(strategy, INITIAL)
    assert all(math.isfinite(half_failed(a)["score"]) for a in asked)
    finite = [a for a in pool_of(0, 200) if score(a) < 0.5]
    assert asked == sorted(finite, key=score, reverse=True)[:INITIAL]


def test_several_objectives_start_along_the_front():
    objectives = [Objective("acc"), Objective("latency", "minimize")]
    strategy = make_strategy("bananas", SPACE, objectives, cost_fn=cheap, seed=1,
                             **initial_options("bananas"))
    asked = ask_tell(strategy, INITIAL)
    pool = pool_of(1, 200)
    points = np.array([[-score(a), cheap(a)["latency"]] for a in pool])
    first_layer = {a for a, keep in zip(pool, pareto_mask(points)) if keep}
    # the first non-dominated layer of (score, latency) comes first, best score first
    expected = sorted(first_layer, key=score, reverse=True)[:INITIAL]
    assert asked[:len(expected)] == expected


def test_a_checkpoint_in_the_warm_start_continues_identically():
    def build():
        return make_strategy("local", SPACE, [Objective("acc")], cost_fn=cheap, seed=5,
                             **initial_options("local"))

    whole = build()
    first = ask_tell(whole, 3)
    rest = ask_tell(whole, 6)
    restored = build()
    restored.load_state_dict(json.loads(json.dumps(_after(build(), first).state_dict())))
    assert ask_tell(restored, 6) == rest


def _after(strategy, archs):
    for arch in archs:
        (asked,) = strategy.ask(1)
        assert asked == arch
        strategy.tell(arch, evaluate(arch))
    return strategy


@pytest.mark.parametrize("cost_fn,options,message", [
    (None, {"warm_start": "score"}, "needs a cost_fn"),
    (cheap, {"warm_start": "nosuch"}, "no 'nosuch'"),
    (cheap, {"warm_start": "score", "warm_start_pool": 0}, "warm_start_pool must be"),
    (cheap, {"warm_start": "score", "warm_start_direction": "up"}, "warm_start_direction"),
])
def test_errors_name_the_option(cost_fn, options, message):
    with pytest.raises(StrategyError, match=message):
        strategy = make_strategy("local", SPACE, [Objective("acc")], cost_fn=cost_fn, **options)
        strategy.ask(1)


@pytest.fixture(scope="module")
def oracle_table(tmp_path_factory):
    """Every NB201 cell with `acc` and `oracle`, a perfect zero-cost score of it."""
    archs = {SPACE.make(dict(zip(SPACE.dimension_names, v)))
             for v in np.stack(np.meshgrid(*[d.options for d in SPACE.dimensions]), -1)
             .reshape(-1, len(SPACE.dimensions)).tolist()}
    frame = pd.DataFrame([{"arch": SPACE.encode(a), "acc": 50 + 10 * score(a)} for a in archs])
    frame["oracle"] = frame["acc"]
    path = tmp_path_factory.mktemp("oracle") / "t.csv"
    frame.to_csv(path, index=False)
    return path


def test_benchmark_gives_cheap_columns_to_the_strategy(oracle_table):
    table = read_table(oracle_table, SPACE, ["acc", "oracle"])
    frame = pd.read_csv(oracle_table)
    options = {"warm_start": "oracle", "warm_start_pool": len(frame), "initial": 3}
    warm = run_benchmark(table, "local", "acc", queries=5, seeds=3, options=options,
                         cheap=["oracle"])
    assert warm.per_seed_curves == [[0.0] * 5] * 3  # the first query is the optimum
    cold = run_benchmark(table, "local", "acc", queries=5, seeds=3, options={"initial": 3})
    assert min(c[0] for c in cold.per_seed_curves) > 0
    with pytest.raises(StrategyError, match="needs a cost_fn"):
        run_benchmark(table, "local", "acc", queries=5, seeds=1, options=options)


def test_nas_benchmark_cheap_columns(oracle_table, capsys):
    argv = ["benchmark", "--table", str(oracle_table), "--space", "nb201", "--objective", "acc",
            "--strategy", "local", "--queries", "3", "--seeds", "2", "--option",
            "warm_start=oracle", "--option", "warm_start_pool=20000", "--json"]
    assert main([*argv, "--cheap", "oracle"]) == 0
    assert json.loads(capsys.readouterr().out)["curve"]["mean_regret"] == [0.0] * 3
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cheap oracle" in err


SEARCH = ["search", "--space", "nb201", "--estimator", "proxy", "--option", 'proxies=["jacov"]',
          "--option", "batch_size=16", "--data", "digits", "--trials", "5", "--workers", "0",
          "--strategy", "local", "--option", "initial=3", "--option", "warm_start_pool=12",
          "--quiet"]


def test_nas_search_scores_a_named_proxy_as_a_cost(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*SEARCH, "--option", "warm_start=synflow", "--out", str(out)]) == 0
    trials = pd.read_csv(out / "trials.csv")
    first = trials["synflow"].tolist()[:3]
    assert first == sorted(first, reverse=True) and trials["synflow"].notna().all()
    capsys.readouterr()
    code = main([*SEARCH, "--option", "warm_start=nosuch", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "warm_start" in err and "nosuch" in err
    assert not (tmp_path / "bad").exists()


class Garbage:
    """A predictor that predicts nonsense: what an exactly known objective must not consult."""

    def sample(self, archs, rng, features=None):
        return rng.normal(size=len(archs)) * 1e6

    def predict(self, archs, features=None):
        raise AssertionError("a known objective was predicted")


def test_bananas_takes_an_objective_the_cost_fn_gives_as_it_is(monkeypatch):
    from nas.strategies.bananas import Bananas

    objectives = [Objective("acc"), Objective("latency", "minimize")]
    fit = Bananas._fit

    def proposals(garbage: bool) -> list[Arch]:
        strategy = make_strategy("bananas", SPACE, objectives, cost_fn=cheap, seed=2,
                                 initial=6, refit_every=1)
        assert strategy.known_objectives() == {"latency"}

        def fit_then_spoil(self, upto):
            fit(self, upto)
            if garbage:
                self.models[1] = Garbage()
        monkeypatch.setattr(Bananas, "_fit", fit_then_spoil)
        return ask_tell(strategy, 14)

    assert proposals(garbage=True) == proposals(garbage=False)
    without = make_strategy("bananas", SPACE, objectives, seed=2)
    assert without.known_objectives() == set()


def test_cheap_proxies_follow_the_estimators_resolution():
    """A ViT cannot run on 8x8 digits: with the estimator's resolution "arch" the cheap proxy
    runs at the arch's own, as the accuracy estimate does."""
    from nas.evaluation import Evaluator, evaluation_config

    vit = get_space("vit")
    config = evaluation_config("vit", "proxy", {"proxies": ["jacov"], "batch_size": 4,
                                                "resolution": "arch"},
                               {"name": "digits"}, cheap_proxies=["synflow"])
    assert math.isfinite(Evaluator(config, shared={}).cost(vit.min_arch())["synflow"])
