"""What defines a search (`SearchSettings`), parsed and checked before anything is written.

Every check that needs neither data nor training runs here or in `SearchJob.__init__`, before a
run folder is made: a mistake in a setting prints one `error: ...` line and the corrected
command can be run at once (nothing to clean up, no folder that "already holds a run").

Each setting that is a flag of `nas search` says so in its field's metadata (`flag(...)`):
`setting_flags()` is the one mapping the command line is built from, read back with and
written out with (`settings_to_argv`, config.json's `command`).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nas.checkpoint import CHECKPOINT_FORMAT
from nas.objectives import Constraint, Objective
from nas.results import is_int, read_json
from search_spaces import NasError, first_line
from search_spaces.settings import MAX_CLASSES

DEFAULT_TRIALS = 100
DEFAULT_BATCH = 8
METRIC_ALIASES = {"latency": "latency_ms", "accuracy": "acc", "macs": "flops"}


class SearchError(NasError):
    """A search that cannot run as asked (bad objective, limits, run folder...)."""


# --- parsing -------------------------------------------------------------------------------------
def parse_duration(text: str | float | None) -> float | None:
    """Seconds from `90`, `90s`, `15m`, `1.5h`."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*", text.lower())
    if not match:
        raise SearchError(f"malformed time limit {text!r}: expected seconds or NUMBER[s|m|h], "
                          f"e.g. 90, 15m, 1.5h")
    value = float(match.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600,
                                     None: 1}[match.group(2)]
    if value <= 0:
        raise SearchError(f"time limit {text!r} must be positive")
    return value


# --- settings as flags ---------------------------------------------------------------------------
def flag(name: str, help: str, *, type: Callable[[str], Any] | None = None,
         choices: Callable[[], Sequence[str]] | None = None,
         parse: Callable[[Any], Any] | None = None, resumable: bool = False,
         switch: bool = False) -> dict[str, Any]:
    """The field metadata that makes a setting a flag of `nas search`. `type`: argparse's
    conversion; `choices`: the accepted values (looked up when the parser is built); `parse`:
    the conversion to the setting's value (its mistakes are one-line errors, argparse's would
    print the usage); `resumable`: may change with `--resume`; `switch`: a flag without a
    value that turns off a setting that is on by default."""
    return {"flag": name, "help": help, "type": type, "choices": choices, "parse": parse,
            "resumable": resumable, "switch": switch}


@dataclass(frozen=True)
class SettingFlag:
    """One setting as a flag, from its field's `flag` metadata."""

    name: str  # the setting
    flag: str
    help: str
    default: Any  # dataclasses.MISSING for a required setting
    type: Callable[[str], Any] | None = None
    choices: Callable[[], Sequence[str]] | None = None
    parse: Callable[[Any], Any] | None = None
    resumable: bool = False
    switch: bool = False

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments (argparse's name for the flag)."""
        return self.flag.lstrip("-").replace("-", "_")

    def add_to(self, parser: Any) -> None:
        """Add the flag to an `argparse` parser."""
        if self.switch:
            parser.add_argument(self.flag, action="store_true", help=self.help)
            return
        options: dict[str, Any] = {}
        if self.type is not None:
            options["type"] = self.type
        if self.choices is not None:
            options["choices"] = self.choices()
        parser.add_argument(self.flag, default=None, help=self.help, **options)

    def given(self, args: Any) -> bool:
        """The flag is on the command line."""
        value = getattr(args, self.dest)
        return bool(value) if self.switch else value is not None

    def value(self, args: Any) -> Any:
        """The setting from the parsed arguments: its default when the flag is not given."""
        if not self.given(args):
            return self.default
        if self.switch:
            return not self.default
        given = getattr(args, self.dest)
        return self.parse(given) if self.parse is not None else given

    def argv(self, value: Any) -> list[str]:
        """The command-line words that set `value` (none for the default)."""
        if value == self.default or value is None:
            return []
        return [self.flag] if self.switch else [self.flag, str(value)]


def setting_flags() -> list[SettingFlag]:
    """Every setting that is a flag of `nas search`, in the order `--help` lists them."""
    return [SettingFlag(f.name, default=f.default, **{k: v for k, v in f.metadata.items()})
            for f in fields(SearchSettings) if "flag" in f.metadata]


def _strategies() -> Sequence[str]:
    from nas.strategies import list_strategies

    return list_strategies()


def _estimators() -> Sequence[str]:
    from estimators.registry import list_estimators

    return list_estimators()


def _datasets() -> Sequence[str]:
    from estimators.data import DATASETS

    return DATASETS


@dataclass
class SearchSettings:
    """Everything that defines a search (config.json holds these, `to_json`)."""

    space: str = field(metadata=flag("--space", "space name or path to a YAML/JSON space file"))
    budget: str | None = field(default=None, metadata=flag(
        "--budget", "e.g. 300M-flops, 5M-params, 20ms-latency, joined by commas"))
    strategy: str = field(default="nsga2", metadata=flag(
        "--strategy", "search strategy (default nsga2: multi-objective evolution)",
        choices=_strategies))
    strategy_options: dict[str, Any] = field(default_factory=dict)  # from --option
    estimator: str = field(default="supernet", metadata=flag(
        "--estimator", "accuracy estimator (default supernet, trained once and cached; proxy "
                       "for a fast first look)", choices=_estimators))
    estimator_options: dict[str, Any] = field(default_factory=dict)  # from --option, --proxy...
    objectives: str | None = field(default=None, metadata=flag(  # e.g. "acc:max,latency_ms:min"
        "--objectives", "METRIC[:max|:min] joined by commas (default acc,flops; acc,latency_ms "
                        "with --device)"))
    data: str = field(default="fashion-mnist", metadata=flag(
        "--data", "data set (default fashion-mnist; scikit-learn's digits when it is not "
                  "installed)", choices=_datasets))
    data_dir: str | None = field(default=None, metadata=flag("--data-dir",
                                                             "folder of the data set"))
    val_fraction: float = field(default=1 / 6, metadata=flag(
        "--val-fraction", "share of the training set held out for validation (default 1/6)",
        type=float))
    device: str | None = field(default=None, metadata=flag(
        "--device", "latency device (adds latency_ms; see `nas latency`)"))
    trials: int | None = field(default=None, metadata=flag(
        "--trials", "architectures to evaluate (default 100 when no --time-limit)", type=int,
        resumable=True))
    time_limit: float | None = field(default=None, metadata=flag(  # seconds of evaluation loop
        "--time-limit", "stop asking for new architectures after this long (seconds, or 15m, "
                        "1h)", parse=parse_duration, resumable=True))
    workers: int | None = field(default=None, metadata=flag(  # 0: this process
        "--workers", "Ray workers (default one per CPU of the cluster; 0 evaluates in this "
                     "process without Ray)", type=int, resumable=True))
    address: str | None = field(default=None, metadata=flag(
        "--address", "join a running Ray cluster (HOST:PORT or auto) instead of starting one "
                     "inside this process", resumable=True))
    seed: int = field(default=0, metadata=flag(
        "--seed", "seed of every random choice (default 0)", type=int))
    batch_size: int | None = field(default=None, metadata=flag(
        "--batch-size", "architectures asked per batch (default 8 or --workers if larger); "
                        "results depend on it, not on the runner", type=int))
    threads: int = field(default=1, metadata=flag(
        "--threads", "torch threads per evaluation (default 1)", type=int))
    cost_classes: int | None = field(default=None, metadata=flag(
        "--cost-classes", "classifier outputs FLOPs/params are counted with (default the "
                          "space's own head, so budgets read like published figures)",
        type=int))
    anchors: bool = field(default=True, metadata=flag(
        "--no-anchors", "do not evaluate the space's reference networks for the plot",
        switch=True))

    def to_json(self) -> dict[str, Any]:
        """The settings as plain data (config.json's `settings`)."""
        return asdict(self)

    @staticmethod
    def from_json(values: Mapping[str, Any]) -> SearchSettings:
        """Settings from `to_json`'s form (names this version does not know are ignored)."""
        names = {f.name for f in fields(SearchSettings)}
        return SearchSettings(**{k: v for k, v in values.items() if k in names})


def parse_objectives(text: str | None, strategy: str, device: str | None) -> list[Objective]:
    """`metric[:max|:min]` joined by commas. Default: acc up and flops (latency_ms with a
    device) down; acc alone for single-objective strategies."""
    if text is None or not text.strip():
        if not multi_objective(strategy):
            return [Objective("acc", "maximize")]
        return [Objective("acc", "maximize"),
                Objective("latency_ms" if device else "flops", "minimize")]
    objectives = []
    for part in (p.strip() for p in text.split(",")):
        metric, _, direction = part.partition(":")
        metric = METRIC_ALIASES.get(metric.strip().lower(), metric.strip())
        direction = direction.strip().lower()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", metric) or direction not in (
                "", "max", "min", "maximize", "minimize"):
            raise SearchError(f"malformed objective {part!r}: expected METRIC[:max|:min] joined "
                              f"by commas, e.g. acc,flops or acc:max,latency_ms:min")
        if not direction:
            direction = "max" if metric.startswith("acc") else "min"
        objectives.append(Objective(metric, "maximize" if direction.startswith("max")
                                    else "minimize"))
    if len({o.metric for o in objectives}) != len(objectives):
        raise SearchError(f"objectives {text!r} name a metric twice")
    return objectives


def multi_objective(strategy: str) -> bool:
    """The strategy `strategy` optimises several objectives (an unknown name is left to the
    strategy registry's own error)."""
    from nas.strategies import STRATEGIES, get_strategy

    return strategy not in STRATEGIES or get_strategy(strategy).multi_objective


# --- checks --------------------------------------------------------------------------------------
# Upper bounds: larger values are typos (10^23 trials would run for ever; 10^23 threads or
# classes overflow torch), not requests.
MAX_TRIALS = 1_000_000_000
MAX_WORKERS = 100_000  # and architectures per batch
MAX_THREADS = 1024

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_settings(s: SearchSettings) -> None:
    """The plain values of `s` (types and ranges), each mistake one line naming the flag."""
    if not isinstance(s.space, str) or not s.space.strip():
        raise SearchError(f"--space must name a space, got {s.space!r}")
    if s.trials is not None and not (is_int(s.trials) and 1 <= s.trials <= MAX_TRIALS):
        raise SearchError(f"--trials must be from 1 to {MAX_TRIALS:,}, got {s.trials}")
    if s.time_limit is not None and not (_is_number(s.time_limit) and s.time_limit > 0):
        raise SearchError(f"--time-limit must be positive, got {s.time_limit}")
    if s.batch_size is not None and not (is_int(s.batch_size)
                                         and 1 <= s.batch_size <= MAX_WORKERS):
        raise SearchError(f"--batch-size must be from 1 to {MAX_WORKERS:,}, got {s.batch_size}")
    if s.workers is not None and not (is_int(s.workers) and 0 <= s.workers <= MAX_WORKERS):
        raise SearchError(f"--workers must be 0 (this process) up to {MAX_WORKERS:,}, "
                          f"got {s.workers}")
    if s.address and s.workers == 0:
        raise SearchError("--address joins a Ray cluster; it needs --workers of at least 1 "
                          "(or no --workers: one per CPU of the cluster)")
    if not (is_int(s.seed) and 0 <= s.seed < 2 ** 63):  # what torch.manual_seed takes
        raise SearchError(f"--seed must be a whole number from 0 to 2**63-1, got {s.seed!r}")
    if not (is_int(s.threads) and 1 <= s.threads <= MAX_THREADS):
        raise SearchError(f"--threads must be from 1 to {MAX_THREADS}, got {s.threads!r}")
    if s.cost_classes is not None and not (is_int(s.cost_classes)
                                           and 1 <= s.cost_classes <= MAX_CLASSES):
        raise SearchError(f"--cost-classes must be from 1 to {MAX_CLASSES:,}, "
                          f"got {s.cost_classes!r}")
    if not (_is_number(s.val_fraction) and 0.0 < s.val_fraction < 1.0):
        raise SearchError(f"--val-fraction must be between 0 and 1 (exclusive), "
                          f"got {s.val_fraction!r}")
    from estimators.data import ALIASES, DATASETS

    if not isinstance(s.data, str) or ALIASES.get(s.data.lower(), s.data.lower()) not in DATASETS:
        raise SearchError(f"unknown data set {s.data!r}; known: {', '.join(DATASETS)}")
    if s.data_dir is not None and not Path(s.data_dir).expanduser().is_dir():
        raise SearchError(f"--data-dir {s.data_dir} is not a folder")
    if s.data_dir is None and s.data.lower() in ("cifar10", "cifar-10", "folder"):
        raise SearchError(f"--data {s.data} needs --data-dir (the folder holding it)")
    for name in ("strategy_options", "estimator_options"):
        if not isinstance(getattr(s, name), dict):
            raise SearchError(f"{name} must be a dict of options, got {getattr(s, name)!r}")


def check_strategy_options(strategy: str, defaults: Mapping[str, Any],
                           options: Mapping[str, Any]) -> None:
    """An option given with the wrong kind of value (text for a number, a number for a
    list...), checked against the kind of its default before the strategy sees it."""
    for name, value in options.items():
        default = defaults.get(name)
        if default is None or value is None:
            continue
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif _is_number(default):
            ok, kind = _is_number(value) and math.isfinite(value), "a number"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "text"
        elif isinstance(default, (list, tuple)):
            ok, kind = isinstance(value, (list, tuple)), "a list, e.g. [1,2]"
        elif isinstance(default, dict):
            ok, kind = isinstance(value, dict), 'an object, e.g. {"r":160}'
        else:
            continue
        if not ok:
            raise SearchError(f"strategy {strategy}: --option {name}={json_value(value)} must be "
                              f"{kind}")


def check_metrics(objectives: Sequence[Objective], constraints: Sequence[Constraint],
                  available: Sequence[str], estimator: str) -> None:
    """Every objective and budget metric is one the evaluations report (else the whole search
    would give no usable trial)."""
    for what, metrics in (("objective", [o.metric for o in objectives]),
                          ("budget metric", [c.metric for c in constraints])):
        unknown = [m for m in metrics if m not in available]
        if unknown:
            raise SearchError(f"unknown {what} {unknown[0]!r}: estimator {estimator} with these "
                              f"settings reports {', '.join(available)} (aliases: "
                              f"{', '.join(f'{k}={v}' for k, v in METRIC_ALIASES.items())})")


def check_objectives(s: SearchSettings, objectives: Sequence[Objective],
                     constraints: Sequence[Constraint]) -> None:
    """Objectives and budget that the device and the strategy can work with."""
    latency = [c for c in constraints if c.metric == "latency_ms"]
    latency += [o for o in objectives if o.metric == "latency_ms"]
    if latency and not s.device:
        raise SearchError("a latency budget or objective needs --device (a device with a "
                          "latency table or a fitted predictor)")
    if len(objectives) > 1 and not multi_objective(s.strategy):
        raise SearchError(f"strategy {s.strategy!r} optimises one objective, got "
                          f"{[o.metric for o in objectives]}; use nsga2, tpe or random "
                          f"for several, or --objectives acc")


def check_metric_options(strategy: str, options: Mapping[str, Any], available: Sequence[str],
                         costs: Sequence[str]) -> None:
    """Strategy options that name metrics (declared with `option(..., metric=...)`): a `cost`
    option names cheap metrics of the cost_fn, a `reported` one any reported metric."""
    from nas.strategies import get_strategy
    from nas.strategies.options import metric_options

    for name, kind in metric_options(get_strategy(strategy).options_type).items():
        value = options.get(name)
        known = costs if kind == "cost" else available
        names = value if isinstance(value, (list, tuple)) else [] if value is None else [value]
        if any(n not in known for n in names):
            raise SearchError(f"strategy {strategy}: --option {name}={json_value(value)} is not "
                              f"a metric of this search; known: {', '.join(known)}")


def strategy_failure(strategy: str, exc: Exception) -> SearchError:
    """A strategy option that the strategy's own checks choke on (wrong kind of value)."""
    return SearchError(f"strategy {strategy}: bad --option value ({type(exc).__name__}: "
                       f"{first_line(exc)})")


# --- config.json ---------------------------------------------------------------------------------
def settings_to_argv(settings: SearchSettings) -> list[str]:
    """The command-line options that reproduce `settings` (config.json's `command`): the flags
    of the settings that differ from their defaults, then the options, then the switches."""
    words, switches = [], []
    for spec in setting_flags():
        (switches if spec.switch else words).extend(spec.argv(getattr(settings, spec.name)))
    for name, value in {**settings.strategy_options, **settings.estimator_options}.items():
        words += ["--option", f"{name}={json_value(value)}"]
    return words + switches


def json_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def resume_settings(run_dir: str | Path) -> SearchSettings:
    """The settings a run folder was started with."""
    config = read_json(Path(run_dir) / "config.json")
    if not isinstance(config, dict) or config.get("format") != CHECKPOINT_FORMAT or \
            not isinstance(config.get("settings"), dict):
        raise SearchError(f"{run_dir}/config.json is not a search run of this version")
    try:
        settings = SearchSettings.from_json(config["settings"])
    except TypeError as exc:
        raise SearchError(f"{run_dir}/config.json: bad settings ({first_line(exc)})") from None
    if not isinstance(settings.space, str):
        raise SearchError(f"{run_dir}/config.json: settings.space must be a space name")
    return settings

