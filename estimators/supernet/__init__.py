"""Supernets trained once and shared by every subnet: `cache` (where trained supernets live),
`recipe` (how one is trained, per-style defaults), `trainer` (the sampling rules, one step,
one epoch), `training` (train or reuse, resume), `parallel` (Ray Train workers) and
`estimator` (the `supernet` accuracy estimator)."""
from estimators.supernet.cache import CheckpointError, SupernetCacheWarning
from estimators.supernet.estimator import SupernetEstimator, top1
from estimators.supernet.recipe import SupernetRecipe, default_recipe
from estimators.supernet.trainer import (
    SandwichTrainer,
    TrainedSupernet,
    supernet_for,
)
from estimators.supernet.training import load_trained, locate, train_supernet

__all__ = ["CheckpointError", "SandwichTrainer", "SupernetCacheWarning", "SupernetEstimator",
           "SupernetRecipe", "TrainedSupernet", "default_recipe", "load_trained", "locate",
           "supernet_for", "top1", "train_supernet"]
