"""Damaged supernet caches and checkpoints: empty, garbage or foreign `.pt` files are one-line
errors, or (when the cache is only being reused) one warning line before training again."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from tiny_space import tiny_mobile_fixtures

from estimators.data import load_data
from estimators.supernet import SupernetRecipe, load_trained, locate, train_supernet
from estimators.supernet.cache import FORMAT, CheckpointError, SupernetCacheWarning, load_checkpoint
from nas.cli import main

RECIPE = SupernetRecipe(epochs=1, train_images=64, batch_size=32, random_subnets=1, lr=0.05)
CLI_RECIPE = ["--epochs", "1", "--train-images", "64", "--batch-size", "32",
              "--random-subnets", "1"]


space_file, tiny, digits = tiny_mobile_fixtures("tiny-cache")


def _damage(path, how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(bytes(range(256)) * 3)
    elif how == "text":
        path.write_text("hello\n")
    elif how == "list":
        torch.save([1, 2, 3], path)
    elif how == "no-weights":
        torch.save({"format": FORMAT, "key": None, "epochs_done": 1, "history": []}, path)


@pytest.mark.parametrize("how", ["empty", "garbage", "text", "list", "no-weights"])
def test_unreadable_checkpoints_are_one_line_errors(tmp_path, how):
    path = tmp_path / "x.pt"
    _damage(path, how)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_damaged_cache_warns_once_and_trains_again(tiny, digits, tmp_path):
    key, path = locate(tiny, digits, RECIPE, tmp_path)
    _damage(path, "empty")
    with pytest.raises(CheckpointError, match="--retrain") as info:
        load_trained(tiny, digits, RECIPE, tmp_path)  # was None: "nothing cached"
    assert "\n" not in str(info.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_supernet(tiny, digits, RECIPE, quiet=True, cache_dir=tmp_path)
    ours = [w for w in caught if issubclass(w.category, SupernetCacheWarning)]
    assert len(ours) == 1 and "\n" not in str(ours[0].message)
    assert "damaged" in str(ours[0].message) and str(path) in str(ours[0].message)
    assert not result.reused and result.epochs_done == 1
    assert load_trained(tiny, digits, RECIPE, tmp_path) is not None  # rewritten whole


def _foreign_shapes(path, key) -> None:
    """The checkpoint at `path`, with every weight of a wrong shape (another space's)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["supernet"] = {k: torch.zeros(3, 3, 3) if v.dim() else v
                           for k, v in payload["supernet"].items()}
    payload["key"] = key
    torch.save(payload, path)


def test_weights_of_another_shape_are_one_line_errors(tiny, digits, tmp_path):
    key, path = locate(tiny, digits, RECIPE, tmp_path)
    train_supernet(tiny, digits, RECIPE, quiet=True, cache_dir=tmp_path)
    _foreign_shapes(path, key)
    with pytest.raises(CheckpointError) as info:
        load_trained(tiny, digits, RECIPE, tmp_path)
    assert "\n" not in str(info.value) and "do not fit" in str(info.value)
    # resuming such a checkpoint (not yet complete) is an error, not a retraining
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["complete"] = False
    recipe = SupernetRecipe(epochs=2, train_images=64, batch_size=32, random_subnets=1,
                            lr=0.05)
    key2, path2 = locate(tiny, digits, recipe, tmp_path)
    payload["key"] = key2
    torch.save(payload, path2)
    with pytest.raises(CheckpointError) as info:
        train_supernet(tiny, digits, recipe, quiet=True, cache_dir=tmp_path, resume=True)
    assert "\n" not in str(info.value) and "do not fit" in str(info.value)
    # reusing it warns and trains again
    with pytest.warns(SupernetCacheWarning, match="do not fit"):
        again = train_supernet(tiny, digits, RECIPE, quiet=True, cache_dir=tmp_path)
    assert not again.reused


def test_cli_says_so_in_one_warning_line(space_file, tiny, digits, tmp_path, capsys):
    _, path = locate(tiny, digits, RECIPE, tmp_path)
    _damage(path, "garbage")
    argv = ["supernet", "train", "--space", str(space_file), "--data", "digits", *CLI_RECIPE,
            "--cache-dir", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len([line for line in lines if line.startswith("warning: ")]) == 1, err
    assert "damaged" in err and "Traceback" not in err and "warnings.warn" not in err


def test_nas_evaluate_on_a_damaged_cache_is_one_error_line(space_file, tiny, digits, tmp_path,
                                                             capsys):
    data = ["--data", "digits", "--val-fraction", "0.9", "--cache-dir", str(tmp_path)]
    default_recipe = SupernetRecipe()
    split = load_data("digits", val_fraction=0.9)
    _, path = locate(tiny, split, default_recipe, tmp_path)
    _damage(path, "empty")
    code = main(["evaluate", "--space", str(space_file), "--arch", tiny.min_arch().key,
                 "--estimator", "supernet", *data])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "--retrain" in err


@pytest.mark.parametrize("argv", [
    ["supernet", "train", "--space", "mobile", "--threads", "0"],
    ["supernet", "train", "--space", "mobile", "--batch-size", "0"],
    ["evaluate", "--space", "mobile", "--ref", "ofa_smallest", "--estimator", "proxy",
     "--batch-size", "0"],  # was silently replaced by 64
    ["evaluate", "--space", "mobile", "--ref", "ofa_smallest", "--estimator", "train",
     "--batch-size", "-5"],
])
def test_zero_counts_are_refused(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_json_output_is_unaffected_by_the_warning(space_file, tiny, digits, tmp_path, capsys):
    _, path = locate(tiny, digits, RECIPE, tmp_path)
    _damage(path, "text")
    assert main(["supernet", "train", "--space", str(space_file), "--data", "digits",
                 *CLI_RECIPE, "--cache-dir", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    assert not json.loads(captured.out)["reused"] and "warning: " in captured.err


def test_recipes_refuse_non_finite_numbers():
    import math

    from estimators.train import TrainRecipe
    from search_spaces import NasError

    for bad in ({"epochs": math.inf}, {"lr": math.inf}, {"lr": math.nan}):
        with pytest.raises(NasError):
            TrainRecipe(**bad)
    for bad in ({"lr": math.inf}, {"temperature": math.inf}):
        with pytest.raises(NasError):
            SupernetRecipe(**bad)


def test_supernet_lr_zero_is_refused_not_replaced(space_file, tmp_path, capsys):
    code = main(["supernet", "train", "--space", str(space_file), "--data", "digits",
                 *CLI_RECIPE, "--lr", "0", "--cache-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "lr must be positive" in err and err.count("\n") == 1
