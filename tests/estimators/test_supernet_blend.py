"""The supernet accuracy blended with a zero-cost proxy's rank (estimators.supernet.blend): the
rank scale, the blend's properties, the seeded reference, and the estimator that reports it,
reuses its reference from beside the checkpoint and turns it off with `blend_proxy=none`."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from tiny_space import tiny_mobile_fixtures

from estimators.supernet import SupernetEstimator, SupernetRecipe
from estimators.supernet import blend as blend_module
from estimators.supernet.blend import ProxyBlend, RankScale, reference_archs
from estimators.supernet.estimator import blend_proxy
from search_spaces import NasError, get_space

space_file, tiny, digits = tiny_mobile_fixtures("tiny-blend")
TINY = {"epochs": 1, "train_images": 64, "batch_size": 32, "random_subnets": 0,
        "calibration_images": 32, "eval_images": 64}


def test_rank_scale_is_strictly_increasing_past_both_ends_and_inverts():
    scale = RankScale([3.0, 1.0, 2.0, 2.0, 5.0, 4.0, 9.0])
    scores = np.linspace(-10, 20, 301)
    places = [scale.place(s) for s in scores]
    assert all(b > a for a, b in zip(places, places[1:]))
    assert all(abs(scale.score(p) - s) < 1e-9 for p, s in zip(places, scores))
    assert 0 < scale.place(1.0) < scale.place(9.0) < 1  # mid-ranks inside (0, 1)
    # each score at (rank - 1/2) / n; the tied pair shares the mean of ranks 2 and 3
    assert scale.place(1.0) == pytest.approx(0.5 / 7)
    assert scale.place(2.0) == pytest.approx(2 / 7)


def test_rank_scale_needs_two_distinct_scores():
    with pytest.raises(NasError, match="2 distinct"):
        RankScale([1.0, 1.0, math.nan])


def test_blend_keeps_agreement_and_moves_toward_the_proxy():
    accs = tuple(float(v) for v in np.linspace(60, 90, 31))
    proxies = tuple(float(v) for v in np.linspace(-300, -80, 31))
    blend = ProxyBlend("jacov", 1 / 3, accs, proxies)
    # the proxy at the same place as the supernet: the accuracy stays
    assert blend(75.0, -190.0) == pytest.approx(75.0)
    # a proxy that ranks it lower pulls it down, higher pushes it up, monotone in both
    assert blend(75.0, -280.0) < 75.0 < blend(75.0, -100.0)
    grid = [blend(a, p) for a in (70.0, 75.0, 80.0) for p in (-250.0, -150.0)]
    assert grid[0] < grid[1] and grid[0] < grid[2] and grid[2] < grid[4]
    # a failed proxy leaves the accuracy; weight 0 is the supernet alone
    assert blend(75.0, math.nan) == 75.0
    assert ProxyBlend("jacov", 0.0, accs, proxies)(77.7, -290.0) == pytest.approx(77.7)
    # the proxy's place is kept in [0, 1]: far outside the reference it saturates
    assert blend(75.0, -1e9) == blend(75.0, -math.inf) == blend(75.0, -1e12)
    assert ProxyBlend.from_dict(blend.as_dict()) == blend
    with pytest.raises(NasError, match="weight"):
        ProxyBlend("jacov", 1.5, accs, proxies)


def test_reference_is_a_seeded_draw_of_distinct_archs():
    space = get_space("nb201")
    first = reference_archs(space, 40, seed=3)
    assert len({a.key for a in first}) == 40
    assert [a.key for a in first] == [a.key for a in reference_archs(space, 40, seed=3)]
    assert [a.key for a in first] != [a.key for a in reference_archs(space, 40, seed=4)]


def test_the_space_names_its_blend_proxy():
    assert blend_proxy("nb201") == "jacov"
    assert blend_proxy("nb201", "none") is None
    assert blend_proxy("nb201", "synflow") == "synflow"
    assert blend_proxy("mobile") is None


def _prepared(tiny, digits, tmp_path, **options):
    cls = SupernetEstimator
    given = {**TINY, "cache_dir": str(tmp_path), **options}
    config = {"space": tiny.name, "estimator": "supernet", "seed": 0, "threads": 1,
              "options": cls.parse_options(given).as_dict()}
    shared = {"data": digits}
    cls.prepare(config, shared)
    return cls.from_config(config, shared), shared


def test_estimator_blends_and_keeps_its_reference_beside_the_checkpoint(tiny, digits, tmp_path,
                                                                        monkeypatch):
    estimator, shared = _prepared(tiny, digits, tmp_path, blend_proxy="jacov",
                                  blend_reference=8)
    written = sorted(tmp_path.rglob("*.blend-jacov-n8-*.json"))
    assert len(written) == 1
    assert len(shared["supernet"]["blend"]["reference_acc"]) == 8
    arch = tiny.min_arch()
    metrics = estimator(arch)
    assert {"acc", "acc_supernet", "blend_jacov"} <= set(metrics)
    assert metrics["acc"] == pytest.approx(estimator.blend(metrics["acc_supernet"],
                                                           metrics["blend_jacov"]))

    fits = []
    fit = blend_module.fit_blend
    monkeypatch.setattr(blend_module, "fit_blend", lambda *a, **k: fits.append(1) or fit(*a, **k))
    again, _ = _prepared(tiny, digits, tmp_path, blend_proxy="jacov", blend_reference=8,
                         blend_weight=0.5)
    assert not fits and again.blend.weight == 0.5  # read back, the new weight applied
    assert again(arch)["acc_supernet"] == metrics["acc_supernet"]
    checkpoint = Path(shared["supernet"]["path"])
    os.utime(checkpoint, ns=(0, checkpoint.stat().st_mtime_ns + 10**9))  # trained again
    _prepared(tiny, digits, tmp_path, blend_proxy="jacov", blend_reference=8)
    assert len(fits) == 1
    written[0].write_text("{not json")
    _prepared(tiny, digits, tmp_path, blend_proxy="jacov", blend_reference=8)
    assert len(fits) == 2


def test_estimator_without_a_blend_reports_the_supernet_alone(tiny, digits, tmp_path):
    estimator, shared = _prepared(tiny, digits, tmp_path, blend_proxy="none")
    metrics = estimator(tiny.min_arch())
    assert "blend" not in shared["supernet"] and estimator.blend is None
    assert metrics["acc"] == metrics["acc_supernet"]
    assert not any(name.startswith("blend_") for name in metrics)


def test_for_space_blends_as_asked(tiny, digits, tmp_path):
    recipe = SupernetRecipe(epochs=1, train_images=64, batch_size=32, random_subnets=0)
    common = {"recipe": recipe, "cache_dir": tmp_path, "calibration_images": 32,
              "eval_images": 64}
    plain = SupernetEstimator.for_space(tiny, digits, **common)  # the tiny space names none
    assert plain.blend is None
    blended = SupernetEstimator.for_space(tiny, digits, blend="synflow", blend_reference=6,
                                          train=False, **common)
    assert blended.blend.proxy == "synflow" and len(blended.blend.reference_proxy) == 6
    assert "blend_synflow" in blended(tiny.min_arch())
