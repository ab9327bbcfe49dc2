"""Fine-tuning each subnet alone before it is scored (`finetune_steps`, `finetune_lr`:
estimators.supernet.finetune): off, scores are unchanged; on, every subnet takes the same
seeded batches, the supernet's shared weights are never touched, scores are deterministic,
and the blend reference is kept apart from that of other settings."""
from __future__ import annotations

import pytest
import torch
from tiny_space import tiny_mobile_fixtures

from estimators.supernet import SupernetEstimator, SupernetRecipe, train_supernet
from estimators.supernet.estimator import scoring_settings
from estimators.supernet.finetune import SubnetFinetune
from search_spaces import NasError

space_file, tiny, digits = tiny_mobile_fixtures("tiny-finetune")
RECIPE = SupernetRecipe(epochs=1, train_images=64, batch_size=16, random_subnets=0)
IMAGES = {"calibration_images": 32, "eval_images": 64}


@pytest.fixture(scope="module")
def trained(tiny, digits, tmp_path_factory):
    return train_supernet(tiny, digits, RECIPE, quiet=True,
                          cache_dir=tmp_path_factory.mktemp("finetune"))


def shared_weights(supernet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in supernet.state_dict().items()}


def test_off_by_default_and_zero_steps_leave_the_inherited_weights(tiny, digits, trained):
    assert scoring_settings(tiny)["finetune_steps"] == 0
    plain = SupernetEstimator(trained, digits, **IMAGES)
    arch = tiny.max_arch()
    inherited = trained.supernet.extract(arch).state_dict()
    tuned = plain.finetune(trained.supernet.extract(arch), 28).state_dict()
    assert all(torch.equal(inherited[k], tuned[k]) for k in inherited)
    assert plain.finetune.describe() == ""


def test_steps_move_the_subnet_and_never_the_supernet(tiny, digits, trained):
    before = shared_weights(trained.supernet)
    estimator = SupernetEstimator(trained, digits, finetune_steps=3, finetune_lr=0.05, **IMAGES)
    arch = tiny.max_arch()
    inherited = trained.supernet.extract(arch).state_dict()
    tuned = estimator.finetune(trained.supernet.extract(arch), 28).state_dict()
    assert any(not torch.equal(inherited[k], tuned[k]) for k in inherited
               if k.endswith("weight"))
    first = estimator(arch)["acc_supernet"]
    estimator.forget()
    assert estimator(arch)["acc_supernet"] == first  # deterministic
    again = SupernetEstimator(trained, digits, finetune_steps=3, finetune_lr=0.05, **IMAGES)
    assert again(arch)["acc_supernet"] == first
    after = shared_weights(trained.supernet)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_every_subnet_takes_the_same_batches(digits):
    finetune = SubnetFinetune(digits, steps=4, lr=0.01, batch_size=8, seed=0)
    batches = finetune.batches(28)
    assert len(batches) == 4 and all(b.shape[0] == 8 for b in batches)
    assert finetune.batches(28) is batches  # cached: the same tensors for the next subnet
    other = SubnetFinetune(digits, steps=4, lr=0.01, batch_size=8, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(other.batches(28), batches))
    assert finetune.batches(16)[0].shape[-1] == 16
    # not the calibration draw (seed 0): the steps see other images
    calibration = digits.sample_batch(8, 0, "train")[0]
    assert not torch.equal(batches[0], calibration)
    assert finetune.describe() == "-f4x0.01"


def test_options_flow_and_bad_values_are_one_line_errors(tiny):
    options = SupernetEstimator.parse_options({"finetune_steps": 20, "finetune_lr": 0.02})
    assert options.finetune_steps == 20 and options.finetune_lr == 0.02
    assert scoring_settings(tiny, finetune_steps=20)["finetune_steps"] == 20
    for bad in ({"finetune_steps": -1}, {"finetune_lr": 0}, {"finetune_steps": 1.5}):
        with pytest.raises(NasError, match="estimator 'supernet'") as info:
            SupernetEstimator.parse_options(bad)
        assert "\n" not in str(info.value)
