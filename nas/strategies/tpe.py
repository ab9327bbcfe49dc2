"""`tpe`: Optuna's Tree-structured Parzen Estimator over the space's dimensions.

Each dimension becomes a categorical distribution. The Optuna study holds the told trials (a
failed evaluation is a FAIL trial, which TPE ignores), so the checkpoint is simply the trial list
and a restored strategy rebuilds an equivalent study. Every `ask` reseeds the sampler from
(seed, number of asks): no sampler state needs saving, and a restored strategy continues
identically. (One sampler is kept rather than one made per ask: its search-space cache is what
keeps TPE's overhead per ask in milliseconds.) Several objectives use Optuna's multi-objective TPE.

Optuna's own asks are only used to draw parameters: each drawn trial is closed as FAIL at once
(invisible to TPE) and the arch, once repaired to meet the constraints and checked to be new, is
what the caller evaluates and tells. A TPE draw that is already known is drawn again, then
replaced by a random walk from it.
"""
from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.strategies.base import Strategy, Trial
from nas.strategies.options import StrategyOptions, flag, integer, option
from search_spaces import Arch

DRAWS = 2  # TPE draws per proposal before a random walk from the last one


@dataclass(frozen=True)
class TPEOptions(StrategyOptions):
    startup: int = option(10, "random archs before TPE takes over (Optuna's n_startup_trials)",
                          integer(1, "a positive integer"))
    candidates: int = option(24, "candidates TPE scores per draw (Optuna's n_ei_candidates)",
                             integer(1, "a positive integer"))
    multivariate: bool = option(True, "model the dimensions jointly (multivariate TPE) rather "
                                      "than one by one", flag())


class TPE(Strategy):
    name = "tpe"
    multi_objective = True
    options_type = TPEOptions

    def _setup(self) -> None:
        import optuna

        self._optuna = optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per trial
        self._distributions = {d.name: optuna.distributions.CategoricalDistribution(list(d.options))
                               for d in self.space.dimensions}
        self._study = self._new_study()

    def _new_study(self) -> Any:
        with warnings.catch_warnings():  # multivariate TPE is flagged experimental
            warnings.simplefilter("ignore")
            sampler = self._optuna.samplers.TPESampler(
                seed=self.seed, n_startup_trials=self.options["startup"],
                n_ei_candidates=self.options["candidates"],
                multivariate=bool(self.options["multivariate"]))
        return self._optuna.create_study(directions=[o.direction for o in self.objectives],
                                         sampler=sampler)

    def _reseed(self, seed: int) -> None:
        """Seed the sampler's two generators (TPE's own and its random startup sampler).
        Optuna offers only a random reseed, so this sets the seeds it was built with; the
        attributes are those of the pinned Optuna (5.0)."""
        sampler = self._study.sampler
        try:
            sampler._rng.rng.seed(seed)
            sampler._random_sampler._rng.rng.seed(seed)
        except AttributeError as exc:  # another Optuna version: fail loudly, not silently
            raise RuntimeError(f"tpe: cannot seed this Optuna's TPESampler ({exc}); "
                               f"pin optuna==5.0.0") from None

    # --- proposals -----------------------------------------------------------------------------
    def _propose(self, rng: np.random.Generator) -> Arch | None:
        self._reseed(int(rng.integers(2**31 - 1)))

        def draw(_: np.random.Generator) -> Arch:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trial = self._study.ask(self._distributions)
                self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
            return self.space.make(trial.params)

        # Few redraws: a TPE that keeps drawing known archs has converged, and each draw costs
        # milliseconds; the random walk from its last draw is the better use of the time.
        return self._fresh(draw, rng, tries=DRAWS)

    # --- learning ------------------------------------------------------------------------------
    def _observe(self, trial: Trial) -> None:
        self._record(trial)

    def _record(self, trial: Trial) -> None:
        states = self._optuna.trial.TrialState
        ok = trial.ok
        values = [trial.metrics[o.metric] for o in self.objectives] if ok else None
        self._study.add_trial(self._optuna.trial.create_trial(
            params=self._params(trial.arch), distributions=self._distributions,
            values=values, state=states.COMPLETE if ok else states.FAIL))

    def _params(self, arch: Arch) -> dict[str, Any]:
        """The arch's genes; an inactive gene (which did not shape the network) gets an option
        picked by a hash of the arch and dimension: stable, and unbiased across archs."""
        params = {}
        for dim, (name, value) in zip(self.space.dimensions, arch.genes):
            if value is None:
                value = dim.options[zlib.crc32(f"{self.key(arch)}|{name}".encode())
                                    % len(dim.options)]
            params[name] = value
        return params

    # --- checkpoints ---------------------------------------------------------------------------
    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._study = self._new_study()
        for trial in self.trials:
            self._record(trial)
