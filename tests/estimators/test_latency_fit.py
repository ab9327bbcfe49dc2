"""Learning a device from whole-network measurements: regression, model selection, CSV, CLI."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from latency_toy import toy_space

from estimators.latency.blockset import all_archs
from estimators.latency.errors import LatencyError
from estimators.latency.features import (
    KERNEL_CATEGORIES,
    STATS,
    KernelFeatures,
    StageFeatures,
    block_kernels,
    block_stats,
    kernel_knots,
)
from estimators.latency.fit import FittedModel, FittedPredictor, fit_device
from estimators.latency.metrics import accuracy
from estimators.latency.regression import fit_nonneg
from nas.cli import main


@pytest.fixture(scope="module")
def toy():
    return toy_space()


def synthetic_latency(space, archs, noise=0.0, seed=0):
    """A made-up device: a launch cost per layer plus time per MAC and per element."""
    stages = StageFeatures.stages_of(space, archs)
    x = StageFeatures(space, ("layers", "macs", "io_elems"), stages).matrix(archs)
    per_stage = np.tile([0.004, 2e-7, 3e-6], len(stages)) * np.linspace(1, 2, x.shape[1])
    y = 0.3 + x @ per_stage
    return y * (1 + noise * np.random.default_rng(seed).standard_normal(len(y)))


def test_accuracy_metrics_on_known_numbers():
    got = accuracy([1.04, 2.2, 2.9, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert got["within_5pct"] == 0.75 and got["within_10pct"] == 0.75
    assert got["mape"] == pytest.approx(100 * (0.04 + 0.1 + 1 / 30 + 0) / 4)
    assert got["kendall_tau"] == pytest.approx(1.0) and got["n"] == 4


def test_nonneg_fit_recovers_coefficients_and_resists_a_second_mode():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 10, size=(200, 3))
    y = 2.0 + x @ np.array([0.5, 0.0, 1.5])
    fit = fit_nonneg(x, y, alpha=0.0, robust=False)
    assert np.allclose(fit.coef, [0.5, 0.0, 1.5], atol=1e-6) and fit.intercept == pytest.approx(2.0)
    shifted = y.copy()
    shifted[:30] *= 0.8  # 15% of rows in a second mode 20% lower
    plain = fit_nonneg(x, shifted, alpha=0.0, robust=False)
    robust = fit_nonneg(x, shifted, alpha=0.0, robust=True)
    rest = slice(30, None)
    assert accuracy(robust.predict(x[rest]), y[rest])["mape"] < 0.1
    assert accuracy(plain.predict(x[rest]), y[rest])["mape"] > 1.0
    assert np.all(robust.coef >= 0)


def test_block_stats_match_the_analytical_costs(toy):
    from search_spaces.ops import block_cost

    for spec in toy.blocks(toy.max_arch()):
        stats = dict(zip(STATS, block_stats(spec)))
        assert stats["blocks"] == 1 and stats["macs"] == block_cost(spec).macs
        assert stats["params"] == block_cost(spec).params
    mb = dict(zip(STATS, block_stats(toy.blocks(toy.max_arch())[1])))
    assert mb["layers"] == 8  # expand conv-bn-act, depthwise conv-bn-act, project conv-bn
    assert mb["inner_elems"] == 2 * 32 * 12 * 12


def test_block_kernels_carry_the_analytical_macs(toy):
    from search_spaces.ops import block_cost

    for arch in all_archs(toy)[:4]:
        for spec in toy.blocks(arch):
            kernels = block_kernels(spec)
            assert {c for c, _, _ in kernels} <= set(KERNEL_CATEGORIES)
            macs = sum(w for c, w, _ in kernels if c != "memory")
            assert macs == block_cost(spec).macs
    mbconv = block_kernels(toy.blocks(toy.max_arch())[1])
    assert [c for c, _, _ in mbconv].count("compute") == 2  # expand and project 1x1 convs
    assert [c for c, _, _ in mbconv].count("depthwise") == 1
    assert all(e > 0 for _, _, e in mbconv)


def roofline_latency(space, archs, floor=0.02):
    """A made-up GPU: each kernel costs max(launch floor, work / throughput), so small
    networks are launch-bound and large ones throughput-bound (convex in the work)."""
    speed = {"compute": 2e-7, "depthwise": 1e-6, "memory": 4e-6}
    return np.array([0.1 + sum(max(floor, w * speed[c]) for s in space.blocks(a)
                               for c, w, _ in block_kernels(s)) for a in archs])


def test_kernel_features_fit_a_launch_floor_then_throughput_device(toy):
    archs = all_archs(toy)
    y = roofline_latency(toy, archs)
    knots = kernel_knots(s for a in archs[:20] for s in toy.blocks(a))
    assert all(len(knots[c]) >= 1 for c in KERNEL_CATEGORIES)
    features = KernelFeatures(knots)
    assert len(features.vector(toy.blocks(archs[0]))) == len(features.names)
    report, predictor = fit_device(toy, archs, y, train=20, seed=0, feature_sets=["kernels"])
    assert report.model.knots and report.test["within_5pct"] == 1.0
    stages, _ = fit_device(toy, archs, y, train=20, seed=0, feature_sets=["compute"])
    assert report.test["mape"] < 0.5 < stages.test["mape"]  # per-stage sums stay linear
    restored = FittedModel.from_dict(json.loads(json.dumps(report.model.as_dict())))
    again = FittedPredictor(toy, restored, "roofline")
    assert [again.latency_ms(a) for a in archs] == [predictor.latency_ms(a) for a in archs]


def test_fit_learns_a_device_from_few_networks(toy):
    archs = all_archs(toy)
    y = synthetic_latency(toy, archs, noise=0.01)
    report, predictor = fit_device(toy, archs, y, train=20, seed=1)
    assert report.train_rows == 20 and report.test_rows == 12
    assert report.test["within_10pct"] >= 0.9 and report.test["kendall_tau"] > 0.7
    assert set(report.flops_baseline) >= {"within_5pct", "within_10pct", "mape", "kendall_tau"}
    assert {r["feature_set"] for r in report.cv} >= {"launch", "compute", "structure", "kernels"}
    with pytest.raises(LatencyError, match="--train must be between 10 and 31"):
        fit_device(toy, archs, y, train=32)


def test_fit_and_predict_from_the_cli(toy, tmp_path, capsys):
    archs = all_archs(toy)
    y = synthetic_latency(toy, archs)
    csv = tmp_path / "measured.csv"
    pd.DataFrame({"arch": [a.key for a in archs], "latency_ms_toyphone": y,
                  "other": 1}).to_csv(csv, index=False)
    cache = str(tmp_path / "cache")
    assert main(["latency", "fit", "--space", "lattoy", "--measurements", str(csv), "--column",
                 "latency_ms_toyphone", "--train", "20", "--cache-dir", cache, "--json"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert fitted["device"] == "toyphone" and fitted["within_10pct"] >= 0.9
    for key in ("within_5pct", "within_10pct", "mape", "kendall_tau"):
        assert key in fitted and key in fitted["flops_baseline"]
    arch = archs[5]
    assert main(["latency", "predict", "--space", "lattoy", "--arch", arch.key, "--device",
                 "toyphone", "--cache-dir", cache, "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)["latency_ms"]
    assert predicted == pytest.approx(y[5], rel=0.1)
    assert main(["latency", "devices", "--cache-dir", cache]) == 0
    assert "toyphone" in capsys.readouterr().out


def test_fit_user_errors_are_one_line(toy, tmp_path, capsys):
    csv = tmp_path / "m.csv"
    frame = pd.DataFrame({"arch": ["r8-k3e2-k3e2", "r9-k3e2-k3e2"], "lat": [1.0, 2.0]})
    frame.to_csv(csv, index=False)
    cases = [(["--column", "nope"], "has no column 'nope'; numeric columns: lat"),
             (["--column", "lat"], "row 3"),
             (["--column", "lat", "--arch-column", "key"], "no architecture column 'key'")]
    for extra, message in cases:
        code = main(["latency", "fit", "--space", "lattoy", "--measurements", str(csv),
                     "--train", "10", "--cache-dir", str(tmp_path), *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1
    code = main(["latency", "fit", "--space", "lattoy", "--measurements", str(tmp_path / "x.csv"),
                 "--column", "lat", "--train", "10", "--cache-dir", str(tmp_path)])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_published_gpu_column_from_100_networks(shared_data):
    """OFA MobileNetV3 on a V100 at batch 64: 100 training networks, 300 held out."""
    from search_spaces import get_space

    space = get_space("mobile")
    frame = pd.read_csv(shared_data / "ofa" / "ofa_mbv3_latency.csv", nrows=400)
    archs = [space.parse(a) for a in frame["arch"]]
    y = frame["latency_ms_v100_64"].to_numpy()
    report, _ = fit_device(space, archs, y, train=100, seed=0, feature_sets=["compute"])
    assert report.test["within_10pct"] >= 0.9 and report.test["kendall_tau"] >= 0.85


def test_sample_under_a_latency_budget_on_a_fitted_device(toy, tmp_path, capsys):
    """`nas sample --device NAME --budget Xms-latency` with a device fitted from a CSV."""
    archs = all_archs(toy)
    y = synthetic_latency(toy, archs)
    csv = tmp_path / "measured.csv"
    pd.DataFrame({"arch": [a.key for a in archs], "latency_ms_toyphone": y}).to_csv(csv,
                                                                                     index=False)
    cache = str(tmp_path / "cache")
    assert main(["latency", "fit", "--space", "lattoy", "--measurements", str(csv), "--column",
                 "latency_ms_toyphone", "--train", "20", "--cache-dir", cache]) == 0
    capsys.readouterr()
    budget = float(np.quantile(y, 0.4))
    argv = ["sample", "--space", "lattoy", "-n", "6", "--seed", "1", "--device", "toyphone",
            "--budget", f"{budget:.4f}ms-latency", "--cache-dir", cache]
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6 and all(r["latency_ms"] <= budget for r in rows)
    assert {"key", "flops", "params", "latency_ms"} <= set(rows[0])
    assert main(argv) == 0
    assert "device toyphone" in capsys.readouterr().out
    cases = [(["--device", "pixel9"], "unknown device 'pixel9'"),
             (["--device", "toyphone", "--budget", "0.001ms-latency"], "smallest architecture"),
             (["--budget", "5ms-latency"], "needs --device")]
    for extra, message in cases:
        base = ["sample", "--space", "lattoy", "--cache-dir", cache]
        if "--budget" not in extra:
            base += ["--budget", f"{budget:.4f}ms-latency"]
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_blocks_that_cannot_run_on_meta_drop_the_kernel_features(toy, monkeypatch):
    """A block whose forward needs real data (here `.item()`) has no kernel features: model
    selection leaves those sets out, and asking for them by name says why."""
    from torch import nn

    import search_spaces.ops as ops
    from estimators.latency import features

    class DataDependent(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum().item() > 0 else x

    real = ops.build_block
    monkeypatch.setattr(ops, "build_block", lambda spec: nn.Sequential(DataDependent(),
                                                                       real(spec)))
    caches = (features._trace, features.block_stats, features.arch_kinds, features.stage_stats)
    for cache in caches:
        cache.cache_clear()
    try:
        archs = all_archs(toy)
        y = synthetic_latency(toy, archs)
        report, _ = fit_device(toy, archs, y, train=20, seed=0)
        assert report.cv and not any("kernels" in r["feature_set"] for r in report.cv)
        with pytest.raises(LatencyError, match="cannot run on the meta device"):
            fit_device(toy, archs, y, train=20, seed=0, feature_sets=["kernels"])
    finally:
        for cache in caches:
            cache.cache_clear()
