"""The accuracy estimators by name: one entry per plugin, imported on first use (a `proxy`
search never imports the supernet code). Each class describes itself (`estimators.base`)."""
from __future__ import annotations

from search_spaces.plugins import load_registered

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
    return load_registered(REGISTRY, name, "estimator")


__all__ = ["REGISTRY", "get_estimator", "list_estimators"]
