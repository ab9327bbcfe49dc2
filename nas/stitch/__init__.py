"""Stitchable Neural Networks (SN-Net, Pan et al., CVPR 2023; SN-Netv2): trained networks of
one space family (anchors) cut at block boundaries and joined by stitching layers initialised
by least squares, trained together one stitch per step, and switched at run time
(`StitchedNetwork.set_stitch`) for an instant accuracy/cost trade-off. `nas stitch` runs it
into a run folder; see docs/stitch.md."""
from __future__ import annotations

from nas.stitch.anchors import Anchor, family_of, load_anchors
from nas.stitch.cuts import Stitch, matched_cuts, plan_stitches
from nas.stitch.job import anchors_line, run_stitch
from nas.stitch.layers import MapStitch, TokenStitch, fit_least_squares, make_layer
from nas.stitch.network import StitchedNetwork, build_stitched, load_stitched, save_stitched
from nas.stitch.settings import INITS, SAMPLINGS, StitchError, StitchSettings
from nas.stitch.training import (
    StitchSampler,
    calibrate_bn,
    init_least_squares,
    score,
    train_joint,
)

__all__ = ["INITS", "SAMPLINGS", "Anchor", "anchors_line", "MapStitch", "Stitch", "StitchError",
           "StitchSampler", "StitchSettings", "StitchedNetwork", "TokenStitch",
           "build_stitched", "calibrate_bn", "family_of", "fit_least_squares",
           "init_least_squares", "load_anchors", "load_stitched", "make_layer", "matched_cuts",
           "plan_stitches", "run_stitch", "save_stitched", "score", "train_joint"]
