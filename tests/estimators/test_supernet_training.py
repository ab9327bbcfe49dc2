"""Supernet training on a tiny space and scikit-learn's digits: checkpoints, cache, resume,
the `supernet` estimator, the CLI and (on a real local Ray) data-parallel training."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from tiny_space import tiny_mobile_fixtures

from estimators.batchnorm import fold_batchnorm, recalibrate_batchnorm
from estimators.supernet import SupernetEstimator, SupernetRecipe, load_trained, train_supernet
from search_spaces import NasError, load_space_file, register_space

RECIPE = SupernetRecipe(epochs=2, train_images=96, batch_size=32, random_subnets=1, lr=0.05)


space_file, tiny, digits = tiny_mobile_fixtures("tiny-mobile")


@pytest.fixture(scope="module")
def trained(tiny, digits, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return train_supernet(tiny, digits, RECIPE, quiet=True, cache_dir=cache), cache


def test_training_writes_a_weights_only_checkpoint_per_epoch(trained):
    result, cache = trained
    assert result.epochs_done == 2 and not result.reused and len(result.history) == 2
    assert result.path.parent == Path(cache) / "supernets"
    payload = torch.load(result.path, map_location="cpu", weights_only=True)
    assert payload["complete"] and payload["epochs_done"] == 2
    assert payload["recipe"] == RECIPE.as_dict()
    state = result.supernet.state_dict()
    assert set(payload["supernet"]) == set(state)
    for name, tensor in payload["supernet"].items():
        assert torch.equal(tensor, state[name])
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)
    assert not list(result.path.parent.glob("*.tmp"))  # atomic writes leave no temp files


def test_cache_reuses_by_space_data_and_recipe(trained, tiny, digits):
    result, cache = trained
    again = train_supernet(tiny, digits, RECIPE, quiet=True, cache_dir=cache)
    assert again.reused and again.path == result.path and again.seconds == 0.0
    for (name, a), b in zip(again.supernet.state_dict().items(),
                            result.supernet.state_dict().values()):
        assert torch.equal(a, b), name
    other = SupernetRecipe(**{**RECIPE.as_dict(), "seed": 1})
    assert load_trained(tiny, digits, other, cache) is None  # another recipe, another key


def test_env_var_names_the_cache(tiny, digits, tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    recipe = SupernetRecipe(epochs=1, train_images=32, batch_size=32, random_subnets=0)
    result = train_supernet(tiny, digits, recipe, quiet=True)
    assert result.path.parent == tmp_path / "supernets"


class Interrupt(Exception):
    pass


def test_resume_continues_where_an_interrupted_run_stopped(tiny, digits, trained, tmp_path):
    straight, _ = trained
    steps = RECIPE.steps_per_epoch(len(digits.train))

    def stop_in_epoch_two(step: int, total: int, loss: float) -> None:
        if step > steps:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_supernet(tiny, digits, RECIPE, cache_dir=tmp_path, progress=stop_in_epoch_two)
    payload = torch.load(tmp_path / "supernets" / straight.path.name, weights_only=True)
    assert payload["epochs_done"] == 1 and not payload["complete"]
    resumed = train_supernet(tiny, digits, RECIPE, cache_dir=tmp_path, resume=True, quiet=True)
    assert resumed.resumed_from == 1 and resumed.epochs_done == 2
    for (name, a), b in zip(resumed.supernet.state_dict().items(),
                            straight.supernet.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_supernet_estimator_recalibrates_and_scores(trained, digits, tiny):
    result, _ = trained
    estimator = SupernetEstimator(result, digits, calibration_images=64, eval_images=None)
    arch = tiny.max_arch()
    metrics = estimator(arch)
    assert metrics["acc_estimator"] == "supernet"
    assert 0.0 <= metrics["acc"] <= 100.0 and metrics["eval_images"] == len(digits.val)
    fresh = SupernetEstimator(result, digits, calibration_images=64, eval_images=None)
    assert fresh(arch)["acc"] == metrics["acc"]  # deterministic
    model = estimator.extract(arch)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stem_conv = model[0][0]
    with torch.no_grad():
        features = stem_conv(estimator.calibration)
    torch.testing.assert_close(first.running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-4,
                               atol=1e-5)


def test_recalibration_replaces_running_statistics():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.Dropout(0.5))
    model[1].running_mean.fill_(7.0)
    images = torch.randn(10, 1, 6, 6)
    recalibrate_batchnorm(model, images)
    with torch.no_grad():
        out = model[0](images)
    torch.testing.assert_close(model[1].running_mean, out.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(model[1].running_var, out.var(dim=(0, 2, 3)), rtol=1e-4,
                               atol=1e-5)
    assert not model.training and model[1].momentum == 0.1
    recalibrate_batchnorm(model, images, batch_size=3)  # 3 + 3 + 3 + 1 images
    torch.testing.assert_close(model[1].running_mean, out.mean(dim=(0, 2, 3)))


def test_folding_batchnorm_keeps_the_outputs(trained, tiny, digits):
    result, _ = trained
    model = SupernetEstimator(result, digits, calibration_images=64).extract(tiny.max_arch())
    x = digits.sample_batch(16, seed=3, split="val")[0]
    with torch.no_grad():
        before = model(x)
        assert fold_batchnorm(model) > 0
        after = model(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_a_network_that_cannot_run_at_the_data_resolution_says_how(digits, tmp_path):
    path = tmp_path / "tiny-vit.yaml"
    path.write_text("name: tiny-vit\nbase: vit\npatches: [4]\nwidths: [16]\ndepths: [1, 2]\n"
                    "heads: [2]\nmlp_ratios: [2]\nresolutions: [16]\n")
    space = register_space(load_space_file(path))
    with pytest.raises(NasError, match="resolution"):
        train_supernet(space, digits, RECIPE, quiet=True, cache_dir=tmp_path)
    recipe = SupernetRecipe(**{**RECIPE.as_dict(), "epochs": 1, "resolution": "arch"})
    result = train_supernet(space, digits, recipe, quiet=True, cache_dir=tmp_path)
    assert 0 <= SupernetEstimator(result, digits, calibration_images=32)(space.max_arch())[
        "acc"] <= 100


def test_recipe_mistakes_are_nas_errors():
    for bad in ({"epochs": 0}, {"batch_size": 1}, {"train_images": 8, "batch_size": 16},
                {"resolution": "big"}, {"distill": 2.0}):
        with pytest.raises(NasError):
            SupernetRecipe(**bad)


def test_cli_trains_then_reuses(space_file, tmp_path, capsys):
    from nas.cli import main

    argv = ["supernet", "train", "--space", str(space_file), "--data", "digits", "--epochs",
            "1", "--train-images", "64", "--batch-size", "32", "--random-subnets", "1",
            "--cache-dir", str(tmp_path), "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["epochs_done"] == 1 and not first["reused"]
    assert Path(first["path"]).is_file()
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["reused"]
    assert main(argv[:-1] + ["--quiet"]) == 0
    assert "reused from the cache" in capsys.readouterr().out


def test_nas_evaluate_scores_with_the_cached_supernet(space_file, tiny, digits, tmp_path,
                                                      capsys):
    from nas.cli import main

    # a 10% training split keeps the default recipe's epochs to two steps each
    data = ["--data", "digits", "--val-fraction", "0.9", "--cache-dir", str(tmp_path)]
    argv = ["evaluate", "--space", str(space_file), "--arch", tiny.min_arch().key,
            "--estimator", "supernet", *data, "--json"]
    assert main(argv) == 2  # nothing trained yet: says how to train it
    assert "nas supernet train" in capsys.readouterr().err
    assert main(["supernet", "train", "--space", str(space_file), *data, "--quiet"]) == 0
    capsys.readouterr()
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["acc_estimator"] == "supernet" and 0 <= payload["acc"] <= 100


def test_cli_mistakes_exit_2(space_file, tmp_path, capsys):
    from nas.cli import main

    assert main(["supernet", "train", "--space", "nope", "--data", "digits",
                 "--cache-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: unknown space")
    with pytest.raises(SystemExit) as info:
        main(["supernet", "train", "--space", str(space_file), "--workers", "0"])
    assert info.value.code == 2


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray with 2 CPUs for the session (never `ray stop`)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    started = not ray.is_initialized()
    if started:
        from estimators.ray_local import start_local_ray

        start_local_ray(num_cpus=2, log_to_driver=False, logging_level="ERROR")  # loopback only
    yield ray
    if started:
        ray.shutdown()


def test_data_parallel_training_on_ray(ray_session, tiny, digits, tmp_path):
    recipe = SupernetRecipe(epochs=1, train_images=64, batch_size=32, random_subnets=1)
    result = train_supernet(tiny, digits, recipe, workers=2, quiet=True, cache_dir=tmp_path)
    assert result.epochs_done == 1 and len(result.history) == 1
    payload = torch.load(result.path, weights_only=True)
    assert payload["complete"]
    for name, tensor in payload["supernet"].items():
        assert torch.equal(tensor, result.supernet.state_dict()[name])
    # the same subnets and data as one process: the weights moved the same way, up to the
    # per-worker BatchNorm statistics of the half batches
    single = train_supernet(tiny, digits, recipe, quiet=True, cache_dir=tmp_path / "one")
    moved = [(a - b).abs().max().item() for a, b in
             zip(result.supernet.parameters(), single.supernet.parameters())]
    assert max(moved) < 1.0


def test_sampling_rules_pick_the_documented_subnets(tiny):
    """auto: sandwich (largest first, distilling) on elastic supernets, fair on one-shot ones;
    fair: every option of every gene exactly once across the step's subnets."""
    import numpy as np

    from estimators.supernet.trainer import fair_archs, sampling_rule, step_archs
    from search_spaces import get_space
    from search_spaces.supernets import build_supernet

    nb201 = get_space("nb201")
    archs = fair_archs(nb201, np.random.default_rng(3))
    assert len(archs) == 5
    for dim in nb201.dimensions:
        assert sorted(a[dim.name] for a in archs) == sorted(dim.options)
    assert sampling_rule(build_supernet(nb201), SupernetRecipe()) == "fair"
    elastic = build_supernet(tiny, num_classes=10, in_channels=1)
    assert sampling_rule(elastic, RECIPE) == "sandwich"
    chosen, distill = step_archs(elastic, RECIPE, 0, 0)
    assert distill and chosen[0] == tiny.max_arch() and chosen[1] == tiny.min_arch()
    uniform = SupernetRecipe(sampling="uniform", random_subnets=1)
    chosen, distill = step_archs(elastic, uniform, 0, 0)
    assert not distill and len(chosen) == 3
    assert step_archs(elastic, uniform, 0, 0)[0] == chosen  # seeded by (seed, epoch, step)
    with pytest.raises(NasError, match="sampling must be one of"):
        SupernetRecipe(sampling="random")
