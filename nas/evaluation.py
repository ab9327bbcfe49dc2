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
import os
import time
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

from search_spaces import Arch, NasError, SearchSpace, first_line, get_space

Metrics = dict[str, Any]  # numbers, plus `acc_estimator` and `error` as text
Shared = dict[str, Any]  # heavy objects made once per search (see `prepare`)

ESTIMATORS = ("supernet", "proxy", "train", "table")
TEXT_METRICS = ("acc_estimator", "error")  # the non-numeric columns of a result
# Metrics that vary from run to run and never count when comparing results.
TIMING_METRICS = ("eval_seconds", "train_seconds")
# Options each estimator accepts, with their defaults.
ESTIMATOR_OPTIONS: dict[str, dict[str, Any]] = {
    "proxy": {"proxy": "jacov", "proxies": None, "batch_size": 64, "resolution": None},
    "train": {"epochs": 1.0, "batch_size": 128, "lr": 0.1, "train_images": None,
              "eval_images": None, "resolution": None},
    "table": {"table": None, "column": None},
    # Recipe fields (None: the recipe's default), the estimator's images, where trained
    # supernets are cached and how many processes train it (Ray Train, data-parallel).
    "supernet": {"epochs": None, "train_images": None, "batch_size": None, "lr": None,
                 "random_subnets": None, "resolution": None, "calibration_images": 500,
                 "eval_images": 2000, "cache_dir": None, "train_workers": 1},
}
RECIPE_OPTIONS = ("epochs", "train_images", "batch_size", "lr", "random_subnets", "resolution")
# The validation split is drawn with its own seed, not the search's: a search with another seed
# must see the same split, or it could not reuse the supernet cached for it.
DATA_DEFAULTS: dict[str, Any] = {"name": "fashion-mnist", "dir": None, "val_fraction": 1 / 6,
                                 "split_seed": 0}


class EvaluationError(NasError):
    """A search configuration that cannot be evaluated (bad estimator, option or device)."""


def evaluation_config(space: str, estimator: str = "supernet",
                      options: Mapping[str, Any] | None = None,
                      data: Mapping[str, Any] | None = None, device: str | None = None,
                      seed: int = 0, threads: int = 1,
                      cost_classes: int | None = None) -> dict[str, Any]:
    """A validated, complete evaluator config (plain JSON data).

    `cost_classes`: classifier outputs that FLOPs/params/latency are counted with (None: the
    space's own head, e.g. ImageNet's 1000, so budgets read like published figures; the
    accuracy estimators always build the network for the data set's classes)."""
    if estimator not in ESTIMATORS:
        raise EvaluationError(f"unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
    accepted = ESTIMATOR_OPTIONS[estimator]
    options = {k: v for k, v in dict(options or {}).items() if v is not None}
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise EvaluationError(f"estimator {estimator!r}: unknown options {unknown}; "
                              f"accepted: {', '.join(accepted)}")
    data_config = {**DATA_DEFAULTS, **{k: v for k, v in dict(data or {}).items() if v is not None}}
    bad = sorted(set(data_config) - set(DATA_DEFAULTS))
    if bad:
        raise EvaluationError(f"unknown data settings {bad}; accepted: {', '.join(DATA_DEFAULTS)}")
    if estimator == "table" and not options.get("table"):
        raise EvaluationError("estimator 'table' needs a CSV with an 'arch' column "
                              "(--table PATH, e.g. nb201.csv)")
    if not isinstance(threads, int) or threads < 1:
        raise EvaluationError(f"threads must be a positive integer, got {threads!r}")
    val_fraction = data_config["val_fraction"]
    if not (_is_number(val_fraction) and 0.0 < val_fraction < 1.0):
        raise EvaluationError(f"val_fraction must be between 0 and 1 (exclusive), "
                              f"got {val_fraction!r}")
    get_space(space)  # an unknown space fails here, in the driver, with the list of names
    config = {"space": space, "estimator": estimator, "options": {**accepted, **options},
              "data": data_config, "device": device, "seed": int(seed), "threads": threads,
              "cost_classes": cost_classes}
    _check_options(config, given=options)
    return config


# --- checks of a config, before any data or training ------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _proxy_names() -> tuple[str, ...]:
    from estimators.proxies import PROXY_NAMES

    return PROXY_NAMES


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int1": (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    "int2": (lambda v: _is_int(v) and v >= 2, "a whole number >= 2"),
    "int0": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
    "whole1": (lambda v: _is_number(v) and float(v).is_integer() and v >= 1,
               "a whole number >= 1"),
    "positive": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "text": (lambda v: isinstance(v, str) and bool(v), "text"),
    "resolution": (lambda v: v == "arch" or (_is_int(v) and v > 0),
                   "'arch' or a positive number of pixels"),
    "proxy": (lambda v: isinstance(v, str) and v in _proxy_names(), "a proxy name"),
    "proxies": (lambda v: isinstance(v, list) and bool(v) and all(
        isinstance(p, str) and p in _proxy_names() for p in v), "a list of proxy names"),
}
# The kind of value each option takes (None, the default of most, is always accepted).
OPTION_KINDS: dict[str, dict[str, str]] = {
    "proxy": {"proxy": "proxy", "proxies": "proxies", "batch_size": "int2",
              "resolution": "resolution"},
    "train": {"epochs": "positive", "batch_size": "int1", "lr": "positive",
              "train_images": "int1", "eval_images": "int1", "resolution": "resolution"},
    "table": {"table": "text", "column": "text"},
    "supernet": {"epochs": "whole1", "train_images": "int1", "batch_size": "int2",
                 "lr": "positive", "random_subnets": "int0", "resolution": "resolution",
                 "calibration_images": "int2", "eval_images": "int1", "cache_dir": "text",
                 "train_workers": "int1"},
}


def _check_options(config: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """The value of every option the user gave, and the recipe they make, without data."""
    estimator = config["estimator"]
    for name, value in given.items():
        check, kind = _CHECKS[OPTION_KINDS[estimator][name]]
        if not check(value):
            hint = f" ({', '.join(_proxy_names())})" if kind.startswith(("a proxy", "a list of p")) \
                else ""
            raise EvaluationError(f"estimator {estimator!r}: {name} must be {kind}{hint}, "
                                  f"got {value!r}")
    try:
        if estimator == "supernet":
            _recipe(config)
        elif estimator == "train":
            _train_recipe(config["options"])
    except NasError as exc:
        raise EvaluationError(f"estimator {estimator!r}: {first_line(exc)}") from None


def accuracy_metrics(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The numeric metrics the config's accuracy estimator reports for every architecture
    (timings aside: they vary from run to run)."""
    name, options = config["estimator"], config["options"]
    if name == "proxy":
        proxies = options["proxies"] if options["proxies"] is not None else _proxy_names()
        return tuple(dict.fromkeys(["acc", options["proxy"], *proxies]))
    if name == "train":
        return ("acc", "train_loss", "train_steps")
    if name == "supernet":
        return ("acc", "eval_images")
    return ("acc",)


def available_metrics(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Every metric an evaluation under `config` reports: accuracy, then costs."""
    costs = ("flops", "flops_sparse", "params") + (("latency_ms",) if config["device"] else ())
    return tuple(dict.fromkeys(accuracy_metrics(config) + costs))


def check_accuracy_estimator(config: Mapping[str, Any]) -> None:
    """What can be checked of the accuracy estimator without data or training: a `table`
    estimator's CSV is read (a missing file, a malformed CSV or an unknown --column fail)."""
    if config["estimator"] == "table":
        _accuracy_estimator(config, {})


def needs_data(config: Mapping[str, Any]) -> bool:
    return config["estimator"] in ("proxy", "train", "supernet")


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
    if config["estimator"] == "supernet":
        # Training runs before any evaluation, alone on the machine: every core (2 threads
        # train ~1.5x faster than 1 on two idle cores); evaluations keep the config's count.
        with torch_threads(max(int(config["threads"]), available_cores())):
            shared["supernet"] = _supernet_weights(config, shared["data"], log)
    return shared


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with `count` torch threads (results do not depend on the caller's setting)."""
    import torch

    previous = torch.get_num_threads()
    if previous != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if previous != count:
            torch.set_num_threads(previous)


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
        self._cost_cache: dict[str, dict[str, float]] = {}
        self._cache: dict[str, Metrics] = {}

    @property
    def accuracy(self) -> Callable[[Arch], Mapping[str, Any]]:
        """The accuracy estimator, built on first use (cost-only callers never pay for it)."""
        if self._accuracy is None:
            self._accuracy = _accuracy_estimator(self.config, self.shared)
        return self._accuracy

    def cost(self, arch: Arch) -> dict[str, float]:
        """The cheap metrics: flops, flops_sparse, params and, with a device, latency_ms."""
        key = arch.key
        if key not in self._cost_cache:
            metrics = self._flops(arch)
            if self._latency is not None:
                metrics["latency_ms"] = float(self._latency.latency_ms(arch))
            self._cost_cache[key] = metrics
        return dict(self._cost_cache[key])

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
    name, options, seed = config["estimator"], config["options"], config["seed"]
    if name == "proxy":
        from estimators.accuracy import ProxyEstimator
        from estimators.proxies import PROXY_NAMES

        proxies = options["proxies"] if options["proxies"] is not None else PROXY_NAMES
        return ProxyEstimator(shared["data"], options["proxy"], proxies=tuple(proxies),
                              batch_size=options["batch_size"], seed=seed,
                              resolution=options["resolution"])
    if name == "train":
        from estimators.accuracy import TrainEstimator

        return TrainEstimator(shared["data"], _train_recipe(options), seed, "val",
                              options["resolution"])
    if name == "table":
        from estimators.accuracy import TableEstimator

        return TableEstimator(options["table"], config["space"], options["column"])
    return _supernet_estimator(config, shared)


def _latency_predictor(device: str | None, space: SearchSpace, classes: int | None):
    """The latency predictor of `device` for `space` (`cpu`/`cuda`: this machine's lookup
    table; another name: a fitted or imported device), or None without a device."""
    if device is None:
        return None
    from estimators.latency import open_predictor

    # No on-demand measuring: a block missing from the table must not be timed inside a
    # search worker (its timing would be disturbed by the other workers).
    return open_predictor(space, device, num_classes=classes, measure_missing=False)


def _train_recipe(options: Mapping[str, Any]):
    from estimators.train import TrainRecipe

    return TrainRecipe(epochs=options["epochs"], batch_size=options["batch_size"],
                       lr=options["lr"], train_images=options["train_images"],
                       eval_images=options["eval_images"])


def _recipe(config: Mapping[str, Any]):
    from estimators.supernet_training import SupernetRecipe

    options = config["options"]
    values = {k: options[k] for k in RECIPE_OPTIONS if options.get(k) is not None}
    if isinstance(values.get("epochs"), float) and values["epochs"].is_integer():
        values["epochs"] = int(values["epochs"])  # --epochs is a float for the train estimator
    return SupernetRecipe(**values)


def _supernet_weights(config: Mapping[str, Any], data: Any,
                      log: Callable[[str], None] | None) -> dict[str, Any]:
    """Train the supernet of the config's space on `data` (or load it from the cache): its
    weights as a plain state dict, plus where it is cached."""
    from estimators.supernet_training import train_supernet

    options = config["options"]
    # resume: an interrupted training (a killed search) continues from its last epoch.
    trained = train_supernet(config["space"], data, _recipe(config),
                             workers=int(options["train_workers"]), resume=True,
                             quiet=log is None, cache_dir=options["cache_dir"], log=log)
    if log is not None:
        log(f"supernet {'reused from' if trained.reused else 'trained into'} {trained.path}"
            + ("" if trained.reused else f" in {trained.seconds:.0f}s"))
    state = {k: v.detach().clone() for k, v in trained.supernet.state_dict().items()}
    return {"state": state, "key": trained.key, "path": str(trained.path),
            "reused": trained.reused, "train_seconds": trained.seconds}


def _supernet_estimator(config: Mapping[str, Any], shared: Shared):
    """The `supernet` estimator on the shared weights (each process rebuilds the supernet
    from its config and loads them: the weights travel, the module does not)."""
    from estimators.supernet_estimator import SupernetEstimator
    from estimators.supernet_training import supernet_for

    if "supernet" not in shared:
        raise EvaluationError("the supernet estimator needs prepare(config) to have trained "
                              "or loaded the supernet")
    recipe = _recipe(config)
    data = shared["data"]
    supernet = supernet_for(config["space"], data, recipe)
    supernet.load_state_dict(shared["supernet"]["state"])
    supernet.eval()
    options = config["options"]
    return SupernetEstimator(supernet, data, recipe=recipe,
                             calibration_images=int(options["calibration_images"]),
                             eval_images=options["eval_images"], seed=config["seed"])


def supernet_subnet(config: Mapping[str, Any], shared: Shared, arch: Arch) -> Any:
    """The standalone network of `arch` with the trained supernet's weights and BatchNorm
    recalibrated (what the `supernet` estimator scores)."""
    return _supernet_estimator(config, shared).extract(arch)
