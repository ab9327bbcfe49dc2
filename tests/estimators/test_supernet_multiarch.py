"""Multi-architectural sampling (`SupernetRecipe.subnets_per_pass`, ViT-ResNAS): the step's
subnets in groups of K, each group one backward with every subnet on its own contiguous slice
of the batch. K = 1 is the sequential step, bit for bit; the option flows from `nas supernet
train` and from the `supernet` estimator's options (`nas search --option`) into the recipe."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from tiny_space import tiny_mobile_fixtures

from estimators.supernet import SupernetEstimator, SupernetRecipe, train_supernet
from estimators.supernet.trainer import (
    SandwichTrainer,
    batch_slices,
    input_size,
    step_archs,
    supernet_for,
)
from estimators.train import resize_batch
from search_spaces import NasError

BASE = {"epochs": 1, "train_images": 32, "batch_size": 16, "random_subnets": 2, "lr": 0.05}


space_file, tiny, digits = tiny_mobile_fixtures("tiny-multiarch")


def make_trainer(tiny, digits, rank: int = 0, world: int = 1, **changes) -> SandwichTrainer:
    recipe = SupernetRecipe(**{**BASE, **changes})
    return SandwichTrainer(supernet_for(tiny, digits, recipe), digits, recipe, rank, world)


def batch(digits, size: int = 16):
    index = torch.arange(size)
    return digits.normalize(digits.train.images[index]), digits.train.labels[index]


def sequential_step(trainer: SandwichTrainer, inputs, labels, archs, distill: bool) -> float:
    """The step before subnets_per_pass existed: every subnet on the whole batch, one backward
    each, the first one's predictions teaching the others with `distill`."""
    recipe = trainer.recipe
    trainer.optimizer.zero_grad(set_to_none=True)
    teacher, first = None, 0.0
    for arch in archs:
        size = input_size(trainer.supernet, trainer.data, recipe, arch)
        logits = trainer.supernet(resize_batch(inputs, size), arch)
        hard = F.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)
        if teacher is None or not distill:
            loss = hard
            if teacher is None:
                teacher = F.softmax(logits.detach() / recipe.temperature, dim=1)
                first = float(loss.detach())
        else:
            soft = -(teacher * F.log_softmax(logits / recipe.temperature, dim=1)).sum(
                dim=1).mean() * recipe.temperature ** 2
            loss = recipe.distill * soft + (1 - recipe.distill) * hard
        loss.backward()
    trainer.optimizer.step()
    return first


def weights(trainer: SandwichTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.supernet.state_dict().items()}


def record_forwards(trainer: SandwichTrainer, monkeypatch) -> list[tuple]:
    """Patch the supernet's forward to record (arch, input) of every call."""
    calls: list[tuple] = []
    original = trainer.supernet.forward

    def forward(x, arch):
        calls.append((arch, x.detach().clone()))
        return original(x, arch)

    monkeypatch.setattr(trainer.supernet, "forward", forward)
    return calls


def count_backwards(monkeypatch) -> list[int]:
    count = [0]
    original = torch.autograd.backward

    def backward(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "backward", backward)
    return count


@pytest.mark.parametrize("sampling", ["sandwich", "uniform"])
def test_one_subnet_per_pass_is_the_sequential_step_bit_for_bit(tiny, digits, sampling):
    inputs, labels = batch(digits)
    steps = []
    for step in range(2):  # two steps: momentum buffers and distillation both matter
        steps.append(step_archs(make_trainer(tiny, digits, sampling=sampling).supernet,
                                SupernetRecipe(**BASE, sampling=sampling), 0, step))
    new, old = (make_trainer(tiny, digits, sampling=sampling) for _ in range(2))
    assert new.recipe.subnets_per_pass == 1
    for archs, distill in steps:
        torch.manual_seed(5)
        got = new.train_step(inputs, labels, archs, distill)
        torch.manual_seed(5)
        want = sequential_step(old, inputs, labels, archs, distill)
        assert got == want
    assert distill == (sampling == "sandwich")
    a, b = weights(new), weights(old)
    start = weights(make_trainer(tiny, digits, sampling=sampling))
    assert any(not torch.equal(a[k], start[k]) for k in a)  # the steps did train
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("per_pass", [2, 4])
def test_grouped_passes_slice_the_batch_and_train(tiny, digits, per_pass, monkeypatch):
    """Sandwich with 2 random subnets: 4 subnets per step; K=2 is two passes, K=4 one."""
    trainer = make_trainer(tiny, digits, sampling="sandwich", subnets_per_pass=per_pass)
    archs, distill = step_archs(trainer.supernet, trainer.recipe, 0, 0)
    assert len(archs) == 4 and distill
    inputs, labels = batch(digits, 14)  # 14 images: slices of 7/7, or 4/4/3/3
    before = weights(trainer)
    calls = record_forwards(trainer, monkeypatch)
    backwards = count_backwards(monkeypatch)
    loss = trainer.train_step(inputs, labels, archs, distill)
    assert torch.isfinite(torch.tensor(loss))
    assert backwards[0] == 4 // per_pass
    assert [arch for arch, _ in calls] == archs
    expected = batch_slices(14, per_pass) * (4 // per_pass)
    for (_, seen), (low, high) in zip(calls, expected):
        assert torch.equal(seen, inputs[low:high])  # its own slice, nothing else
    after = weights(trainer)
    assert any(not torch.equal(after[k], before[k]) for k in after)
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())


def test_group_loss_is_the_slice_weighted_mean_of_label_losses(tiny, digits, monkeypatch):
    """K > 1: no distillation (the largest subnet's predictions cover its slice only); the
    gradient is that of sum_i n_i/n * CE(subnet i on slice i)."""
    trainer = make_trainer(tiny, digits, sampling="sandwich", subnets_per_pass=3,
                           random_subnets=1)
    archs, distill = step_archs(trainer.supernet, trainer.recipe, 0, 0)
    inputs, labels = batch(digits, 10)  # slices 4, 3, 3
    monkeypatch.setattr(trainer.optimizer, "step", lambda: None)
    torch.manual_seed(1)
    trainer.train_step(inputs, labels, archs, distill)
    got = {n: p.grad.clone() for n, p in trainer.supernet.named_parameters()
           if p.grad is not None}
    trainer.optimizer.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    total = 0.0
    for arch, (low, high) in zip(archs, batch_slices(10, 3)):
        logits = trainer.supernet(inputs[low:high], arch)
        total = total + (high - low) / 10 * F.cross_entropy(
            logits, labels[low:high], label_smoothing=trainer.recipe.label_smoothing)
    total.backward()
    want = {n: p.grad for n, p in trainer.supernet.named_parameters() if p.grad is not None}
    assert set(got) == set(want)
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7, msg=name)


def test_a_short_last_group_splits_the_batch_among_its_own_subnets(tiny, digits, monkeypatch):
    trainer = make_trainer(tiny, digits, sampling="uniform", random_subnets=3,
                           subnets_per_pass=3)  # 5 subnets: a pass of 3, then one of 2
    archs, _ = step_archs(trainer.supernet, trainer.recipe, 0, 0)
    calls = record_forwards(trainer, monkeypatch)
    backwards = count_backwards(monkeypatch)
    trainer.train_step(*batch(digits, 12), archs, False)
    assert backwards[0] == 2
    assert [seen.shape[0] for _, seen in calls] == [4, 4, 4, 6, 6]


def test_each_slice_runs_at_its_subnets_own_resolution(tiny, digits, monkeypatch):
    trainer = make_trainer(tiny, digits, sampling="sandwich", subnets_per_pass=4,
                           resolution="arch")
    archs, distill = step_archs(trainer.supernet, trainer.recipe, 0, 0)
    calls = record_forwards(trainer, monkeypatch)
    trainer.train_step(*batch(digits, 8), archs, distill)
    assert [tuple(seen.shape[::2]) for _, seen in calls] == [
        (2, tiny.input_size(arch)) for arch in archs]
    assert {tiny.input_size(arch) for arch in archs[:2]} == {32, 64}  # largest and smallest


def test_each_worker_slices_its_own_share(tiny, digits, monkeypatch):
    """Data-parallel: a worker's share of the batch is what its passes split (the gradient
    all-reduce needs a process group and is tested on Ray in test_supernet_training)."""
    trainer = make_trainer(tiny, digits, rank=1, world=2, sampling="sandwich",
                           subnets_per_pass=2, random_subnets=0)
    monkeypatch.setattr(trainer, "_average_gradients", lambda: None)
    share = trainer.batch_indices(0)[0]
    assert len(share) == 8
    index = torch.from_numpy(share)
    inputs = digits.normalize(digits.train.images[index])
    calls = record_forwards(trainer, monkeypatch)
    archs, distill = step_archs(trainer.supernet, trainer.recipe, 0, 0)
    trainer.train_step(inputs, digits.train.labels[index], archs, distill)
    assert [seen.shape[0] for _, seen in calls] == [4, 4]
    assert torch.equal(calls[1][1], inputs[4:])


def test_bad_values_are_one_line_nas_errors(tiny, digits, tmp_path):
    for bad in (0, -1, 1.5, True, "2", None):
        with pytest.raises(NasError, match="subnets_per_pass must be a whole number") as info:
            SupernetRecipe(subnets_per_pass=bad)
        assert "\n" not in str(info.value)
    with pytest.raises(NasError, match="batch size 6 is too small for 4 subnets per pass"):
        SupernetRecipe(batch_size=6, train_images=64, subnets_per_pass=4)
    SupernetRecipe(batch_size=8, train_images=64, subnets_per_pass=4)  # 2 images each
    for options in ({"subnets_per_pass": 0}, {"subnets_per_pass": 2.0},
                    {"subnets_per_pass": 5, "batch_size": 8}):
        with pytest.raises(NasError, match="estimator 'supernet'") as info:
            SupernetEstimator.parse_options(options)
        assert "\n" not in str(info.value)
    with pytest.raises(NasError, match="too small for 2 workers and 5 subnets per pass"):
        train_supernet(tiny, digits, SupernetRecipe(**{**BASE, "subnets_per_pass": 5}),
                       workers=2, quiet=True, reuse=False, cache_dir=tmp_path)


def test_the_default_keeps_the_cache_key_and_another_value_changes_it():
    """Caches written before subnets_per_pass existed keep their key: the default is left
    out of describe() (this text is the recipe part of every existing cache key)."""
    assert SupernetRecipe().describe() == (
        '{"batch_size": 64, "distill": 1.0, "epochs": 5, "kernel_transform": true, '
        '"label_smoothing": 0.1, "lr": 0.05, "momentum": 0.9, "random_subnets": 2, '
        '"resolution": null, "sampling": "auto", "seed": 0, "temperature": 1.0, '
        '"train_images": 8000, "warmup": 0.05, "weight_decay": 3e-05}')
    two = SupernetRecipe(subnets_per_pass=2)
    assert json.loads(two.describe())["subnets_per_pass"] == 2
    assert two.as_dict()["subnets_per_pass"] == 2 and SupernetRecipe().as_dict()[
        "subnets_per_pass"] == 1


def test_the_option_flows_from_nas_search_and_the_estimator_into_the_recipe(tiny):
    from estimators.supernet.estimator import RECIPE_OPTIONS, supernet_recipe
    from nas.cli.search import _parse_options
    from nas.evaluation import evaluation_config

    assert "subnets_per_pass" in RECIPE_OPTIONS
    _, options = _parse_options(["subnets_per_pass=3"], "nsga2", "supernet")
    assert options == {"subnets_per_pass": 3}
    config = evaluation_config(tiny.name, "supernet", options)
    assert config["options"]["subnets_per_pass"] == 3
    assert supernet_recipe(config["options"], tiny).subnets_per_pass == 3
    assert supernet_recipe({}, tiny).subnets_per_pass == 1
    with pytest.raises(NasError, match="subnets_per_pass"):
        evaluation_config(tiny.name, "supernet", {"subnets_per_pass": 0})


def test_nas_supernet_train_has_a_flag_per_recipe_option(space_file, tmp_path, capsys):
    from estimators.supernet.estimator import RECIPE_OPTIONS
    from nas.cli import build_parser, main

    parsed = vars(build_parser().parse_args(["supernet", "train", "--space", "x"]))
    assert set(RECIPE_OPTIONS) <= set(parsed)
    def argv(batch: str, per_pass: str) -> list[str]:
        return ["supernet", "train", "--space", str(space_file), "--data", "digits", "--epochs",
                "1", "--train-images", "32", "--batch-size", batch, "--random-subnets", "1",
                "--subnets-per-pass", per_pass, "--cache-dir", str(tmp_path), "--json"]

    assert main(argv("16", "3")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["recipe"]["subnets_per_pass"] == 3 and summary["epochs_done"] == 1
    with pytest.raises(SystemExit) as info:
        main(argv("16", "0"))
    assert info.value.code == 2 and "--subnets-per-pass" in capsys.readouterr().err
    assert main(argv("4", "3")) == 2
    assert "too small for 3 subnets per pass" in capsys.readouterr().err
