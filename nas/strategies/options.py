"""Strategy options: one frozen dataclass per strategy, with defaults, help text and checks.

A field is declared with `option(default, help, check)`. `check` is a `Check` (a predicate and
what it requires, e.g. `integer(2)`: "an integer >= 2"), run when the options are built, so a
bad value fails at once with a one-line `OptionError` naming the option; `validate` holds the
checks that involve several options. The strategy puts its name in front of the message.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from nas.strategies.errors import StrategyError


class OptionError(StrategyError):
    """A strategy option has a value it cannot take (the message names the option)."""


@dataclass(frozen=True)
class Check:
    """`ok(value)`: whether the value is accepted; `must`: what it must be, for the message."""

    ok: Callable[[Any], bool]
    must: str


METRIC_KINDS = ("cost", "reported")


def option(default: Any = MISSING, help: str = "", check: Check | None = None, *,
           factory: Callable[[], Any] | None = None, metric: str | None = None) -> Any:
    """A field of an options dataclass (`factory` for a list or dict default). `metric` marks an
    option whose value names metrics of the search (one name or a list): `cost` for cheap
    metrics of the cost_fn (known before evaluation), `reported` for any reported metric; the
    search checks them against what it has."""
    if metric is not None and metric not in METRIC_KINDS:
        raise ValueError(f"metric must be one of {METRIC_KINDS}, got {metric!r}")
    metadata = {"help": help, "check": check, "metric": metric}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class StrategyOptions:
    """Base of the options dataclasses: every field's check runs on construction."""

    def __post_init__(self) -> None:
        for f in fields(self):
            check = f.metadata.get("check")
            value = getattr(self, f.name)
            if check is not None and not check.ok(value):
                raise OptionError(f"{f.name} must be {check.must}, got {value!r}")
        self.validate()

    def validate(self) -> None:
        """Checks that involve several options (raise OptionError)."""

    def as_dict(self) -> dict[str, Any]:
        """The options by name (the values themselves, not copies)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def option_defaults(options_type: type) -> dict[str, Any]:
    """Each option's default value (a fresh list or dict for factory defaults)."""
    out = {}
    for f in fields(options_type):
        factory = f.default_factory  # type: ignore[misc]
        out[f.name] = factory() if f.default is MISSING else f.default
    return out


def metric_options(options_type: type) -> dict[str, str]:
    """The options that name metrics: {option: "cost" or "reported"}."""
    return {f.name: f.metadata["metric"] for f in fields(options_type)
            if f.metadata.get("metric")}


def cost_metric_names(options_type: type, values: Mapping[str, Any]) -> list[str]:
    """The cheap metrics that the `cost` options among `values` name (e.g. a warm start's);
    values that are no names are left to the options' own checks."""
    names: list[str] = []
    for name, kind in metric_options(options_type).items():
        value = values.get(name)
        if kind == "cost":
            listed = value if isinstance(value, (list, tuple)) else [value]
            names += [v for v in listed if isinstance(v, str)]
    return list(dict.fromkeys(names))


def option_help(options_type: type) -> dict[str, str]:
    """Each option's help text."""
    return {f.name: str(f.metadata.get("help", "")) for f in fields(options_type)}


# --- checks ------------------------------------------------------------------------------------
def is_number(value: Any) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(low: int, must: str | None = None) -> Check:
    return Check(lambda v: is_integer(v) and v >= low, must or f"an integer >= {low}")


def whole() -> Check:
    """Any integer (the range is checked elsewhere)."""
    return Check(is_integer, "an integer")


def number() -> Check:
    return Check(is_number, "a number")


def positive() -> Check:
    return Check(lambda v: is_number(v) and v > 0, "positive")


def at_least(low: float) -> Check:
    return Check(lambda v: is_number(v) and v >= low, f">= {low:g}")


def between(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Check:
    """A number in the interval ("[0, 1]", "(0, 1)", "[0, 1)"...)."""
    def ok(v: Any) -> bool:
        return (is_number(v) and (v > low if low_open else v >= low)
                and (v < high if high_open else v <= high))

    brackets = ("(" if low_open else "[", ")" if high_open else "]")
    return Check(ok, f"in {brackets[0]}{low:g}, {high:g}{brackets[1]}")


def one_of(*values: str) -> Check:
    texts = [repr(v) for v in values]
    must = " or ".join(texts) if len(texts) == 2 else "one of " + ", ".join(texts)
    return Check(lambda v: isinstance(v, str) and v in values, must)


def text() -> Check:
    return Check(lambda v: isinstance(v, str) and bool(v), "a non-empty text")


def flag() -> Check:
    return Check(lambda v: isinstance(v, bool), "true or false")


def number_list(low: float = 0.0) -> Check:
    """A non-empty list of numbers >= low."""
    return Check(lambda v: isinstance(v, (list, tuple)) and bool(v)
                 and all(is_number(w) and w >= low for w in v),
                 f"a non-empty list of numbers >= {low:g}")


def optional(check: Check) -> Check:
    """None (the option is off) or what `check` accepts."""
    return Check(lambda v: v is None or check.ok(v), check.must)
