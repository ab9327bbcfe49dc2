"""EAS (Cai et al., AAAI 2018): grow a trained network by function-preserving transformations
chosen by a reinforcement-learning meta-controller (`nas grow`; docs/transform.md)."""
from __future__ import annotations

from nas.grow.job import GrowJob
from nas.grow.settings import POLICIES, GrowError, GrowSettings

__all__ = ["POLICIES", "GrowError", "GrowJob", "GrowSettings"]
