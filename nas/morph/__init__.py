"""Searches that edit trained networks (network morphism): EAS grows one by function-preserving
transformations (`nas grow`), N2N compresses a teacher by removing and narrowing layers
(`nas compress`); both choose their edits with an RL meta-controller. See docs/transform.md."""
from __future__ import annotations

from nas.morph.eas import GrowJob
from nas.morph.n2n import CompressJob
from nas.morph.settings import POLICIES, CompressSettings, GrowSettings, MorphError

__all__ = ["POLICIES", "CompressJob", "CompressSettings", "GrowJob", "GrowSettings",
           "MorphError"]
