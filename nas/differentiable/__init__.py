"""Differentiable architecture search: DARTS (first-order) and Gumbel-softmax (FBNet style)
with an expected-cost term, over a continuous relaxation of any space's own blocks.

Everything differentiable lives here: the relaxation (`relax`), its supernet (`supernet`), the
search (`search`), the `differentiable` strategy of the search job (`strategy`), its sweep as
Ray Tune trials (`tune`) and the `nas differentiable` command (`cli`)."""
from nas.differentiable.config import SearchConfig
from nas.differentiable.costs import ANALYTICAL, ExpectedCost, LinearCost, analytical, table_cost
from nas.differentiable.errors import RelaxationError, SearchConfigError
from nas.differentiable.relax import Relaxation, relax
from nas.differentiable.result import SearchResult, front
from nas.differentiable.search import DifferentiableSearch, supernet_accuracy
from nas.differentiable.supernet import RelaxedSupernet, extract

__all__ = ["ANALYTICAL", "DifferentiableSearch", "ExpectedCost", "LinearCost", "RelaxedSupernet",
           "Relaxation", "RelaxationError", "SearchConfig", "SearchConfigError", "SearchResult",
           "analytical", "extract", "front", "relax", "supernet_accuracy", "table_cost"]
