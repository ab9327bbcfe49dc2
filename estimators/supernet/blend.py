"""Blending the supernet's accuracy with a zero-cost proxy's rank (issue 13, docs/ranking.md).

A weight-sharing supernet and a zero-cost proxy err in different places: on reduced NB201 the
supernet over-rates cells of parameter-free ops (average pooling converges fast in shared
training) and under-rates 3x3 convolutions, which a proxy of the untrained network does not.
A rank average of the two, weights 2/3 and 1/3 (fixed on the first 23 ground-truth cells),
lifted Kendall tau against standalone training from 0.46 to 0.55 on 35 cells it had not seen.

A search scores one architecture at a time, so "rank" here is a rank among a fixed, seeded draw
of random architectures of the space (the reference), scored once per trained supernet: each
score becomes its place among the reference's scores (`RankScale`), the two places are
averaged, and the average is read back as the supernet accuracy at that place. So `acc` stays
in accuracy units, equals the supernet's own accuracy where the proxy agrees with it, and moves
toward the proxy's verdict where it does not.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from estimators.files import atomic_write_text
from search_spaces import Arch, NasError, SearchSpace

BLEND_WEIGHT = 1 / 3  # the proxy's share, fixed before it was validated (docs/ranking.md)
BLEND_REFERENCE = 100  # random architectures the ranks are read against
TAIL = 0.1  # share of the reference whose span sets the slope past either end


class RankScale:
    """A strictly increasing map from scores to places in (0, 1), learned from a reference
    sample: the mid-rank of each distinct reference score, linear in between, and extended
    linearly past both ends with the slope over the outer `TAIL` of the sample, so scores
    beyond the reference stay ordered instead of tying at its ends. `score` is its inverse."""

    def __init__(self, reference: Sequence[float]):
        values = np.asarray(reference, dtype=float)
        values = values[np.isfinite(values)]
        distinct, counts = np.unique(values, return_counts=True)
        if len(distinct) < 2:
            raise NasError(f"a rank scale needs at least 2 distinct finite reference scores, "
                           f"got {len(distinct)}")
        ends = np.cumsum(counts)
        self.values = distinct
        self.places = (ends - counts / 2) / len(values)
        span = max(1, int(round(TAIL * len(distinct))))
        self.low_slope = (self.places[span] - self.places[0]) / (distinct[span] - distinct[0])
        self.high_slope = ((self.places[-1] - self.places[-1 - span])
                           / (distinct[-1] - distinct[-1 - span]))

    def place(self, score: float) -> float:
        if score < self.values[0]:
            return float(self.places[0] - (self.values[0] - score) * self.low_slope)
        if score > self.values[-1]:
            return float(self.places[-1] + (score - self.values[-1]) * self.high_slope)
        return float(np.interp(score, self.values, self.places))

    def score(self, place: float) -> float:
        if place < self.places[0]:
            return float(self.values[0] - (self.places[0] - place) / self.low_slope)
        if place > self.places[-1]:
            return float(self.values[-1] + (place - self.places[-1]) / self.high_slope)
        return float(np.interp(place, self.places, self.values))


@dataclass(frozen=True)
class ProxyBlend:
    """The supernet accuracy moved toward a proxy's rank: `weight` is the proxy's share.
    `reference_acc` and `reference_proxy` are the reference architectures' scores."""

    proxy: str
    weight: float
    reference_acc: tuple[float, ...]
    reference_proxy: tuple[float, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 1:
            raise NasError(f"blend weight must be in [0, 1], got {self.weight}")
        object.__setattr__(self, "_acc", RankScale(self.reference_acc))
        object.__setattr__(self, "_proxy", RankScale(self.reference_proxy))

    def __call__(self, acc: float, proxy_score: float) -> float:
        """The blended accuracy. The proxy's place is kept within [0, 1] (its extrapolation is
        the less trusted of the two; past the reference the supernet alone orders), and a
        proxy that failed (NaN) leaves the supernet's accuracy as it is."""
        own = self._acc.place(acc)
        if math.isnan(proxy_score):
            return acc
        other = 0.0 if proxy_score == -math.inf else 1.0 if proxy_score == math.inf \
            else min(1.0, max(0.0, self._proxy.place(proxy_score)))
        return self._acc.score((1 - self.weight) * own + self.weight * other)

    def as_dict(self) -> dict[str, Any]:
        return {"proxy": self.proxy, "weight": self.weight,
                "reference_acc": list(self.reference_acc),
                "reference_proxy": list(self.reference_proxy)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ProxyBlend:
        return cls(str(values["proxy"]), float(values["weight"]),
                   tuple(float(v) for v in values["reference_acc"]),
                   tuple(float(v) for v in values["reference_proxy"]))


def reference_archs(space: SearchSpace, count: int, seed: int = 0) -> list[Arch]:
    """`count` distinct architectures drawn uniformly from `space` (seeded; fewer when the
    space has fewer)."""
    rng = np.random.default_rng(seed)
    found: dict[str, Arch] = {}
    for _ in range(20 * count):
        arch = space.sample(rng)
        found.setdefault(arch.key, arch)
        if len(found) == count:
            break
    return list(found.values())


def fit_blend(space: SearchSpace, supernet_acc: Callable[[Arch], float],
              proxy_score: Callable[[Arch], float], proxy: str,
              weight: float = BLEND_WEIGHT, count: int = BLEND_REFERENCE,
              seed: int = 0) -> ProxyBlend:
    """The blend of `proxy` into a supernet, its reference scored by the two callables."""
    archs = reference_archs(space, count, seed)
    return ProxyBlend(proxy, weight, tuple(supernet_acc(a) for a in archs),
                      tuple(proxy_score(a) for a in archs))




def cached_blend(space: SearchSpace, supernet_acc: Callable[[Arch], float],
                 proxy_score: Callable[[Arch], float], proxy: str, weight: float,
                 count: int, cache: tuple[Path, str] | None) -> ProxyBlend:
    """`fit_blend`, its reference scores read from `cache` (a JSON file, and a stamp of the
    supernet's weights) where a fit of the same proxy, count and weights wrote them, and
    written there otherwise (an unreadable or stale file is fitted again)."""
    if cache is not None:
        path, stamp = cache
        try:
            stored = json.loads(path.read_text())
            if (stored["proxy"], stored["count"], stored["stamp"]) == (proxy, count, stamp):
                return ProxyBlend.from_dict({**stored, "weight": weight})
        except (OSError, ValueError, KeyError, TypeError, NasError):
            pass
    blend = fit_blend(space, supernet_acc, proxy_score, proxy, weight, count)
    if cache is not None:
        atomic_write_text(cache[0], json.dumps({**blend.as_dict(), "count": count,
                                                "stamp": cache[1]}))
    return blend

__all__ = ["BLEND_REFERENCE", "BLEND_WEIGHT", "ProxyBlend", "RankScale", "cached_blend",
           "fit_blend", "reference_archs"]
