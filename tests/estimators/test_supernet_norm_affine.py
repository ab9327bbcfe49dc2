"""BatchNorm without affine parameters in the supernet (`SupernetRecipe.norm_affine=False`,
as DARTS's and NAS-Bench-201's own supernets): every BatchNorm's scale and shift are held at 1
and 0 through training, the rest trains as before, and extracted subnets carry the held
values. On by default, so cached supernets keep their keys."""
from __future__ import annotations

import json

import pytest
import torch
from tiny_space import tiny_mobile_fixtures

from estimators.supernet import SupernetEstimator, SupernetRecipe
from estimators.supernet.trainer import SandwichTrainer, hold_norm_affine, supernet_for
from search_spaces import NasError

BASE = {"epochs": 1, "train_images": 32, "batch_size": 16, "sampling": "uniform"}

space_file, tiny, digits = tiny_mobile_fixtures("tiny-norm-affine")


def norm_names(supernet) -> set[str]:
    means = {n[:-len("running_mean")] for n, _ in supernet.named_buffers()
             if n.endswith("running_mean")}
    return {n for n, _ in supernet.named_parameters()
            if any(n == m + leaf for m in means for leaf in ("weight", "bias"))}


def train_one_epoch(tiny, digits, **changes) -> SandwichTrainer:
    recipe = SupernetRecipe(**{**BASE, **changes})
    supernet = supernet_for(tiny, digits, recipe)
    with torch.no_grad():  # off the defaults, so holding them is seen to reset them
        for name, param in supernet.named_parameters():
            if name in norm_names(supernet):
                param.add_(0.25)
    trainer = SandwichTrainer(supernet, digits, recipe)
    trainer.run_epoch(0)
    return trainer


def test_held_norms_stay_at_one_and_zero_while_the_rest_trains(tiny, digits):
    trainer = train_one_epoch(tiny, digits, norm_affine=False)
    supernet, held = trainer.supernet, norm_names(trainer.supernet)
    assert held and hold_norm_affine(supernet) == len(held)
    for name, param in supernet.named_parameters():
        if name in held:
            assert not param.requires_grad
            assert torch.all(param == (1.0 if name.endswith("weight") else 0.0)), name
    trained = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for n, p in supernet.named_parameters() if n not in held}
    # a subnet taken out of the supernet carries BatchNorms with scale 1 and shift 0
    model = supernet.extract(supernet.max_arch())
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)


def test_by_default_norms_train(tiny, digits):
    trainer = train_one_epoch(tiny, digits)
    supernet = trainer.supernet
    params = dict(supernet.named_parameters())
    assert all(params[n].requires_grad for n in norm_names(supernet))
    assert any(not torch.all(params[n] == (1.0 if n.endswith("weight") else 0.0))
               for n in norm_names(supernet))


def test_default_keeps_the_cache_key_and_bad_values_are_one_line_errors():
    assert SupernetRecipe().norm_affine is True
    assert "norm_affine" not in json.loads(SupernetRecipe().describe())
    assert json.loads(SupernetRecipe(norm_affine=False).describe())["norm_affine"] is False
    with pytest.raises(NasError, match="norm_affine must be true or false"):
        SupernetRecipe(norm_affine="no")  # type: ignore[arg-type]
    with pytest.raises(NasError, match="estimator 'supernet'") as info:
        SupernetEstimator.parse_options({"norm_affine": 0})
    assert "\n" not in str(info.value)


def test_the_option_flows_from_nas_search_and_nas_supernet_train(
        tiny, space_file, tmp_path, capsys):
    from estimators.supernet.estimator import supernet_recipe
    from nas.cli import main
    from nas.cli.search import _parse_options

    _, options = _parse_options(["norm_affine=false"], "nsga2", "supernet")
    assert supernet_recipe(options, tiny).norm_affine is False
    assert supernet_recipe({}, "nb201").norm_affine is True
    assert main(["supernet", "train", "--space", str(space_file), "--data", "digits",
                 "--epochs", "1", "--train-images", "32", "--batch-size", "16",
                 "--no-norm-affine", "--cache-dir", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["recipe"]["norm_affine"] is False and summary["epochs_done"] == 1
