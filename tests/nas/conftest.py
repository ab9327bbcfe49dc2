"""Fixtures of the search tests: one real local Ray per test session, and a small, fast search
(NAS-Bench-201 cells scored by one zero-cost proxy on scikit-learn's 8x8 digits)."""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

# Ray 2.60 turns token authentication on by default; a local test cluster has no token.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

SMALL: dict[str, Any] = {
    "space": "nb201", "budget": "60M-flops", "estimator": "proxy",
    "estimator_options": {"proxy": "jacov", "proxies": ["jacov"], "batch_size": 16},
    "data": "digits", "seed": 0, "trials": 16, "batch_size": 4, "workers": 0,
}
TIMING = ("eval_seconds", "train_seconds")


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray with 2 CPUs, started once for every test that needs it (never
    `ray stop`: only this session's instance is shut down)."""
    import ray

    started = not ray.is_initialized()
    if started:
        from estimators.ray_local import start_local_ray

        start_local_ray(num_cpus=2, log_to_driver=False, logging_level="ERROR")  # loopback only
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def small_settings() -> Callable[..., Any]:
    """`small_settings(**changes)`: SearchSettings of the small search."""
    from nas.search_settings import SearchSettings

    def make(**changes: Any) -> SearchSettings:
        return SearchSettings(**{**SMALL, **changes})

    return make


def strip_timing(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows without timings, NaN as None (so == compares them)."""
    out = []
    for row in rows:
        clean = {}
        for key, value in row.items():
            if key in TIMING or key.endswith("_seconds"):
                continue
            clean[key] = None if isinstance(value, float) and math.isnan(value) else value
        out.append(clean)
    return out


@pytest.fixture(scope="session")
def same_rows() -> Callable[[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]], bool]:
    return lambda a, b: strip_timing(a) == strip_timing(b)
