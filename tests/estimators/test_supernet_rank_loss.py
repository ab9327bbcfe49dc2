"""Ranking distillation with FLOPs as the prior (`SupernetRecipe.rank_loss`, RD-NAS): each
step's subnets with more FLOPs are trained toward a loss no higher than those with fewer. The
step's gradient is that of the subnets' summed losses plus `rank_loss` times the mean hinge
over the pairs whose FLOPs differ; off, the step is unchanged."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_space import tiny_mobile_fixtures

import estimators.supernet.trainer as trainer_module
from estimators.supernet import SupernetEstimator, SupernetRecipe
from estimators.supernet.trainer import SandwichTrainer, supernet_for
from search_spaces import NasError
from search_spaces.ops import Cost

BASE = {"epochs": 1, "train_images": 32, "batch_size": 16, "lr": 0.05, "sampling": "uniform"}

space_file, tiny, digits = tiny_mobile_fixtures("tiny-rank-loss")


def make_trainer(tiny, digits, **changes) -> SandwichTrainer:
    recipe = SupernetRecipe(**{**BASE, **changes})
    supernet = supernet_for(tiny, digits, recipe)
    supernet.eval()  # no dropout: every forward of a subnet gives the same loss
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random weights: a fresh supernet's subnets' losses nearly tie
        for param in supernet.parameters():
            param.copy_(0.5 * torch.randn(param.shape, generator=generator))
    return SandwichTrainer(supernet, digits, recipe)


def inputs_labels(digits):
    index = torch.arange(16)
    return digits.normalize(digits.train.images[index]), digits.train.labels[index]


def label_loss(trainer: SandwichTrainer, inputs, labels, arch) -> torch.Tensor:
    logits = trainer.supernet(inputs, arch)
    return F.cross_entropy(logits, labels, label_smoothing=trainer.recipe.label_smoothing)


def gradients_of(trainer: SandwichTrainer, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in trainer.supernet.named_parameters()
            if p.grad is not None}


def step_gradients(trainer: SandwichTrainer, inputs, labels, archs,
                   monkeypatch) -> dict[str, torch.Tensor]:
    """The gradients `train_step` applies (the optimizer's step is skipped)."""
    monkeypatch.setattr(trainer.optimizer, "step", lambda: None)
    trainer.train_step(inputs, labels, archs, distill=False)
    return {n: p.grad.clone() for n, p in trainer.supernet.named_parameters()
            if p.grad is not None}


def fake_flops(monkeypatch, flops_by_key: dict[str, int]) -> None:
    monkeypatch.setattr(trainer_module, "analytical_cost",
                        lambda arch, *args: Cost(macs=flops_by_key[arch.key]))


def assert_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("weight", [0.5, 3.0])
def test_the_larger_subnet_trails_so_its_loss_counts_one_plus_the_weight(
        tiny, digits, weight, monkeypatch):
    trainer = make_trainer(tiny, digits, rank_loss=weight)
    a, b = trainer.supernet.min_arch(), trainer.supernet.max_arch()
    inputs, labels = inputs_labels(digits)
    loss_a, loss_b = (label_loss(trainer, inputs, labels, arch) for arch in (a, b))
    worse, better = (a, b) if loss_a > loss_b else (b, a)
    fake_flops(monkeypatch, {worse.key: 200, better.key: 100})  # the larger one trails
    want = gradients_of(trainer, (1 + weight) * label_loss(trainer, inputs, labels, worse)
                        + label_loss(trainer, inputs, labels, better))
    assert_close(step_gradients(trainer, inputs, labels, [a, b], monkeypatch), want)


def test_the_larger_subnet_ahead_or_equal_flops_leave_the_step_unchanged(
        tiny, digits, monkeypatch):
    trainer = make_trainer(tiny, digits, rank_loss=2.0)
    a, b = trainer.supernet.min_arch(), trainer.supernet.max_arch()
    inputs, labels = inputs_labels(digits)
    plain = gradients_of(trainer, label_loss(trainer, inputs, labels, a)
                         + label_loss(trainer, inputs, labels, b))
    loss_a, loss_b = (float(label_loss(trainer, inputs, labels, arch).detach())
                      for arch in (a, b))
    worse, better = (a, b) if loss_a > loss_b else (b, a)
    fake_flops(monkeypatch, {worse.key: 100, better.key: 200})  # the larger one leads
    assert_close(step_gradients(trainer, inputs, labels, [a, b], monkeypatch), plain)
    fake_flops(monkeypatch, {worse.key: 100, better.key: 100})  # no pair to compare
    assert_close(step_gradients(trainer, inputs, labels, [a, b], monkeypatch), plain)


def test_the_hinge_is_averaged_over_the_pairs(tiny, digits, monkeypatch):
    """Three subnets, FLOPs 300 > 200 > 100: three pairs. The hinge of each pair where the
    larger loss is higher adds weight/3 to the larger subnet's loss."""
    weight = 1.5
    trainer = make_trainer(tiny, digits, rank_loss=weight)
    rng = np.random.default_rng(3)
    archs = [trainer.supernet.min_arch(), trainer.supernet.max_arch()]
    while len({arch.key for arch in archs}) < 3:
        archs = archs[:2] + [trainer.supernet.sample_arch(rng)]
    inputs, labels = inputs_labels(digits)
    losses = [float(label_loss(trainer, inputs, labels, arch).detach()) for arch in archs]
    order = sorted(range(3), key=lambda i: -losses[i])  # the worst first, gets most FLOPs
    flops = {archs[i].key: 300 - 100 * rank for rank, i in enumerate(order)}
    fake_flops(monkeypatch, flops)
    factor = [1.0, 1.0, 1.0]
    for i in range(3):
        for j in range(3):
            if flops[archs[i].key] > flops[archs[j].key] and losses[i] > losses[j]:
                factor[i] += weight / 3
    assert len(set(losses)) == 3 and factor[order[0]] == pytest.approx(1 + 2 * weight / 3)
    want = gradients_of(trainer, sum(f * label_loss(trainer, inputs, labels, arch)
                                     for f, arch in zip(factor, archs)))
    assert_close(step_gradients(trainer, inputs, labels, archs, monkeypatch), want)


def test_off_by_default_and_the_cache_key_is_unchanged():
    assert SupernetRecipe().rank_loss == 0.0
    assert "rank_loss" not in json.loads(SupernetRecipe().describe())
    assert json.loads(SupernetRecipe(rank_loss=1.0).describe())["rank_loss"] == 1.0


def test_bad_values_are_one_line_nas_errors():
    for bad in (-1.0, float("inf")):
        with pytest.raises(NasError, match="rank_loss must be >= 0"):
            SupernetRecipe(rank_loss=bad)
    with pytest.raises(NasError, match="needs subnets_per_pass 1"):
        SupernetRecipe(rank_loss=1.0, subnets_per_pass=2)
    with pytest.raises(NasError, match="estimator 'supernet'") as info:
        SupernetEstimator.parse_options({"rank_loss": -2})
    assert "\n" not in str(info.value)
