"""The EvoNorm layer search (Liu, Brock, Simonyan, Le, NeurIPS 2020): evolve a
normalization-activation layer of the `evonorm` layer space by aging tournament selection with
mutation, rejecting unstable and low-quality layers before their full evaluation, and scoring
each on several networks at once (Pareto selection over their accuracies). `nas evolve-layer`
runs it; docs/evonorm.md ("The search") describes it.

    from nas.evonorm import LayerSearchSettings, run_layer_search
    result = run_layer_search(LayerSearchSettings(candidates=40), "results/my-layers")
"""
from __future__ import annotations

from nas.evonorm.job import COMMAND, REFERENCE_ORDER, LayerSearchJob, run_layer_search
from nas.evonorm.plug import DEFAULT_ARCHS, plug, plugged_network
from nas.evonorm.settings import PROTOCOLS, LayerSearchError, LayerSearchSettings

__all__ = ["COMMAND", "DEFAULT_ARCHS", "PROTOCOLS", "REFERENCE_ORDER", "LayerSearchError",
           "LayerSearchJob", "LayerSearchSettings", "plug", "plugged_network",
           "run_layer_search"]
