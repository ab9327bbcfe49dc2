"""Tabular benchmark: regret and hypervolume bookkeeping on a complete toy table, the
`nas benchmark` command, user errors, and (with the reference data) NAS-Bench-201 figures."""
from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pandas as pd
import pytest

from estimators.table import TableError
from nas.benchmark import read_table, run_benchmark
from nas.cli import main
from nas.pareto import hypervolume, nadir, pareto_mask
from search_spaces import Chain, Dimension, InvalidArchError, SearchSpace, get_space, register_space


class TableSpace(SearchSpace):
    """Three genes of four options: 64 archs, small enough for a complete table."""

    name = "bench_toy"
    dimensions = tuple(Dimension(f"g{i}", (0, 1, 2, 3)) for i in range(3))

    def blocks(self, arch, num_classes=None, in_channels=None):
        chain = Chain((in_channels or 3, 4, 4))
        chain.add("global_pool", "pool")
        chain.add("classifier", "classifier", classes=num_classes or 10)
        return chain.specs

    def encode(self, arch):
        return "".join(str(arch[f"g{i}"]) for i in range(3))

    def decode(self, body):
        if len(body) != 3 or any(c not in "0123" for c in body):
            raise InvalidArchError(f"bad key {body!r}: expected three digits 0-3")
        return self.make({f"g{i}": int(c) for i, c in enumerate(body)})

    def input_size(self, arch):
        return 4


SPACE = register_space(TableSpace())
KEYS = [f"{a}{b}{c}" for a in range(4) for b in range(4) for c in range(4)]


def write_table(path, nan_rows=()):
    """acc (searched), acc_test (reported: acc plus a fixed perturbation) and latency."""
    rows = []
    for key in KEYS:
        digits = [int(c) for c in key]
        acc = 50.0 + 5 * sum(digits) + zlib.crc32(key.encode()) % 7 + int(key, 4) / 1000  # no ties
        jitter = (zlib.crc32(key.encode()) % 3) / 10
        rows.append({"arch": key, "acc": acc,
                     "acc_test": acc + (zlib.crc32(key[::-1].encode()) % 5 - 2) / 2,
                     "latency": 1.0 + sum(d * d for d in digits) + jitter})
    frame = pd.DataFrame(rows)
    frame.loc[list(nan_rows), "acc"] = np.nan
    frame.to_csv(path, index=False)
    return frame


@pytest.fixture
def table_path(tmp_path):
    path = tmp_path / "toy.csv"
    write_table(path)
    return path


def load(path, columns=("acc", "acc_test", "latency")):
    return read_table(path, SPACE, list(columns))


def test_exhausting_the_table_finds_the_optimum_and_the_whole_front(table_path):
    table = load(table_path)
    result = run_benchmark(table, "random", "acc", "acc_test", costs=["latency"], queries=64,
                           seeds=3)
    frame = pd.read_csv(table_path, dtype={"arch": str})
    best = frame.loc[frame.acc.idxmax()]
    assert result.regrets == pytest.approx([frame.acc_test.max() - best.acc_test] * 3)
    assert result.hypervolume_ratios["latency"] == pytest.approx([1.0] * 3)
    # Regret on the searched column never grows (on another column it may: a better
    # validation arch can test worse).
    searched = run_benchmark(table, "random", "acc", queries=64, seeds=3)
    curve = np.array(searched.curve)
    assert np.all(np.diff(curve) <= 1e-12) and curve[0] > curve[-1] == 0.0


def test_regret_and_hypervolume_by_hand(table_path):
    """One seed of random search, recomputed from its own trials."""
    table = load(table_path)
    frame = pd.read_csv(table_path, dtype={"arch": str}).set_index("arch")
    result = run_benchmark(table, "random", "acc", "acc_test", costs=["latency"], queries=10,
                           seeds=[5])
    from nas.objectives import Objective
    from nas.strategies import make_strategy

    strategy = make_strategy("random", SPACE, [Objective("acc"), Objective("latency", "minimize")],
                             seed=5)
    keys = []
    for _ in range(10):
        (arch,) = strategy.ask(1)
        strategy.tell(arch, table.metrics(arch))
        keys.append(SPACE.encode(arch))
    found = frame.loc[keys]
    incumbent = found.acc.idxmax()
    assert result.regrets[0] == pytest.approx(frame.acc_test.max() - frame.acc_test[incumbent])
    everything = np.column_stack([-frame.acc, frame.latency])
    reference = nadir(everything)
    true = hypervolume(everything[pareto_mask(everything)], reference)
    mine = hypervolume(np.column_stack([-found.acc, found.latency]), reference)
    assert result.hypervolume_ratios["latency"][0] == pytest.approx(mine / true)
    assert 0 < mine / true < 1


def test_failed_rows_never_lead(tmp_path):
    path = tmp_path / "holes.csv"
    frame = write_table(path, nan_rows=range(0, 64, 2))
    result = run_benchmark(load(path), "evolution", "acc", "acc_test", queries=64, seeds=2,
                           options={"population": 8})
    ok = frame.dropna(subset=["acc"])
    best = ok.loc[ok.acc.idxmax()]
    assert result.regrets == pytest.approx([frame.acc_test.max() - best.acc_test] * 2)


def test_parallel_seeds_give_the_same_figures(table_path):
    table = load(table_path)
    one = run_benchmark(table, "evolution", "acc", "acc_test", costs=["latency"], queries=20,
                        seeds=4, options={"population": 8})
    two = run_benchmark(table, "evolution", "acc", "acc_test", costs=["latency"], queries=20,
                        seeds=4, options={"population": 8}, workers=2)
    assert one.regrets == two.regrets and one.curve == two.curve
    assert one.hypervolume_ratios == two.hypervolume_ratios


def test_cli_json(table_path, capsys):
    code = main(["benchmark", "--table", str(table_path), "--space", "bench_toy",
                 "--objective", "acc", "--report", "acc_test", "--cost", "latency",
                 "--strategy", "nsga2", "--queries", "30", "--seeds", "3",
                 "--option", "population=6", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    for key in ("mean_regret", "median_regret", "stderr", "hypervolume_ratio"):
        assert math.isfinite(payload[key])
    assert payload["options"] == {"population": 6}
    assert len(payload["curve"]["mean_regret"]) == 30
    assert 0 < payload["hypervolume_ratio"] <= 1


def test_cli_text(table_path, capsys):
    code = main(["benchmark", "--table", str(table_path), "--space", "bench_toy",
                 "--objective", "acc", "--strategy", "random", "--queries", "12", "--seeds", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "mean" in out and "median" in out and "stderr" in out
    assert "12" in out.splitlines()[-1]  # the curve ends at the last query


@pytest.mark.parametrize("argv, message", [
    (["--objective", "nope"], "no column 'nope'"),
    (["--objective", "acc", "--strategy", "simulated-annealing"], "unknown strategy"),
    (["--objective", "acc", "--option", "population"], "KEY=VALUE"),
    (["--objective", "acc", "--option", "bogus=1"], "unknown options"),
    (["--objective", "acc", "--queries", "0"], "in 1..1000000"),
    (["--objective", "acc", "--seeds", "9" * 400], "in 1..100000"),
])
def test_cli_user_errors(table_path, capsys, argv, message):
    base = ["benchmark", "--table", str(table_path), "--space", "bench_toy", "--strategy",
            "evolution"]
    try:
        code = main(base + argv)
    except SystemExit as exc:  # argparse's own value checks
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_bad_tables(tmp_path):
    with pytest.raises(TableError, match="does not exist"):
        load(tmp_path / "missing.csv")
    path = tmp_path / "bad.csv"
    pd.DataFrame({"arch": ["012", "0x9"], "acc": [1.0, 2.0]}).to_csv(path, index=False)
    with pytest.raises(TableError, match=r"row 3 \('0x9'\)"):
        load(path, ["acc"])
    pd.DataFrame({"arch": ["012", "012"], "acc": [1.0, 2.0]}).to_csv(path, index=False)
    with pytest.raises(TableError, match="twice"):
        load(path, ["acc"])


# --- NAS-Bench-201 (reference data) ------------------------------------------------------------
@pytest.fixture(scope="module")
def nb201(shared_data):
    return read_table(shared_data / "nb201" / "nb201.csv", get_space("nb201"),
                      ["acc12_cifar10_val", "acc12_cifar10_test", "latency_ms_pixel3"])


def test_nb201_table_parses_every_cell(nb201):
    assert len(nb201) == 15625 == len(set(nb201.archs))
    space = get_space("nb201")
    assert [space.index_of(a) for a in nb201.archs[:50]] == list(range(50))


def test_nb201_evolution_beats_random(nb201):
    seeds = range(12)
    evolution = run_benchmark(nb201, "evolution", "acc12_cifar10_val", "acc12_cifar10_test",
                              queries=150, seeds=seeds)
    random = run_benchmark(nb201, "random", "acc12_cifar10_val", "acc12_cifar10_test",
                           queries=150, seeds=seeds)
    assert evolution.mean_regret < random.mean_regret - 2 * math.hypot(evolution.stderr,
                                                                      random.stderr)
    # Seed 3's regret, recomputed from its own queries: the table's best test accuracy less
    # the test accuracy of the best validation cell it found.
    from nas.objectives import Objective
    from nas.strategies import make_strategy

    strategy = make_strategy("evolution", nb201.space, [Objective("acc12_cifar10_val")], seed=3)
    found = []
    for _ in range(150):
        (arch,) = strategy.ask(1)
        strategy.tell(arch, nb201.metrics(arch))
        found.append(nb201.row_of[arch])
    val, test = nb201.columns["acc12_cifar10_val"], nb201.columns["acc12_cifar10_test"]
    incumbent = max(found, key=lambda row: val[row])
    assert evolution.regrets[3] == pytest.approx(np.nanmax(test) - test[incumbent])
