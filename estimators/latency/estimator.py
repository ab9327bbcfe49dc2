"""`LatencyEstimator`: the `latency_ms` metric for search, cached by architecture key.

Usable wherever an estimator or a sampling `cost_fn` is expected, e.g. with a `20ms-latency`
budget: `sample_within(space, parse_budget("20ms-latency"), LatencyEstimator.open(space), rng)`.
"""
from __future__ import annotations

from typing import Any

from estimators.latency.predictor import Predictor
from search_spaces import Arch, SearchSpace


class LatencyEstimator:
    """`__call__(arch) -> {"latency_ms": ...}` on one device; deterministic per key."""

    metrics = ("latency_ms",)

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.device = predictor.device
        self.name = f"latency[{predictor.device}]"
        self._cache: dict[str, dict[str, float]] = {}

    @classmethod
    def open(cls, space: SearchSpace, device: str = "cpu", **options: Any) -> LatencyEstimator:
        """An estimator for `space` on a device name (`cpu`, `cuda`, a fitted or imported one);
        options as `open_predictor`."""
        from estimators.latency.devices import open_predictor

        return cls(open_predictor(space, device, **options))

    def __call__(self, arch: Arch) -> dict[str, float]:
        key = arch.key
        cached = self._cache.get(key)
        if cached is None:
            cached = {"latency_ms": float(self.predictor.latency_ms(arch))}
            self._cache[key] = cached
        return dict(cached)
