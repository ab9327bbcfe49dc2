"""Accuracy estimators (proxy, train, table) and `nas evaluate`, on a toy space and digits."""
from __future__ import annotations

import json

import pytest
import torch

from estimators.accuracy import (
    ESTIMATOR_KEY,
    ProxyEstimator,
    TableEstimator,
    TrainEstimator,
    build_for_data,
    make_estimator,
    target_resolution,
)
from estimators.data import load_data
from estimators.proxies import PROXY_NAMES
from estimators.table import AccuracyTable, TableError
from estimators.train import TrainRecipe, evaluate, recalibrate_bn, train_model
from nas.cli import main
from search_spaces import (
    Chain,
    Dimension,
    InvalidArchError,
    NasError,
    SearchSpace,
    get_space,
    register_space,
)


class TinySpace(SearchSpace):
    """One or two stride-2 conv layers of width 4..16 on 8x8 inputs."""

    name = "tinyacc"
    dimensions = (Dimension("depth", (1, 2)), Dimension("width", (4, 8, 16)))
    default_classes = 10
    default_channels = 1

    def blocks(self, arch, num_classes=None, in_channels=None):
        chain = Chain((in_channels or 1, 8, 8))
        for i in range(arch["depth"]):
            chain.add("conv_bn_act", f"conv{i}", out=arch["width"], k=3, stride=2)
        chain.add("global_pool", "pool")
        chain.add("classifier", "classifier", classes=num_classes or self.default_classes)
        return chain.specs

    def encode(self, arch):
        return f"d{arch['depth']}w{arch['width']}"

    def decode(self, body):
        try:
            depth, width = body.lstrip("d").split("w")
            return self.make({"depth": int(depth), "width": int(width)})
        except ValueError:
            raise InvalidArchError(f"bad tinyacc key {body!r}: expected dDEPTHwWIDTH") from None

    def input_size(self, arch):
        return 8


TINY_RECIPE = TrainRecipe(epochs=2, batch_size=64, lr=0.2, train_images=640, eval_images=200,
                          bn_images=256)


@pytest.fixture(scope="module")
def space() -> TinySpace:
    return register_space(TinySpace())


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", seed=0)


def test_proxy_estimator_reports_every_proxy_and_caches(space, digits, monkeypatch):
    estimator = ProxyEstimator(digits, proxy="synflow", batch_size=32, seed=1)
    arch = space.make({"depth": 2, "width": 8})
    result = estimator(arch)
    assert set(result) == {"acc", ESTIMATOR_KEY, *PROXY_NAMES}
    assert result["acc"] == result["synflow"] and result[ESTIMATOR_KEY] == "proxy:synflow"
    assert estimator.name == "proxy"
    calls = []
    monkeypatch.setattr(estimator, "estimate", lambda a: calls.append(a) or {"acc": 0.0})
    assert estimator(arch) == result and calls == []  # served from the cache by key
    assert ProxyEstimator(digits, proxy="synflow", batch_size=32, seed=1)(arch) == result


def test_proxy_estimator_ranks_params_by_size(space, digits):
    estimator = ProxyEstimator(digits, batch_size=16)
    small = estimator(space.make({"depth": 1, "width": 4}))
    large = estimator(space.make({"depth": 2, "width": 16}))
    assert large["params"] > small["params"] and large["synflow"] > small["synflow"]


def test_proxy_estimator_rejects_bad_settings(digits):
    with pytest.raises(NasError, match="known: synflow"):
        ProxyEstimator(digits, proxy="fisher")
    with pytest.raises(NasError, match="at least 2"):
        ProxyEstimator(digits, batch_size=1)


def test_train_estimator_learns_and_is_deterministic(space, digits):
    arch = space.make({"depth": 2, "width": 16})
    first = TrainEstimator(digits, TINY_RECIPE, seed=3)(arch)
    again = TrainEstimator(digits, TINY_RECIPE, seed=3)(arch)
    assert first == {**again, "train_seconds": first["train_seconds"]}
    assert first["acc"] > 50.0  # ten classes: chance is 10 %
    assert first[ESTIMATOR_KEY] == "train" and first["train_steps"] == 20
    final = TrainEstimator(digits, TINY_RECIPE, seed=3, split="test")(arch)
    assert final[ESTIMATOR_KEY] == "train:test"
    with pytest.raises(NasError, match="'val' or 'test'"):
        TrainEstimator(digits, TINY_RECIPE, split="train")


def test_train_recipe_validation():
    with pytest.raises(NasError, match="epochs"):
        TrainRecipe(epochs=0)
    with pytest.raises(NasError, match="train_images"):
        TrainRecipe(train_images=0)


def test_bn_recalibration_sets_running_stats_from_data(space, digits):
    torch.manual_seed(0)
    model = space.build(space.make({"depth": 1, "width": 4}), 10, 1)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    recalibrate_bn(model, digits, images=300)
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert bn.momentum == 0.1 and bn.num_batches_tracked == 2  # 250 + 50 images
    assert 0.0 <= evaluate(model, digits, "val", limit=50) <= 100.0


def test_train_model_rejects_the_train_split(space, digits):
    model = space.build(space.min_arch(), 10, 1)
    with pytest.raises(NasError, match="'val' or 'test'"):
        train_model(model, digits, TINY_RECIPE, split="train")


def test_resolution_policy(space, digits):
    arch = space.min_arch()
    assert target_resolution(arch, digits, None) == 8
    assert target_resolution(arch, digits, 20) == 20
    vit = get_space("vit").min_arch()
    assert target_resolution(vit, digits, "arch") == get_space("vit").input_size(vit)
    with pytest.raises(NasError, match="--resolution arch") as info:
        build_for_data(vit, digits, seed=0, size=digits.resolution)
    assert "\n" not in str(info.value)
    with pytest.raises(NasError, match="resolution must be"):
        target_resolution(arch, digits, "big")


def write_table(path, rows, header="arch,acc_val,acc_test,latency_ms"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_table_estimator_lookup_and_errors(space, tmp_path):
    path = write_table(tmp_path / "t.csv", ["d1w4,50.5,49.0,1.5", "tinyacc:d2w16,70.25,71.0,3.0"])
    with pytest.raises(TableError, match="pick one: acc_val, acc_test"):
        TableEstimator(path, space)
    estimator = TableEstimator(AccuracyTable(path, space, "acc_val", extra=["latency_ms"]))
    assert estimator(space.make({"depth": 2, "width": 16})) == {
        "acc": 70.25, "latency_ms": 3.0, ESTIMATOR_KEY: "table:acc_val"}
    with pytest.raises(TableError, match="not in table"):
        estimator(space.make({"depth": 1, "width": 8}))
    with pytest.raises(TableError, match="numeric columns: acc_val, acc_test, latency_ms"):
        TableEstimator(path, space, column="acc")
    single = write_table(tmp_path / "s.csv", ["d1w4,1.0"], header="arch,acc_top1")
    assert TableEstimator(single, space)(space.make({"depth": 1, "width": 4}))["acc"] == 1.0


def test_table_rejects_bad_rows(space, tmp_path):
    bad = write_table(tmp_path / "bad.csv", ["d1w4,1,2,3", "d9w4,1,2,3"])
    with pytest.raises(TableError, match=r"row 3 \('d9w4'\): .*depth=9"):
        AccuracyTable(bad, space, "acc_val")
    twice = write_table(tmp_path / "twice.csv", ["d1w4,1,2,3", "tinyacc:d1w4,1,2,3"])
    with pytest.raises(TableError, match="appears twice"):
        AccuracyTable(twice, space, "acc_val")
    with pytest.raises(TableError, match="does not exist"):
        AccuracyTable(tmp_path / "missing.csv", space)
    no_arch = write_table(tmp_path / "n.csv", ["1"], header="acc")
    with pytest.raises(TableError, match="no 'arch' column"):
        AccuracyTable(no_arch, space)


def test_table_estimator_on_nb201(shared_data):
    estimator = TableEstimator(shared_data / "nb201" / "nb201.csv", "nb201",
                               column="acc12_cifar10_val")
    space = get_space("nb201")
    assert len(estimator.table) == 15_625
    row0 = space.parse("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|"
                       "skip_connect~1|skip_connect~2|")
    assert estimator(row0)["acc"] == pytest.approx(63.364)
    assert estimator(space.reference_archs()["all_c3"])["acc"] > estimator(row0)["acc"]


def test_make_estimator_names(space, digits, tmp_path):
    assert make_estimator("proxy", space, data=digits, batch_size=8).name == "proxy"
    assert make_estimator("train", space, data=digits).name == "train"
    with pytest.raises(NasError, match="needs a CSV"):
        make_estimator("table", space)
    with pytest.raises(NasError, match="supernet train --space mobile --data digits"):
        make_estimator("supernet", "mobile", data=digits, cache_dir=tmp_path)
    with pytest.raises(NasError, match="known: supernet, proxy, train, table"):
        make_estimator("oracle", space)


# --- nas evaluate --------------------------------------------------------------------------
def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_proxy_json_holds_every_proxy(space, capsys):
    code, out, _ = run(capsys, "evaluate", "--space", "tinyacc", "--arch", "d2w8",
                       "--estimator", "proxy", "--data", "digits", "--batch-size", "16",
                       "--proxy", "snip", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["key"] == "tinyacc:d2w8" and payload["estimator"] == "proxy"
    assert payload["acc"] == payload["snip"] and payload["acc_estimator"] == "proxy:snip"
    assert set(PROXY_NAMES) <= set(payload) and payload["data"]["name"] == "digits"


def test_cli_train_text(space, capsys):
    code, out, _ = run(capsys, "evaluate", "--space", "tinyacc", "--arch", "d1w8",
                       "--estimator", "train", "--data", "digits", "--epochs", "1",
                       "--train-images", "128", "--eval-images", "64", "--quiet")
    assert code == 0
    assert "estimator: train" in out and "acc: " in out and "train_steps: 1" in out


def test_cli_supernet_not_trained_yet(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", "--space", "mobile", "--ref", "ofa_smallest",
                       "--estimator", "supernet", "--data", "digits", "--cache-dir",
                       str(tmp_path))
    assert code == 2 and "nas supernet train --space mobile --data digits" in err


def test_cli_table(shared_data, capsys):
    code, out, _ = run(capsys, "evaluate", "--space", "nb201", "--ref", "all_c3",
                       "--estimator", "table", "--table",
                       str(shared_data / "nb201" / "nb201.csv"), "--column",
                       "acc12_cifar10_val", "--json")
    assert code == 0
    assert json.loads(out)["acc"] == pytest.approx(69.078)


@pytest.mark.parametrize("argv, message", [
    (["--estimator", "table"], "needs a CSV"),
    (["--estimator", "proxy", "--test", "--data", "digits"], "--test"),
    (["--estimator", "proxy", "--data", "cifar10"], "needs --data-dir"),
    (["--estimator", "oracle"], "invalid choice"),
    (["--estimator", "proxy", "--resolution", "huge"], "'data', 'arch' or a number"),
])
def test_cli_user_mistakes_exit_2(space, capsys, argv, message):
    code, _, err = run(capsys, "evaluate", "--space", "tinyacc", "--arch", "d1w4", *argv)
    assert code == 2 and message in err
    assert err.count("\n") == 1 and err.startswith("error: ")
