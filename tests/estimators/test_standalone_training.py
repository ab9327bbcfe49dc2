"""Standalone training to a checkpoint (`estimators.standalone`, `estimators.checkpoints`) on a
tiny NAS-Bench-201 cell and scikit-learn's digits: the checkpoint format, `load_model`, exact
resume after a kill mid-epoch, augmentation and distillation. One torch thread throughout."""
from __future__ import annotations

import pytest
import torch

from estimators.checkpoints import (
    FORMAT,
    VERSION,
    CheckpointFileError,
    load_model,
    read_checkpoint,
)
from estimators.data import load_data
from estimators.standalone import (
    DistillSpec,
    check_output,
    default_augment,
    resume_training,
    train_to_checkpoint,
)
from estimators.threads import torch_threads
from estimators.train import Augment, Distill, TrainRecipe, make_optimizer
from search_spaces import NasError, get_space, register_space
from search_spaces import registry as space_registry

TINY = "name: standalone-cell\nbase: nb201\nchannels: 4\ncells: 1\nclasses: 10\nresolution: 8\n"
CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|" \
       "nor_conv_3x3~2|"
RECIPE = TrainRecipe(epochs=2, batch_size=32, train_images=192, bn_images=128,
                     label_smoothing=0.1)


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture(scope="module")
def arch(tmp_path_factory):
    path = tmp_path_factory.mktemp("spaces") / "standalone-cell.yaml"
    path.write_text(TINY)
    return get_space(str(path)).parse(CELL)


@pytest.fixture(scope="module")
def straight(arch, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "model.pt"
    with torch_threads(1):
        return train_to_checkpoint(out, digits, arch, recipe=RECIPE, seed=1)


def test_the_checkpoint_holds_everything_and_loads_weights_only(straight, arch, digits):
    payload = torch.load(straight.path, map_location="cpu", weights_only=True)
    assert (payload["format"], payload["version"]) == (FORMAT, VERSION)
    assert payload["key"] == arch.key and payload["space"]["name"] == "standalone-cell"
    assert payload["space"]["spec"]["family"] == "nb201"
    assert payload["space"]["spec"]["config"]["channels"] == 4
    assert (payload["num_classes"], payload["in_channels"], payload["resolution"]) == (10, 1, 8)
    assert payload["epochs_done"] == payload["epochs"] == 2 and payload["complete"]
    assert payload["recipe"]["train"]["label_smoothing"] == 0.1
    assert payload["recipe"]["augment"] == {"padding": 4, "flip": False}  # digits: no flips
    assert payload["data"]["name"] == "digits" and len(payload["data"]["fingerprint"]["sha256"])
    assert [row["epoch"] for row in payload["history"]] == [1, 2]
    assert all(0 <= row["val_acc"] <= 100 for row in payload["history"])
    assert 0 <= payload["test_acc"] <= 100 and 0 <= payload["val_acc"] <= 100
    assert payload["optimizer"]["state"] and isinstance(payload["rng"], torch.Tensor)
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(payload["state_dict"][name], tensor), name
    assert not list(straight.path.parent.glob("*.tmp"))  # written atomically


def test_load_model_gives_the_same_network(straight):
    model, info = load_model(straight.path)
    inputs = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(inputs), straight.model.eval()(inputs))
    assert not model.training and model.input_shape == (1, 8, 8)
    assert info["key"] == straight.arch.key and info["test_acc"] == straight.info["test_acc"]
    assert "state_dict" not in info and "optimizer" not in info


def test_a_space_file_is_rebuilt_from_the_checkpoint_alone(straight):
    space_registry._cache.pop("standalone-cell")  # as in a new process without the file
    try:
        model, info = load_model(straight.path)
        assert model.arch_key == info["key"]
        assert get_space("standalone-cell").config.channels == 4  # registered again
    finally:
        space_registry._cache["standalone-cell"] = straight.arch.search_space


def test_a_python_space_must_be_registered_to_load(straight, tmp_path):
    payload = torch.load(straight.path, weights_only=True)
    payload["space"] = {"name": "never-registered", "spec": None}
    payload["key"] = "never-registered:" + payload["key"].partition(":")[2]
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(CheckpointFileError, match="register_space"):
        load_model(tmp_path / "m.pt")


def test_resume_after_a_kill_mid_epoch_gives_the_same_weights(straight, arch, digits, tmp_path):
    out = tmp_path / "killed.pt"

    def kill(step: int, total: int, loss: float) -> None:
        if step == 8:  # epoch 2 of 6 steps each: the checkpoint holds epoch 1
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_to_checkpoint(out, digits, arch, recipe=RECIPE, seed=1, progress=kill)
    saved = read_checkpoint(out)
    assert saved["epochs_done"] == 1 and not saved["complete"] and len(saved["history"]) == 1
    resumed = resume_training(out, digits)
    assert resumed.resumed_from == 1
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in straight.info["history"]]
    assert [{k: v for k, v in row.items() if k != "seconds"}
            for row in resumed.info["history"]] == strip
    assert resumed.info["test_acc"] == straight.info["test_acc"]
    again = resume_training(out, digits)  # a finished run: returned as it is
    assert again.resumed_from == 2 and again.seconds == 0.0


def test_an_existing_out_is_refused_unless_forced(straight, tmp_path):
    with pytest.raises(NasError, match="already holds a finished training.*--force"):
        check_output(straight.path)
    assert check_output(straight.path, force=True) == straight.path
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    with pytest.raises(NasError, match="not a `nas train` checkpoint"):
        check_output(other)


def test_resume_refuses_other_data(straight, digits, tmp_path):
    payload = torch.load(straight.path, weights_only=True)
    payload.update(complete=False, epochs_done=1)
    payload["data"]["fingerprint"] = {"sha256": "other"}
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(NasError, match="data differ"):
        resume_training(tmp_path / "m.pt", digits)


def test_fine_tuning_starts_from_the_weights(straight, digits, tmp_path):
    tuned = train_to_checkpoint(tmp_path / "tuned.pt", digits, init=straight.path,
                                recipe=TrainRecipe(epochs=1, batch_size=32, train_images=64,
                                                   lr=1e-9, bn_images=0), augment=None)
    # a learning rate of 1e-9 leaves the weights where --from put them (BatchNorm's running
    # statistics move: they are not trained)
    tuned_params = dict(tuned.model.named_parameters())
    for name, tensor in straight.model.named_parameters():
        assert torch.allclose(tuned_params[name], tensor, atol=1e-6), name
    assert tuned.info["init"]["key"] == straight.arch.key
    assert tuned.info["test_acc"] == pytest.approx(straight.info["test_acc"], abs=1.0)


def test_distillation_changes_the_loss_and_weight_zero_does_not(straight, arch, digits,
                                                                tmp_path):
    plain = train_to_checkpoint(tmp_path / "plain.pt", digits, arch, recipe=RECIPE, seed=2)
    zero = train_to_checkpoint(tmp_path / "zero.pt", digits, arch, recipe=RECIPE, seed=2,
                               distill=DistillSpec(str(straight.path), weight=0.0))
    distilled = train_to_checkpoint(tmp_path / "kd.pt", digits, arch, recipe=RECIPE, seed=2,
                                    distill=DistillSpec(str(straight.path)))
    losses = [[row["loss"] for row in r.info["history"]] for r in (plain, zero, distilled)]
    assert losses[0] == losses[1] and losses[2] != losses[0]
    assert distilled.info["distill"]["teacher_key"] == arch.key
    assert distilled.info["distill"]["weight"] == 0.9
    assert distilled.info["distill"]["temperature"] == 4.0


def test_distill_loss_is_zero_kl_for_the_teacher_itself():
    teacher = torch.nn.Linear(4, 3)
    inputs = torch.randn(6, 4)
    hard = torch.tensor(1.5)
    loss = Distill(teacher, weight=0.5, temperature=3.0).loss(teacher(inputs), inputs, hard)
    assert loss.item() == pytest.approx(0.75, abs=1e-6)  # KL(p || p) = 0
    with pytest.raises(NasError, match="weight"):
        DistillSpec("t.pt", weight=1.5)
    with pytest.raises(NasError, match="temperature"):
        DistillSpec("t.pt", temperature=0.0)


def test_augmentation_is_seeded_and_keeps_shape():
    batch = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    fill = torch.tensor([-1.0])
    augment = Augment(padding=4, flip=True)
    one = augment(batch, fill, torch.Generator().manual_seed(0))
    two = augment(batch, fill, torch.Generator().manual_seed(0))
    assert torch.equal(one, two) and one.shape == batch.shape
    assert augment.pixels(28) == 4 and augment.pixels(32) == 5 and augment.pixels(8) == 1
    crops = [augment(batch, fill, torch.Generator().manual_seed(s)) for s in range(20)]
    assert any(not torch.equal(c, batch) for c in crops)
    for crop in crops:  # every value is the image's or the fill's
        assert set(crop.unique().tolist()) <= set(batch.unique().tolist()) | {-1.0}
    assert default_augment("digits").flip is False
    assert default_augment("fashion-mnist").flip is True
    assert torch.equal(Augment(padding=0, flip=False)(batch, fill, torch.Generator()), batch)


def test_registered_space_of_another_config_is_refused(straight, tmp_path):
    from search_spaces.spaces import nb201 as family

    payload = torch.load(straight.path, weights_only=True)
    payload["space"]["name"] = "standalone-other"
    payload["key"] = "standalone-other:" + payload["key"].partition(":")[2]
    torch.save(payload, tmp_path / "m.pt")
    register_space(family.create("standalone-other", {"channels": 8, "cells": 1,
                                                      "classes": 10, "resolution": 8}, False))
    with pytest.raises(CheckpointFileError, match="different space"):
        load_model(tmp_path / "m.pt")


def test_train_model_takes_augmentation_and_distillation(straight, arch, digits):
    from estimators.accuracy import build_for_data
    from estimators.train import train_model

    recipe = TrainRecipe(epochs=1, batch_size=32, train_images=64, bn_images=0)
    losses = []
    for extra in ({}, {"augment": Augment(flip=False)},
                  {"distill": Distill(straight.model, resolution=8)}):
        model = build_for_data(arch, digits, 0, 8)
        losses.append(train_model(model, digits, recipe, seed=0, resolution=8, **extra)
                      .train_loss)
    assert len(set(losses)) == 3


@pytest.mark.parametrize("name", ["mobile", "mobilenetv2", "fbnet", "nb201", "resnet",
                                  "densenet", "vit", "vit-hybrid", "resnet-sparse"])
def test_every_family_space_has_a_spec_that_rebuilds_it(name):
    from search_spaces.registry import FAMILIES, space_from_spec, space_spec

    space = get_space(name)
    spec = space_spec(space)
    assert spec is not None and spec["family"] in FAMILIES
    assert space_from_spec(name, spec) is space  # a built-in space: by name
    rebuilt = space_registry._family(spec["family"]).create("x", spec["config"], spec["sparse"])
    assert rebuilt.config == space.config and rebuilt.dimensions == space.dimensions


def test_recipe_optimizers_and_their_description():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    sgd = make_optimizer(model, TrainRecipe())
    adamw = make_optimizer(model, TrainRecipe(optimizer="adamw", lr=1e-3, weight_decay=0.05))
    assert isinstance(sgd, torch.optim.SGD) and isinstance(adamw, torch.optim.AdamW)
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.05, 0.0]  # weights only
    # SGD recipes keep the description (and cache keys) they had before the field existed
    assert "optimizer" not in TrainRecipe().describe()
    assert "optimizer=adamw" in TrainRecipe(optimizer="adamw").describe()
    with pytest.raises(NasError, match="optimizer must be one of sgd, adamw"):
        TrainRecipe(optimizer="adam")
    with pytest.raises(NasError, match="weight decay"):
        TrainRecipe(weight_decay=-1.0)


def test_clip_norm_caps_every_update_and_keeps_old_descriptions(arch, digits):
    from estimators.accuracy import build_for_data
    from estimators.train import train_epoch

    assert "clip_norm" not in TrainRecipe().describe()  # recipes (and cache keys) as before
    assert "clip_norm=2.0" in TrainRecipe(clip_norm=2.0).describe()
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(NasError, match="clip_norm"):
            TrainRecipe(clip_norm=bad)
    moves = {}
    for cap in (None, 1e-4):
        recipe = TrainRecipe(epochs=1, batch_size=32, train_images=32, weight_decay=0.0,
                             warmup=0.0, clip_norm=cap)
        model = build_for_data(arch, digits, 0, 8)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        train_epoch(model, make_optimizer(model, recipe), digits, recipe, seed=0, epoch=0,
                    step=0, total_steps=1, resolution=8)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        moves[cap] = float((after - before).norm())
    # one Nesterov step moves the weights by lr * (1 + momentum) * the (capped) gradient
    assert moves[1e-4] <= 0.1 * 1.9 * 1e-4 * 1.001 < moves[None]
