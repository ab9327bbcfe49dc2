"""Table building (resumable), the table predictor and the estimator, on a tiny toy space."""
from __future__ import annotations

import numpy as np
import pytest
from latency_toy import FAST_PLAN, toy_space

from estimators.latency import LatencyEstimator, LatencyStore, Profiler, build_table, open_predictor
from estimators.latency.blockset import all_archs, distinct_blocks, tied_sweep
from estimators.latency.correction import fit_correction
from estimators.latency.errors import LatencyError
from nas.budget import parse_budget
from nas.sampling import sample_within


@pytest.fixture(scope="module")
def toy():
    return toy_space()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("lattoy-cache")


@pytest.fixture(scope="module")
def built(toy, cache):
    """One table for the module; tests that delete entries rebuild them before returning."""
    profiler = Profiler("cpu", plan=FAST_PLAN)
    store = LatencyStore(cache_dir=cache)
    report = build_table(toy, profiler, store, calibration=3, passes=1)
    return profiler, store, report


def test_distinct_blocks_are_exactly_the_union_over_all_archs(toy):
    union = {s.signature for a in all_archs(toy) for s in toy.blocks(a)}
    found = distinct_blocks(toy)
    assert set(found.blocks) == union and found.method == "exhaustive"
    # the tied sweep alone already covers every block of this space
    swept = {s.signature for a in tied_sweep(toy) for s in toy.blocks(a)}
    assert swept == union


def test_build_is_resumable_and_counts_entries(toy, built):
    profiler, store, report = built
    assert report.distinct_blocks == 21 and report.entries == 21
    fp = profiler.fingerprint.key
    again = build_table(toy, profiler, store, calibration=0)
    assert again.measured == 0 and again.entries == 21
    # lose some entries: a rebuild measures exactly those
    lost = sorted(store.entries(fp, 1, "float32"))[:4]
    store._conn.execute(f"DELETE FROM blocks WHERE signature IN ({','.join('?' * 4)})", lost)
    assert build_table(toy, profiler, store, calibration=0).measured == 4


def test_prediction_is_corrected_sum_of_entries(toy, built, cache):
    profiler, store, report = built
    predictor = open_predictor(toy, "cpu", cache_dir=cache)
    entries = store.entries(profiler.fingerprint.key, 1, "float32")
    correction, info = store.correction(profiler.fingerprint.key, "lattoy", 1, "float32")
    assert info["networks"] == 3
    for arch in all_archs(toy)[:8]:
        expected = correction.apply(sum(entries[s.signature].median_ms for s in toy.blocks(arch)))
        assert predictor.latency_ms(arch) == pytest.approx(expected, rel=1e-12)


def test_missing_block_is_measured_on_demand_or_reported(toy, built, cache):
    profiler, store, _ = built
    fp = profiler.fingerprint.key
    arch = toy.max_arch()
    victim = toy.blocks(arch)[2].signature
    store._conn.execute("DELETE FROM blocks WHERE signature = ?", (victim,))
    strict = open_predictor(toy, "cpu", cache_dir=cache, measure_missing=False)
    with pytest.raises(LatencyError, match="nas latency build"):
        strict.latency_ms(arch)
    lazy = open_predictor(toy, "cpu", cache_dir=cache)
    assert lazy.latency_ms(arch) > 0
    assert lazy.table.measured_on_demand == 1
    assert store.get(fp, victim, 1, "float32") is not None


def test_no_table_is_a_user_error_naming_the_fix(toy, tmp_path):
    with pytest.raises(LatencyError, match="nas latency build --space lattoy"):
        open_predictor(toy, "cpu", cache_dir=tmp_path / "empty")
    with pytest.raises(LatencyError, match="unknown device 'nowhere'; known: cpu, cuda"):
        open_predictor(toy, "nowhere", cache_dir=tmp_path / "empty")


def test_estimator_is_cached_and_drives_latency_budget(toy, built, cache):
    estimator = LatencyEstimator.open(toy, "cpu", cache_dir=cache)
    assert estimator.name == "latency[cpu]" and estimator.metrics == ("latency_ms",)
    values = {a.key: estimator(a)["latency_ms"] for a in all_archs(toy)}
    # timing noise may make some arch faster than min_arch: keep the budget feasible
    bound = max(float(np.quantile(list(values.values()), 0.6)),
                estimator(toy.min_arch())["latency_ms"] * 1.001)
    constraints = parse_budget(f"{bound}ms-latency")
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = sample_within(toy, constraints, estimator, rng)
        assert estimator(arch)["latency_ms"] <= bound
    first = estimator(toy.max_arch())
    assert estimator(toy.max_arch()) == first and estimator(toy.max_arch()) is not first


def test_correction_fit_recovers_overhead_and_scale():
    sums = np.array([1.0, 2.0, 4.0, 8.0])
    correction = fit_correction(sums, 0.5 + 1.25 * sums)
    assert correction.overhead_ms == pytest.approx(0.5) and correction.scale == pytest.approx(1.25)
    single = fit_correction([2.0], [3.0])
    assert single.overhead_ms == 0.0 and single.scale == pytest.approx(1.5)


@pytest.mark.parametrize("n", [3, 12])
def test_correction_never_fits_a_negative_overhead(n):
    """Noisy networks whose best line crosses zero get a scale-only fit, so a network below
    the calibrated range is still priced above 0 ms (CI once saw 0.0 ms predictions)."""
    sums = np.linspace(2.0, 4.0, n)
    correction = fit_correction(sums, -1.0 + 1.5 * sums)
    assert correction.overhead_ms == 0.0 and correction.scale > 0
    assert correction.apply(0.1) > 0
