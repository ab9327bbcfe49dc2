"""The `Strategy` ask/tell interface every search strategy implements.

A strategy proposes architectures (`ask`), learns from their measured metrics (`tell`), and can
be checkpointed as plain JSON data (`state_dict` / `load_state_dict`). The contract, checked by
tests/nas/test_strategy_contract.py for every registered strategy:

- the same seed and the same tells give the same proposals;
- every proposal satisfies the hard constraints (repaired with the cheap `cost_fn`);
- no architecture is proposed twice, nor one already told;
- a failed evaluation (NaN or missing objective) is recorded and never breaks the search;
- a state round trip in mid-search gives exactly the same continuation.

A strategy describes itself: `name`, `multi_objective` (accepts several objectives) and
`options_type`, a frozen dataclass of its options (defaults, help text, value checks; see
`nas.strategies.options`). `prepare(context)` runs once before the first `ask` of a search
job (e.g. the differentiable strategy runs its sweep on Ray Tune there).

Randomness: each `ask` call draws from a generator seeded by (seed, number of earlier asks),
so a checkpoint needs no generator state and a restored strategy continues identically.
"""
from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nas.objectives import Constraint, Objective, all_satisfied
from nas.pareto import pareto_mask
from nas.sampling import CostFn, repair
from nas.strategies.errors import StrategyError
from nas.strategies.neighbourhood import neighbours
from nas.strategies.options import OptionError, StrategyOptions, option_defaults
from nas.strategies.warmstart import WarmStartOptions, ranked_pool
from search_spaces import Arch, SearchSpace

STATE_FORMAT = 1
# Spaces up to this many architectures are enumerated when random proposals stop finding new
# ones, so a small space is searched to exhaustion instead of giving up early.
ENUMERATE_LIMIT = 200_000


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy may need from the search job before the first ask."""

    run_dir: Path
    space: str                      # the settings' space (a name or a space-file path)
    constraints: tuple[Constraint, ...]
    eval_config: Mapping[str, Any]  # the evaluator's plain config
    seed: int
    threads: int
    workers: int | None             # 0: in this process, no Ray
    address: str | None
    log: Callable[[str], None]


@dataclass(frozen=True)
class NoOptions(StrategyOptions):
    """A strategy without options."""


@dataclass(frozen=True)
class Trial:
    """One told evaluation. `failed`: an objective is missing or not finite. `feasible`: the told
    (or cheaply estimated) metrics meet every constraint."""

    arch: Arch
    metrics: Mapping[str, float]
    failed: bool
    feasible: bool

    @property
    def ok(self) -> bool:
        return not self.failed and self.feasible


class Strategy(ABC):
    """Base class. Subclasses set `name`, `multi_objective`, `options_type` (a frozen
    `StrategyOptions` dataclass) and implement `_propose`; they keep their own learned state in
    `_extra_state` / `_load_extra_state`. `options` holds the option values by name (what a
    checkpoint stores), `opts` the same as the validated dataclass."""

    name: ClassVar[str] = ""
    multi_objective: ClassVar[bool] = False  # accepts several objectives
    needs_tensors: ClassVar[bool] = False  # imports torch (e.g. a supernet-based strategy)
    options_type: ClassVar[type[StrategyOptions]] = NoOptions
    defaults: ClassVar[Mapping[str, Any]] = {}  # derived from options_type, per subclass

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.defaults = option_defaults(cls.options_type)

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective],
                 constraints: Sequence[Constraint] = (), cost_fn: CostFn | None = None,
                 seed: int = 0, **options: Any):
        self.space = space
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        self.cost_fn = cost_fn
        self.seed = int(seed)
        if not self.objectives:
            raise StrategyError(f"strategy {self.name!r} needs at least one objective")
        if len(self.objectives) > 1 and not self.multi_objective:
            raise StrategyError(
                f"strategy {self.name!r} optimises one objective, got "
                f"{[o.metric for o in self.objectives]}; use nsga2, tpe or random for several")
        if self.constraints and cost_fn is None:
            raise StrategyError(f"constraints {[str(c) for c in self.constraints]} need a cost_fn "
                                f"that estimates {[c.metric for c in self.constraints]}")
        self.opts = self.parse_options(options)
        self.options: dict[str, Any] = self.opts.as_dict()
        self.trials: list[Trial] = []
        self._told: dict[Arch, int] = {}
        self._pending: dict[Arch, None] = {}
        self._cost_cache: dict[Arch, Mapping[str, float]] = {}
        self._neighbour_cache: dict[Arch, list[Arch]] = {}
        self._asks = 0
        self._exhausted = False
        self._warm_ranked: list[Arch] | None = None  # the warm start's pool, best first
        self._known: set[str] | None = None  # see known_objectives
        if getattr(self.opts, "warm_start", None) is not None and cost_fn is None:
            raise StrategyError(f"{self.name}: warm_start {self.opts.warm_start!r} needs a "
                                f"cost_fn that gives it")
        self._setup()

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> StrategyOptions:
        """The validated options (defaults for those not given); a StrategyError naming the
        strategy and the option for an unknown option or a bad value."""
        unknown = sorted(set(options) - set(cls.defaults))
        if unknown:
            raise StrategyError(f"strategy {cls.name!r}: unknown options {unknown}; "
                                f"accepted: {sorted(cls.defaults) or 'none'}")
        try:
            return cls.options_type(**options)
        except OptionError as exc:
            raise StrategyError(f"{cls.name}: {exc}") from None

    def prepare(self, context: StrategyContext) -> None:
        """Called by the search job once, before the runner starts and before the first `ask`
        (also on a resumed run, after `load_state_dict`). Nothing by default."""

    # --- what a subclass provides ---------------------------------------------------------------
    def _setup(self) -> None:
        """Check what the options need from the rest (cost_fn...) and build the initial
        learned state."""

    @abstractmethod
    def _propose(self, rng: np.random.Generator) -> Arch | None:
        """One new architecture (use `self._fresh`), or None when none is left."""

    def _observe(self, trial: Trial) -> None:
        """Learn from one told trial (already appended to `self.trials`)."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `_extra_state` saved (trials are restored before this is called)."""

    # --- the interface -----------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Arch]:
        """Up to `n` new architectures (fewer only when the space has no new feasible one)."""
        if not isinstance(n, int) or n < 1:
            raise StrategyError(f"ask(n) needs a positive integer, got {n!r}")
        rng = np.random.default_rng([self.seed, self._asks])
        self._asks += 1
        proposals: list[Arch] = []
        for _ in range(n):
            arch = None if self._exhausted else self._propose(rng)
            if arch is None:
                self._exhausted = True
                break
            if not self.is_new(arch):  # a subclass bug would silently waste evaluations
                raise RuntimeError(f"{self.name} proposed {arch.key} twice")
            self._pending[arch] = None
            proposals.append(arch)
        return proposals

    def tell(self, arch: Arch, metrics: Mapping[str, float | None]) -> Trial:
        """Record the evaluation of `arch`. NaN or missing objective metrics mark it failed."""
        if not self.space.contains(arch):
            raise StrategyError(f"{arch} is not an architecture of space {self.space.name!r}")
        if arch in self._told:
            raise StrategyError(f"{arch.key} was already told")
        self._pending.pop(arch, None)
        clean = {str(k): _as_float(k, v) for k, v in metrics.items()}
        failed = any(not math.isfinite(clean.get(o.metric, math.nan)) for o in self.objectives)
        trial = Trial(arch, clean, failed, self._satisfies(arch, clean))
        self._told[arch] = len(self.trials)
        self.trials.append(trial)
        self._observe(trial)
        return trial

    @property
    def done(self) -> bool:
        """True once no new feasible architecture is left to propose."""
        return self._exhausted

    @property
    def pending(self) -> list[Arch]:
        """Asked but not yet told, in the order asked."""
        return list(self._pending)

    def best(self) -> Trial | None:
        """The best successful feasible trial on the first objective."""
        ok = [t for t in self.trials if t.ok]
        if not ok:
            return None
        objective = self.objectives[0]
        return max(ok, key=lambda t: objective.sign() * t.metrics[objective.metric])

    def pareto_front(self) -> list[Trial]:
        """Successful feasible trials that no other one beats on every objective."""
        ok = [t for t in self.trials if t.ok]
        if not ok:
            return []
        points = np.array([self.minimised(t) for t in ok])
        return [t for t, keep in zip(ok, pareto_mask(points)) if keep]

    # --- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically, as JSON-serialisable plain data."""
        return {
            "format": STATE_FORMAT,
            "strategy": self.name,
            "space": self.space.name,
            "seed": self.seed,
            "objectives": [o.to_json() for o in self.objectives],
            "constraints": [c.to_json() for c in self.constraints],
            "options": dict(self.options),
            "asks": self._asks,
            "exhausted": self._exhausted,
            "trials": [[self.key(t.arch), {k: _jsonable(v) for k, v in t.metrics.items()}]
                       for t in self.trials],
            "pending": [self.key(a) for a in self._pending],
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict` into a strategy built with the same space, objectives,
        constraints, seed and options."""
        expected = {k: v for k, v in self.state_dict().items()
                    if k in ("format", "strategy", "space", "seed", "objectives", "constraints",
                             "options")}
        for field, value in expected.items():
            if _normalise(state.get(field)) != _normalise(value):
                raise StrategyError(f"checkpoint {field} {state.get(field)!r} does not match "
                                    f"this {self.name} strategy ({value!r})")
        self.trials, self._told, self._pending = [], {}, {}
        for key, metrics in state["trials"]:
            arch = self.decode(key)
            clean = {k: _as_float(k, v) for k, v in metrics.items()}
            failed = any(not math.isfinite(clean.get(o.metric, math.nan)) for o in self.objectives)
            self._told[arch] = len(self.trials)
            self.trials.append(Trial(arch, clean, failed, self._satisfies(arch, clean)))
        self._pending = {self.decode(k): None for k in state["pending"]}
        self._asks = int(state["asks"])
        self._exhausted = bool(state["exhausted"])
        self._load_extra_state(state["extra"])

    # --- helpers for subclasses ------------------------------------------------------------------
    def key(self, arch: Arch) -> str:
        return f"{self.space.name}:{self.space.encode(arch)}"

    def decode(self, key: str) -> Arch:
        prefix = f"{self.space.name}:"
        if not key.startswith(prefix):
            raise StrategyError(f"checkpoint holds {key!r}, not an architecture of "
                                f"space {self.space.name!r}")
        return self.space.decode(key[len(prefix):])

    def is_new(self, arch: Arch) -> bool:
        """Neither told nor pending."""
        return arch not in self._told and arch not in self._pending

    def cost(self, arch: Arch) -> Mapping[str, float]:
        """The cheap metrics of `arch` (cached); empty without a cost_fn."""
        if self.cost_fn is None:
            return {}
        if arch not in self._cost_cache:
            self._cost_cache[arch] = dict(self.cost_fn(arch))
        return self._cost_cache[arch]

    def untried_neighbours(self, arch: Arch) -> list[Arch]:
        """The archs one gene away from `arch` that are new and meet every constraint."""
        if arch not in self._neighbour_cache:
            self._neighbour_cache[arch] = neighbours(self.space, arch)
        return [n for n in self._neighbour_cache[arch] if self.is_new(n) and (
            not self.constraints or all_satisfied(self.constraints, self.cost(n)))]

    def feasible(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """`arch`, shrunk until it meets every constraint."""
        if not self.constraints:
            return arch
        return repair(self.space, arch, self.constraints, self.cost, rng)

    def minimised(self, trial: Trial) -> np.ndarray:
        """The trial's objectives as a minimisation problem (a maximised one negated)."""
        return np.array([-o.sign() * trial.metrics[o.metric] for o in self.objectives])

    def score(self, trial: Trial) -> float:
        """The first objective, larger is better; -inf for a failed or infeasible trial."""
        if not trial.ok:
            return -math.inf
        objective = self.objectives[0]
        return objective.sign() * trial.metrics[objective.metric]

    def known_objectives(self) -> set[str]:
        """Objectives the cost_fn gives (a latency from the device's table), known unevaluated."""
        if self._known is None:
            cheap = self.cost(self.space.min_arch())
            self._known = {o.metric for o in self.objectives if o.metric in cheap}
        return self._known

    def initial_arch(self, rng: np.random.Generator) -> Arch | None:
        """A new arch for the initial sample: with `WarmStartOptions.warm_start`, the best
        untried arch of the ranked pool; otherwise, or once the pool is used up, a random one."""
        if isinstance(self.opts, WarmStartOptions) and self.opts.warm_start is not None:
            if self._warm_ranked is None:
                known = self.known_objectives()
                self._warm_ranked = ranked_pool(
                    self.space, self.seed, self.opts,
                    lambda r: self.feasible(self.space.sample(r), r), self.cost,
                    [(o.metric, o.sign()) for o in self.objectives if o.metric in known])
            for arch in self._warm_ranked:
                if self.is_new(arch):
                    return arch
        return self._fresh(self.space.sample, rng)

    def _fresh(self, candidate: Callable[[np.random.Generator], Arch],
               rng: np.random.Generator, tries: int = 10) -> Arch | None:
        """A new feasible arch: `candidate(rng)` repaired, up to `tries` times; then a random
        walk of mutations from the last candidate (escaping a fully explored neighbourhood);
        then uniform samples; then, for small spaces, an enumeration of what is left."""
        arch = None
        for _ in range(tries):
            arch = self.feasible(candidate(rng), rng)
            if self.is_new(arch):
                return arch
        walker = arch if arch is not None else self.space.sample(rng)
        for _ in range(4 * len(self.space.dimensions) + 8):
            walker = self.feasible(self.space.mutate(walker, rng), rng)
            if self.is_new(walker):
                return walker
        for _ in range(50):
            arch = self.feasible(self.space.sample(rng), rng)
            if self.is_new(arch):
                return arch
        return self._enumerate_new(rng)

    def _enumerate_new(self, rng: np.random.Generator) -> Arch | None:
        if self.space.log10_size() > math.log10(ENUMERATE_LIMIT):
            return None
        left = []
        seen: set[Arch] = set()
        for values in itertools.product(*(d.options for d in self.space.dimensions)):
            arch = self.space.make(dict(zip(self.space.dimension_names, values)))
            if arch in seen:
                continue
            seen.add(arch)
            if self.is_new(arch) and (not self.constraints or
                                      all_satisfied(self.constraints, self.cost(arch))):
                left.append(arch)
        return left[int(rng.integers(len(left)))] if left else None

    def _satisfies(self, arch: Arch, metrics: Mapping[str, float]) -> bool:
        if not self.constraints:
            return True
        known = {**self.cost(arch), **metrics}
        # A bound on a metric nobody measured cannot be checked: the proposal was repaired.
        return all(c.satisfied(known) for c in self.constraints if c.metric in known)


def _as_float(name: Any, value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise StrategyError(f"metric {name!r} must be a number, got {value!r}") from None


def _jsonable(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _normalise(value: Any) -> Any:
    """Tuples and lists compare equal (a JSON round trip turns one into the other)."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value
