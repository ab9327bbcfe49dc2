"""Performance predictors: fit on (arch, value) pairs, predict mean and uncertainty.

They serve the predictor-guided strategies (`bananas`, `nas.strategies`) and anyone with a few
evaluated archs who wants to rank the rest::

    from estimators.predictors import make_predictor
    model = make_predictor("mlp", space).fit(archs, accuracies)
    prediction = model.predict(candidates)          # .mean, .std

The registry maps names to `module:Class`, imported on first use. Adding a predictor is one
module (a `Predictor` subclass with `name`, `summary`, `Options`) and one line here.
"""
from __future__ import annotations

from typing import Any

from estimators.predictors.base import GeneEncoder, Prediction, Predictor, PredictorError
from search_spaces import SearchSpace
from search_spaces.plugins import load_registered

PREDICTORS: dict[str, str] = {
    "mlp": "estimators.predictors.mlp:MLPEnsemble",
    "gp": "estimators.predictors.gp:GaussianProcess",
}


def list_predictors() -> tuple[str, ...]:
    return tuple(PREDICTORS)


def get_predictor(name: str) -> type[Predictor]:
    """The predictor class registered as `name` (a one-line error names the known ones)."""
    return load_registered(PREDICTORS, name, "predictor", PredictorError)


def make_predictor(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Predictor:
    """An unfitted predictor by name, e.g. `make_predictor("gp", space)`."""
    return get_predictor(name)(space, seed=seed, **options)


__all__ = ["GeneEncoder", "PREDICTORS", "Prediction", "Predictor", "PredictorError",
           "get_predictor", "list_predictors", "make_predictor"]
