"""The supernet's weight decay: 3e-5 by default, 0 on one-shot spaces (measured on reduced
NB201 from three seeds, docs/ranking.md), settable from `nas search --option weight_decay=W`
and `nas supernet train --weight-decay W`, and applied to conv/linear weights only. The last
test carries every recipe option from both commands (`rank_loss` as well)."""
from __future__ import annotations

import json

import pytest
from tiny_space import tiny_mobile_fixtures

from estimators.supernet import SupernetEstimator, SupernetRecipe, default_recipe
from estimators.supernet.trainer import make_optimizer, supernet_for
from search_spaces import NasError, get_space

space_file, tiny, digits = tiny_mobile_fixtures("tiny-weight-decay")


def test_one_shot_spaces_train_without_weight_decay_and_elastic_ones_keep_it():
    assert get_space("nb201").supernet_style == "one-shot"
    assert default_recipe("nb201").weight_decay == 0.0
    assert default_recipe("nb201").epochs == 30
    assert get_space("mobile").supernet_style == "elastic"
    assert default_recipe("mobile").weight_decay == SupernetRecipe().weight_decay == 3e-5
    # the user's value wins over the style's default
    assert default_recipe("nb201", weight_decay=1e-4).weight_decay == 1e-4
    # weight decay is part of the recipe's text, so a changed value trains a new supernet
    assert json.loads(default_recipe("nb201").describe())["weight_decay"] == 0.0


def test_the_optimizer_decays_conv_and_linear_weights_only(tiny, digits):
    recipe = SupernetRecipe(weight_decay=1e-3)
    supernet = supernet_for(tiny, digits, recipe)
    groups = make_optimizer(supernet, recipe).param_groups
    assert [g["weight_decay"] for g in groups] == [1e-3, 0.0]
    names = {id(p): name for name, p in supernet.named_parameters()}
    assert all(p.dim() > 1 and "#T" not in names[id(p)] for p in groups[0]["params"])
    # norms and biases, and the kernel transform matrices (they start as the identity)
    assert all(p.dim() == 1 or "#T" in names[id(p)] for p in groups[1]["params"])
    assert any(p.dim() == 1 for p in groups[1]["params"])


def test_bad_values_are_one_line_nas_errors():
    for bad in (-1e-4, float("inf")):
        with pytest.raises(NasError, match="weight_decay must be >= 0"):
            SupernetRecipe(weight_decay=bad)
    with pytest.raises(NasError, match="estimator 'supernet'") as info:
        SupernetEstimator.parse_options({"weight_decay": -1})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, search_value, flag, train_value", [
    ("weight_decay", "0.0002", "--weight-decay", "0"),
    ("rank_loss", "2", "--rank-loss", "1.5"),
])
def test_recipe_options_flow_from_nas_search_and_nas_supernet_train(
        tiny, space_file, tmp_path, capsys, name, search_value, flag, train_value):
    from estimators.supernet.estimator import supernet_recipe
    from nas.cli import main
    from nas.cli.search import _parse_options

    _, options = _parse_options([f"{name}={search_value}"], "nsga2", "supernet")
    assert getattr(supernet_recipe(options, tiny), name) == float(search_value)
    assert getattr(supernet_recipe(options, "nb201"), name) == float(search_value)
    def train(value: str) -> list[str]:
        return ["supernet", "train", "--space", str(space_file), "--data", "digits", "--epochs",
                "1", "--train-images", "32", "--batch-size", "16", flag, value,
                "--cache-dir", str(tmp_path), "--json"]

    assert main(train(train_value)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["recipe"][name] == float(train_value) and summary["epochs_done"] == 1
    with pytest.raises(SystemExit) as exit_info:  # argparse's one-line error, status 2
        main(train("-1"))
    assert exit_info.value.code == 2
