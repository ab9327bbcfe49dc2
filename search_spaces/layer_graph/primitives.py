"""The primitives of the EvoNorm layer search space (Liu et al. 2020, Table 1), and the nodes
every layer graph starts from.

Element-wise functions use tensor methods only, so this table (and the space built on it) loads
without torch. Guards, as the paper's: `sqrt` and `log` add `eps` inside, `div` keeps the
denominator's magnitude at least `eps` (exact wherever it already is, as in every reference
layer), and `sign` of 0 is +1, so `sqrt(var)` is exactly `sqrt(var + eps)` for a variance.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Tensor = Any  # a torch.Tensor

INPUT = "x"
ZERO = "zero"
# Learned per-channel vectors and their initial values: v0 and v1 are the paper's; gamma and
# beta are the affine pair, inside the graph so that BN-ReLU (affine before the max) is a graph.
PARAMETERS: dict[str, float] = {"v0": 0.0, "v1": 1.0, "gamma": 1.0, "beta": 0.0}
INITIAL_NODES: tuple[str, ...] = (INPUT, ZERO, *PARAMETERS)

# What each kind of node varies along: b(atch), c(hannel), h, w. A layer's output must vary
# along all four (a per-element function of x, not only of its statistics).
FULL_AXES = frozenset("bchw")
INITIAL_AXES: dict[str, frozenset[str]] = {
    INPUT: FULL_AXES, ZERO: frozenset(), **{p: frozenset("c") for p in PARAMETERS}}
# Axes an aggregate removes (its result is broadcast back along them).
AGGREGATE_AXES: dict[str, frozenset[str]] = {
    "bwh": frozenset("bhw"),  # over batch and space, per channel: BatchNorm's statistics
    "wh": frozenset("hw"),  # over space, per sample and channel: InstanceNorm's
    "group": frozenset("hw"),  # over space and the channels of a group: GroupNorm's
}


@dataclass(frozen=True)
class Primitive:
    """One op of the table: element-wise (`fn(*inputs, eps=...)`) or an aggregate (a `moment`,
    mean or var, over the axes of `aggregate`, broadcast back to its input's shape)."""

    name: str
    arity: int
    formula: str
    fn: Callable[..., Tensor] | None = None
    aggregate: str | None = None
    moment: str | None = None
    commutative: bool = False


def _sign(a: Tensor) -> Tensor:
    return a.ge(0).to(a.dtype) * 2 - 1


def _div(a: Tensor, b: Tensor, eps: float) -> Tensor:
    return a / b.where(b.abs() >= eps, _sign(b) * eps)


def _log(a: Tensor, eps: float) -> Tensor:
    return _sign(a) * (a.abs() + eps).log()


def _sqrt(a: Tensor, eps: float) -> Tensor:
    return _sign(a) * (a.abs() + eps).sqrt()


def _elementwise(name: str, arity: int, formula: str, fn: Callable[..., Tensor],
                 commutative: bool = False) -> Primitive:
    return Primitive(name, arity, formula, fn=fn, commutative=commutative)


def _aggregate(moment: str, axes: str, formula: str) -> Primitive:
    return Primitive(f"{moment}_{axes}", 1, formula, aggregate=axes, moment=moment)


_TABLE = (
    _elementwise("add", 2, "a + b", lambda a, b, eps: a + b, commutative=True),
    _elementwise("mul", 2, "a * b", lambda a, b, eps: a * b, commutative=True),
    _elementwise("div", 2, "a / b, |b| kept >= eps", _div),
    _elementwise("max", 2, "max(a, b)", lambda a, b, eps: a.maximum(b), commutative=True),
    _elementwise("neg", 1, "-a", lambda a, eps: -a),
    _elementwise("sigmoid", 1, "1 / (1 + exp(-a))", lambda a, eps: a.sigmoid()),
    _elementwise("tanh", 1, "tanh(a)", lambda a, eps: a.tanh()),
    _elementwise("exp", 1, "exp(a)", lambda a, eps: a.exp()),
    _elementwise("log", 1, "sign(a) * ln(|a| + eps)", _log),
    _elementwise("abs", 1, "|a|", lambda a, eps: a.abs()),
    _elementwise("square", 1, "a^2", lambda a, eps: a * a),
    _elementwise("sqrt", 1, "sign(a) * sqrt(|a| + eps)", _sqrt),
    _aggregate("mean", "bwh", "mean of a over batch, height, width"),
    _aggregate("var", "bwh", "variance of a over batch, height, width"),
    _aggregate("mean", "wh", "mean of a over height, width"),
    _aggregate("var", "wh", "variance of a over height, width"),
    _aggregate("mean", "group", "mean of a over height, width and the channels of a group"),
    _aggregate("var", "group", "variance of a over height, width and the channels of a group"),
)
PRIMITIVES: dict[str, Primitive] = {p.name: p for p in _TABLE}


def output_axes(op: str, inputs: list[frozenset[str]]) -> frozenset[str]:
    """The axes a node of `op` varies along, given its inputs' axes."""
    primitive = PRIMITIVES[op]
    if primitive.aggregate is not None:
        return inputs[0] - AGGREGATE_AXES[primitive.aggregate]
    return frozenset().union(*inputs)
