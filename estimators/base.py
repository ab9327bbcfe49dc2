"""What every accuracy estimator is: a plugin that describes itself.

An estimator class declares its `name`, its `Options` (a frozen dataclass: every field has a
default, a `help` text and a `kind` its values are checked against, with one-line errors),
whether it `needs_data`, the `unit` of its `acc` (`percent`: top-1 %; `score`: a ranking
score), the `metrics` it reports for given options, and how it is made from an evaluation
config (`from_config`) or from `nas evaluate`'s arguments (`create`). `estimators.registry`
finds the classes by name. An instance maps an arch to its metrics (`{"acc": ..., ...,
"acc_estimator": ...}`), deterministic given its settings and seed, cached by `arch.key`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

from search_spaces import Arch, NasError, first_line

ESTIMATOR_KEY = "acc_estimator"  # the metric that says which estimator produced `acc`
Resolution = int | str | None  # None: the data's; "arch": the architecture's own; or pixels
Metrics = dict[str, float | str]
Shared = dict[str, Any]  # heavy objects made once per search: "data", "supernet"
UNITS = ("percent", "score")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _samplings() -> tuple[str, ...]:
    from estimators.supernet.recipe import SAMPLINGS

    return SAMPLINGS


def _proxy_names() -> tuple[str, ...]:
    from estimators.proxies import PROXY_NAMES

    return PROXY_NAMES


# kind -> (check, what the value must be)
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int1": (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    "int2": (lambda v: _is_int(v) and v >= 2, "a whole number >= 2"),
    "int0": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
    "whole1": (lambda v: _is_number(v) and float(v).is_integer() and v >= 1,
               "a whole number >= 1"),
    "positive": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "nonnegative": (lambda v: _is_number(v) and 0 <= v < float("inf"), "a number >= 0"),
    "text": (lambda v: isinstance(v, str) and bool(v), "text"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "resolution": (lambda v: v == "arch" or (_is_int(v) and v > 0),
                   "'arch' or a positive number of pixels"),
    "proxy": (lambda v: isinstance(v, str) and v in _proxy_names(), "a proxy name"),
    "proxy_or_none": (lambda v: isinstance(v, str) and (v == "none" or v in _proxy_names()),
                      "a proxy name or 'none'"),
    "fraction": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "targets": (lambda v: v in ("values", "ranks"), "values or ranks"),
    "sampling": (lambda v: isinstance(v, str) and v in _samplings(),
                 "auto, sandwich, fair or uniform"),
    "proxies": (lambda v: isinstance(v, list) and bool(v) and all(
        isinstance(p, str) and p in _proxy_names() for p in v), "a list of proxy names"),
}


def option(default: Any, help: str, kind: str) -> Any:
    """A field of an estimator's Options: its default, help text and value kind (a key of
    CHECKS; None, the default of most, is always accepted)."""
    if kind not in CHECKS:
        raise ValueError(f"unknown option kind {kind!r}")
    return field(default=default, metadata={"help": help, "kind": kind})


@dataclass(frozen=True)
class EstimatorOptions:
    """Base of every estimator's options: checks each value against its field's kind, then
    `check()` (what spans several fields, e.g. the training recipe they make)."""

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None:
                continue
            check, kind = CHECKS[spec.metadata["kind"]]
            if not check(value):
                hint = f" ({', '.join(_proxy_names())})" \
                    if kind.startswith(("a proxy", "a list of p")) else ""
                raise NasError(f"{spec.name} must be {kind}{hint}, got {value!r}")
        self.check()

    def check(self) -> None:
        """Checks across fields (none by default); raise a one-line NasError."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_options(options_type: type[EstimatorOptions], given: Mapping[str, Any], owner: str,
                  error: type[NasError] = NasError) -> EstimatorOptions:
    """`options_type` from user values (None: the default); an unknown name or a bad value is
    a one-line `error` that starts with `owner` (e.g. "estimator 'proxy'")."""
    given = {k: v for k, v in dict(given).items() if v is not None}
    accepted = [spec.name for spec in fields(options_type)]
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise error(f"{owner}: unknown options {unknown}; accepted: "
                    f"{', '.join(accepted) or 'none'}")
    try:
        return options_type(**given)
    except NasError as exc:
        text = first_line(exc)
        raise error(text if text.startswith(owner) else f"{owner}: {text}") from None


class AccuracyEstimator(ABC):
    """Base: the plugin's declarations, caching by key and the `acc_estimator` label."""

    name: ClassVar[str]
    Options: ClassVar[type[EstimatorOptions]] = EstimatorOptions
    needs_data: ClassVar[bool] = False
    unit: ClassVar[str] = "percent"  # of `acc`: "percent" (top-1 %) or "score"
    summary: ClassVar[str] = ""  # one line for listings
    space_bound: ClassVar[bool] = False  # its state belongs to one space (supernet, table)
    test_split: ClassVar[bool] = False  # can score on the test split (final reports)

    def __init__(self) -> None:
        self._cache: dict[str, Metrics] = {}

    # --- what the class declares ----------------------------------------------------------
    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in fields(cls.Options) if f.default is not MISSING}

    @classmethod
    def parse_options(cls, given: Mapping[str, Any]) -> EstimatorOptions:
        """The options from user values (None: the default); an unknown name or a bad value
        is a one-line NasError naming the estimator."""
        return build_options(cls.Options, given, f"estimator {cls.name!r}")

    @classmethod
    def metrics(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The numeric metrics reported for every arch under `options` (timings aside)."""
        return ("acc",)

    @classmethod
    def prepare(cls, config: Mapping[str, Any], shared: Shared,
                log: Callable[[str], None] | None = None) -> None:
        """Make the heavy objects every copy shares (into `shared`); nothing by default."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: Mapping[str, Any], shared: Shared) -> AccuracyEstimator:
        """The estimator of an evaluation config (`options`: every option, defaults filled)
        with the objects `prepare` made (`shared["data"]` when `needs_data`)."""

    @classmethod
    @abstractmethod
    def create(cls, space: Any, **kwargs: Any) -> AccuracyEstimator:
        """The estimator `nas evaluate` asks for (see `estimators.accuracy.make_estimator`)."""

    # --- what an instance does ------------------------------------------------------------
    @property
    def label(self) -> str:
        """What goes under `acc_estimator`, e.g. `proxy:jacov`."""
        return self.name

    def __call__(self, arch: Arch) -> Metrics:
        key = arch.key
        if key not in self._cache:
            self._cache[key] = {**self.estimate(arch), ESTIMATOR_KEY: self.label}
        return dict(self._cache[key])

    def forget(self) -> None:
        """Drop the cached results (after a change of the estimator's settings)."""
        self._cache.clear()

    @abstractmethod
    def estimate(self, arch: Arch) -> dict[str, float]:
        """The metrics of one arch, uncached."""


__all__ = ["AccuracyEstimator", "CHECKS", "build_options", "ESTIMATOR_KEY", "EstimatorOptions", "Metrics",
           "Resolution", "Shared", "UNITS", "option"]
