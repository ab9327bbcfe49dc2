"""The evaluator of a search: every metric of one architecture, built from a plain config dict.

The config is JSON data (space, estimator name and options, data, device, seed), so a Ray actor
on any node builds its own copy from it. Heavy objects that every copy needs (the data set, the
trained supernet's weights) are made once by `prepare(config)` in the driver; a Ray runner puts
them in the object store once and hands the same reference to each actor.

An evaluation combines the accuracy estimator's metrics (`acc`, `acc_estimator`, and whatever
else it reports) with the analytical cost (`flops`, `flops_sparse`, `params`) and, when a
device is given, `latency_ms`. Results are cached by arch key. An evaluation that raises is
recorded (`error`), never fatal to the search.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from estimators.registry import get_estimator, list_estimators
from estimators.threads import torch_threads
from search_spaces import Arch, NasError, SearchSpace, get_space

Metrics = dict[str, Any]  # numbers, plus `acc_estimator` and `error` as text
Shared = dict[str, Any]  # heavy objects made once per search (see `prepare`)

TEXT_METRICS = ("acc_estimator", "error")  # the non-numeric columns of a result
# Metrics that vary from run to run and never count when comparing results.
TIMING_METRICS = ("eval_seconds", "train_seconds")


def estimator_options(name: str) -> dict[str, Any]:
    """The options estimator `name` accepts, with their defaults (its Options declare them)."""
    return get_estimator(name).option_defaults()


# The validation split is drawn with its own seed, not the search's: a search with another seed
# must see the same split, or it could not reuse the supernet cached for it.
DATA_DEFAULTS: dict[str, Any] = {"name": "fashion-mnist", "dir": None, "val_fraction": 1 / 6,
                                 "split_seed": 0}


class EvaluationError(NasError):
    """A search configuration that cannot be evaluated (bad estimator, option or device)."""


def evaluation_config(space: str, estimator: str = "supernet",
                      options: Mapping[str, Any] | None = None,
                      data: Mapping[str, Any] | None = None, device: str | None = None,
                      seed: int = 0, threads: int = 1, cost_classes: int | None = None,
                      cheap_proxies: Sequence[str] = ()) -> dict[str, Any]:
    """A validated, complete evaluator config (plain JSON data).

    `cost_classes`: classifier outputs that FLOPs/params/latency are counted with (None: the
    space's own head, e.g. ImageNet's 1000, so budgets read like published figures; the
    accuracy estimators always build the network for the data set's classes).
    `cheap_proxies`: zero-cost proxies computed with the costs, as cheap metrics a strategy may
    use before evaluating (e.g. a warm start); see `proxy_costs`."""
    if estimator not in list_estimators():
        raise EvaluationError(f"unknown estimator {estimator!r}; "
                              f"known: {', '.join(list_estimators())}")
    plugin = get_estimator(estimator)
    accepted = plugin.option_defaults()
    options = {k: v for k, v in dict(options or {}).items() if v is not None}
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise EvaluationError(f"estimator {estimator!r}: unknown options {unknown}; "
                              f"accepted: {', '.join(accepted)}")
    data_config = {**DATA_DEFAULTS, **{k: v for k, v in dict(data or {}).items() if v is not None}}
    bad = sorted(set(data_config) - set(DATA_DEFAULTS))
    if bad:
        raise EvaluationError(f"unknown data settings {bad}; accepted: {', '.join(DATA_DEFAULTS)}")
    if not isinstance(threads, int) or threads < 1:
        raise EvaluationError(f"threads must be a positive integer, got {threads!r}")
    val_fraction = data_config["val_fraction"]
    if not (_is_number(val_fraction) and 0.0 < val_fraction < 1.0):
        raise EvaluationError(f"val_fraction must be between 0 and 1 (exclusive), "
                              f"got {val_fraction!r}")
    cheap_proxies = list(dict.fromkeys(cheap_proxies))
    if cheap_proxies:
        from estimators.proxies import PROXY_NAMES

        unknown = [p for p in cheap_proxies if p not in PROXY_NAMES]
        if unknown:
            raise EvaluationError(f"unknown proxy {unknown[0]!r}; known: "
                                  f"{', '.join(PROXY_NAMES)}")
    get_space(space)  # an unknown space fails here, in the driver, with the list of names
    try:  # every value the user gave, and the recipe they make, without data
        plugin.parse_options(options)
    except NasError as exc:
        raise EvaluationError(str(exc)) from None
    return {"space": space, "estimator": estimator, "options": {**accepted, **options},
            "data": data_config, "device": device, "seed": int(seed), "threads": threads,
            "cost_classes": cost_classes, "cheap_proxies": cheap_proxies}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def accuracy_metrics(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The numeric metrics the config's accuracy estimator reports for every architecture
    (timings aside: they vary from run to run)."""
    return get_estimator(config["estimator"]).metrics(config["options"])


def cost_metrics(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The cheap metrics of `config`: known before an evaluation."""
    return (("flops", "flops_sparse", "params") + (("latency_ms",) if config["device"] else ())
            + tuple(config.get("cheap_proxies", ())))


def proxy_costs(names: Sequence[str]) -> list[str]:
    """The zero-cost proxies among `names` that are not costs already (`params` is one)."""
    from estimators.proxies import PROXY_NAMES

    return [n for n in names if n in PROXY_NAMES and n not in ("flops", "params")]


def available_metrics(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Every metric an evaluation under `config` reports: accuracy, then costs."""
    return tuple(dict.fromkeys(accuracy_metrics(config) + cost_metrics(config)))


def check_accuracy_estimator(config: Mapping[str, Any]) -> None:
    """What can be checked of the accuracy estimator without data or training: a `table`
    estimator's CSV is read (a missing file, a malformed CSV or an unknown --column fail)."""
    if config["estimator"] == "table":
        _accuracy_estimator(config, {})


def needs_data(config: Mapping[str, Any]) -> bool:
    return get_estimator(config["estimator"]).needs_data


def load_config_data(config: Mapping[str, Any]):
    """The data set of `config` (warnings, e.g. the digits fallback, surface as warnings)."""
    from estimators.data import load_data

    data = config["data"]
    return load_data(data["name"], data["dir"], val_fraction=data["val_fraction"],
                     seed=data.get("split_seed", 0))


def prepare(config: Mapping[str, Any], log: Callable[[str], None] | None = None) -> Shared:
    """The heavy objects every evaluator copy shares: the data set and, for the `supernet`
    estimator, the trained supernet's weights (trained once and cached on disk; `log` gets
    one line per event and, when given, a progress bar shows the training)."""
    shared: Shared = {}
    if needs_data(config):
        shared["data"] = load_config_data(config)
    get_estimator(config["estimator"]).prepare(config, shared, log)
    return shared


class Evaluator:
    """All metrics of an architecture under one config; deterministic; cached by key."""

    def __init__(self, config: Mapping[str, Any], shared: Shared | None = None):
        self.config = dict(config)
        self.space: SearchSpace = get_space(config["space"])
        self.shared = shared if shared is not None else prepare(config)
        from estimators.flops import FlopsEstimator

        self._flops = FlopsEstimator(num_classes=config["cost_classes"])
        self._latency = _latency_predictor(config["device"], self.space, config["cost_classes"])
        self._accuracy: Callable[[Arch], Mapping[str, Any]] | None = None
        self._proxies: Any = None  # the ProxyEstimator of `cheap_proxies`, built on first use
        self._cost_cache: dict[str, dict[str, float]] = {}
        self._cache: dict[str, Metrics] = {}

    @property
    def accuracy(self) -> Callable[[Arch], Mapping[str, Any]]:
        """The accuracy estimator, built on first use (cost-only callers never pay for it)."""
        if self._accuracy is None:
            self._accuracy = _accuracy_estimator(self.config, self.shared)
        return self._accuracy

    def cost(self, arch: Arch) -> dict[str, float]:
        """The cheap metrics: flops, flops_sparse, params, with a device latency_ms, and the
        config's `cheap_proxies` (NaN for an arch a proxy cannot score)."""
        key = arch.key
        if key not in self._cost_cache:
            metrics = self._flops(arch)
            if self._latency is not None:
                metrics["latency_ms"] = float(self._latency.latency_ms(arch))
            if self.config.get("cheap_proxies"):
                metrics.update(self._proxy_scores(arch))
            self._cost_cache[key] = metrics
        return dict(self._cost_cache[key])

    def _proxy_scores(self, arch: Arch) -> dict[str, float]:
        names = list(self.config["cheap_proxies"])
        if self._proxies is None:
            from estimators.accuracy import ProxyEstimator

            data = self.shared.get("data") or load_config_data(self.config)
            # at the accuracy estimator's resolution, if it has one (a ViT needs "arch" on
            # images smaller than its patches)
            self._proxies = ProxyEstimator(data, names[0], proxies=names,
                                           seed=self.config["seed"],
                                           resolution=self.config["options"].get("resolution"))
        try:
            with torch_threads(self.config["threads"]), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = self._proxies.estimate(arch)
        except Exception:  # an arch a proxy cannot score ranks last, never stops the search
            return dict.fromkeys(names, math.nan)
        return {n: float(scores[n]) for n in names}

    def __call__(self, arch: Arch) -> Metrics:
        """Cost and accuracy metrics, plus `eval_seconds`; `error` (and no `acc`) if the
        accuracy estimator raised."""
        key = arch.key
        if key not in self._cache:
            start = time.perf_counter()
            costs = self.cost(arch)
            result: Metrics = dict(costs)
            try:
                with torch_threads(self.config["threads"]), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # per-arch warnings would flood the log
                    result.update(self.accuracy(arch))
                # A proxy score of the same name (`params`, counted on the data set's head)
                # must not replace the cost that budgets and strategies are checked against.
                result.update(costs)
            except Exception as exc:  # an arch the estimator cannot score fails alone
                result["error"] = one_line(exc)
            result["eval_seconds"] = round(time.perf_counter() - start, 4)
            self._cache[key] = result
        return dict(self._cache[key])

    def evaluate_key(self, key: str) -> Metrics:
        """`__call__` by key (what runners send over the wire)."""
        return self(self.space.decode(key.partition(":")[2]))


def is_timing(metric: str) -> bool:
    """Wall-time metrics (`eval_seconds`, `supernet_seconds`...) vary between runs."""
    return metric in TIMING_METRICS or metric.endswith("_seconds")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric part of a result (what a strategy is told)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if name in TEXT_METRICS or isinstance(value, str) or value is None:
            continue
        out[name] = float(value)
    return out


def same_metrics(a: Mapping[str, Any], b: Mapping[str, Any], rel: float = 1e-9) -> bool:
    """Equal results, timings aside (for checking runners and resumes agree)."""
    keys = {k for k in set(a) | set(b) if not is_timing(k)}
    for key in keys:
        x, y = a.get(key), b.get(key)
        if isinstance(x, float) and isinstance(y, float):
            if math.isnan(x) and math.isnan(y):
                continue
            if not math.isclose(x, y, rel_tol=rel, abs_tol=1e-12):
                return False
        elif x != y:
            return False
    return True


# --- building the parts ----------------------------------------------------------------------
def _accuracy_estimator(config: Mapping[str, Any],
                        shared: Shared) -> Callable[[Arch], Mapping[str, Any]]:
    return get_estimator(config["estimator"]).from_config(config, shared)


def _latency_predictor(device: str | None, space: SearchSpace, classes: int | None):
    """The latency predictor of `device` for `space` (`cpu`/`cuda`: this machine's lookup
    table; another name: a fitted or imported device), or None without a device."""
    if device is None:
        return None
    from estimators.latency import open_predictor

    # No on-demand measuring: a block missing from the table must not be timed inside a
    # search worker (its timing would be disturbed by the other workers).
    return open_predictor(space, device, num_classes=classes, measure_missing=False)


def supernet_subnet(config: Mapping[str, Any], shared: Shared, arch: Arch) -> Any:
    """The standalone network of `arch` with the trained supernet's weights and BatchNorm
    recalibrated (what the `supernet` estimator scores)."""
    return _accuracy_estimator(config, shared).extract(arch)
