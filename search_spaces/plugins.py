"""Plugin registries: each maps a name to `"module:attr"`, imported only when that name is used
(so choosing one strategy, estimator or predictor never imports the others' dependencies)."""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from search_spaces.errors import NasError


def load_registered(registry: Mapping[str, str], name: str, kind: str,
                    error: type[NasError] = NasError) -> Any:
    """The object registered as `name`; an unknown name raises a one-line `error` that lists
    the known ones, e.g. "unknown strategy 'x'; known: random, evolution"."""
    if name not in registry:
        raise error(f"unknown {kind} {name!r}; known: {', '.join(registry)}")
    module, _, attr = registry[name].partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["load_registered"]
