"""What a candidate costs and how good it is: FLOPs/params (here), latency and accuracy."""
from estimators.flops import FlopsEstimator, analytical_cost, fvcore_cost, layer_table

__all__ = ["FlopsEstimator", "analytical_cost", "fvcore_cost", "layer_table"]
