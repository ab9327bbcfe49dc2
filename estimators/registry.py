"""The accuracy estimators by name: one entry per plugin, imported on first use (a `proxy`
search never imports the supernet code). Each class describes itself (`estimators.base`)."""
from __future__ import annotations

import importlib

from search_spaces import NasError

# name -> "module:Class"; the first is the default of a search
REGISTRY: dict[str, str] = {
    "supernet": "estimators.supernet.estimator:SupernetEstimator",
    "proxy": "estimators.accuracy:ProxyEstimator",
    "train": "estimators.accuracy:TrainEstimator",
    "table": "estimators.accuracy:TableEstimator",
}


def list_estimators() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get_estimator(name: str):
    """The estimator class registered as `name` (a one-line NasError names the known ones)."""
    if name not in REGISTRY:
        raise NasError(f"unknown estimator {name!r}; known: {', '.join(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["REGISTRY", "get_estimator", "list_estimators"]
