"""Learning a device the engine cannot run on, from whole-network latencies measured there.

Candidate models share one structure, latency = intercept + a non-negative combination of
features (see `features.py`): per-stage sums of block statistics, network-wide layer counts by
kind, and network-wide kernel features (each kernel's cost a convex function of its work:
launch floor, then throughput); they differ in which features feed them and in the ridge
strength. The candidate is chosen by k-fold cross-validation on the training rows
only (the held-out rows are touched once, for the reported figures); a FLOPs-only linear
model is fitted on the same rows as the baseline.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from estimators.latency.errors import LatencyError
from estimators.latency.features import KERNELS, KINDS, TABLE_STAT, StageFeatures
from estimators.latency.metrics import accuracy
from estimators.latency.regression import LinearFit, fit_nonneg
from search_spaces import Arch, SearchSpace

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "launch": ("blocks", "layers", "macs"),
    "compute": ("blocks", "macs", "io_elems", "inner_elems"),
    "structure": ("blocks", "layers", "macs", "io_elems", "inner_elems", "params"),
    "kinds": ("blocks", "macs", KINDS),
    "compute+kinds": ("blocks", "macs", "io_elems", "inner_elems", KINDS),
    "table": (TABLE_STAT, "blocks", "layers"),
    "table+compute": (TABLE_STAT, "blocks", "macs", "io_elems", "inner_elems"),
    "kernels": (KERNELS,),
    "kernels+blocks": ("blocks", KERNELS),
    "kernels+compute": ("blocks", "macs", "io_elems", "inner_elems", KERNELS),
}
FLOPS_SET = "flops"
ALPHAS = (1e-6, 1e-5, 1e-4, 1e-3)
FOLDS = 5


@dataclass
class FittedModel:
    """A chosen feature set and its linear coefficients over per-stage features."""

    space: str
    feature_set: str
    stats: tuple[str, ...]
    stages: tuple[str, ...]
    coef: list[float]
    intercept: float
    alpha: float
    robust: bool
    table_fingerprint: str = ""
    num_classes: int | None = None
    kinds: tuple[str, ...] = ()
    knots: dict[str, list[float]] | None = None

    def as_dict(self) -> dict[str, object]:
        return {"space": self.space, "feature_set": self.feature_set, "stats": list(self.stats),
                "stages": list(self.stages), "kinds": list(self.kinds), "knots": self.knots,
                "coef": list(self.coef), "intercept": self.intercept, "alpha": self.alpha,
                "robust": self.robust, "table_fingerprint": self.table_fingerprint,
                "num_classes": self.num_classes}

    @staticmethod
    def from_dict(data: dict) -> FittedModel:
        return FittedModel(data["space"], data["feature_set"], tuple(data["stats"]),
                           tuple(data["stages"]), list(data["coef"]), float(data["intercept"]),
                           float(data["alpha"]), bool(data["robust"]),
                           data.get("table_fingerprint", ""), data.get("num_classes"),
                           tuple(data.get("kinds", ())), data.get("knots"))


@dataclass
class FitReport:
    model: FittedModel
    train_rows: int
    test_rows: int
    test: dict[str, float]
    flops_baseline: dict[str, float]
    cv: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"feature_set": self.model.feature_set, "alpha": self.model.alpha,
                "robust": self.model.robust, "train_rows": self.train_rows,
                "test_rows": self.test_rows, **self.test, "flops_baseline": self.flops_baseline,
                "cross_validation": self.cv, "seconds": round(self.seconds, 2)}


@lru_cache(maxsize=50_000)
def _macs(arch: Arch, num_classes: int | None) -> float:
    from estimators.flops import analytical_cost

    return float(analytical_cost(arch, num_classes).macs)


def flops_matrix(space: SearchSpace, archs: Sequence[Arch],
                 num_classes: int | None = None) -> np.ndarray:
    return np.array([[_macs(a, num_classes)] for a in archs])


def _cv_score(x: np.ndarray, y: np.ndarray, alpha: float, robust: bool,
              folds: list[np.ndarray]) -> tuple[float, float]:
    """(mean held-out within_10pct, mean held-out mape) over the folds."""
    within, mape = [], []
    for held in folds:
        keep = np.setdiff1d(np.arange(len(y)), held)
        fit = fit_nonneg(x[keep], y[keep], alpha, robust)
        acc = accuracy(fit.predict(x[held]), y[held])
        within.append(acc["within_10pct"])
        mape.append(acc["mape"])
    return float(np.mean(within)), float(np.mean(mape))


def _folds(n: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::FOLDS] for i in range(FOLDS)]


def select_and_fit(space: SearchSpace, archs: Sequence[Arch], y: np.ndarray,
                   table: dict[str, float] | None = None, table_fingerprint: str = "",
                   num_classes: int | None = None, seed: int = 0,
                   feature_sets: Sequence[str] | None = None,
                   robust_options: Sequence[bool] = (True, False),
                   alphas: Sequence[float] = ALPHAS,
                   ) -> tuple[FittedModel, list[dict[str, object]]]:
    """Choose feature set, ridge strength and robustness by cross-validation (skipped when
    only one candidate is given); refit on all."""
    if len(archs) < 2 * FOLDS:
        raise LatencyError(f"need at least {2 * FOLDS} training rows, got {len(archs)}")
    stages = StageFeatures.stages_of(space, archs, num_classes)
    kinds = StageFeatures.kinds_of(space, archs, num_classes)
    names = [n for n in (feature_sets or FEATURE_SETS)
             if table is not None or TABLE_STAT not in FEATURE_SETS[n]]
    knots = None
    if any(KERNELS in FEATURE_SETS[n] for n in names):
        try:
            knots = StageFeatures.knots_of(space, archs, num_classes)
        except LatencyError:
            if feature_sets:  # asked for by name: say why it cannot be had
                raise
            names = [n for n in names if KERNELS not in FEATURE_SETS[n]]
    folds = _folds(len(y), seed)
    results = []
    best: tuple[tuple[float, float], str, float, bool] | None = None
    single = len(names) * len(alphas) * len(robust_options) == 1
    for name in names:
        features = StageFeatures(space, FEATURE_SETS[name], stages, num_classes, table, kinds,
                                 knots)
        x = features.matrix(list(archs))
        for alpha in alphas:
            for robust in robust_options:
                within, mape = (float("nan"), float("nan")) if single else \
                    _cv_score(x, y, alpha, robust, folds)
                results.append({"feature_set": name, "alpha": alpha, "robust": robust,
                                "cv_within_10pct": round(within, 4), "cv_mape": round(mape, 3)})
                score = (within, -mape)
                if best is None or single or score > best[0]:
                    best = (score, name, alpha, robust)
    assert best is not None
    _, name, alpha, robust = best
    features = StageFeatures(space, FEATURE_SETS[name], stages, num_classes, table, kinds,
                             knots)
    fit = fit_nonneg(features.matrix(list(archs)), y, alpha, robust)
    model = FittedModel(space.name, name, FEATURE_SETS[name], tuple(stages),
                        [float(c) for c in fit.coef], fit.intercept, alpha, robust,
                        table_fingerprint if TABLE_STAT in FEATURE_SETS[name] else "",
                        num_classes, tuple(features.kinds),
                        knots if KERNELS in FEATURE_SETS[name] else None)
    return model, results


def fit_device(space: SearchSpace, archs: Sequence[Arch], latencies: Sequence[float],
               train: int, seed: int = 0, table: dict[str, float] | None = None,
               table_fingerprint: str = "", num_classes: int | None = None,
               feature_sets: Sequence[str] | None = None,
               fixed: tuple[float, bool] | None = None) -> tuple[FitReport, FittedPredictor]:
    """Fit on `train` random rows (seeded), evaluate on the rest, with the FLOPs baseline.
    `fixed` = (alpha, robust) skips the search over those (with one feature set: no CV)."""
    start = time.perf_counter()
    y = np.asarray(latencies, dtype=float)
    if not 2 * FOLDS <= train < len(y):
        raise LatencyError(f"--train must be between {2 * FOLDS} and {len(y) - 1} "
                           f"(the file has {len(y)} usable rows), got {train}")
    order = np.random.default_rng(seed).permutation(len(y))
    tr, te = order[:train], order[train:]
    train_archs = [archs[i] for i in tr]
    test_archs = [archs[i] for i in te]
    options = {} if fixed is None else {"alphas": (fixed[0],), "robust_options": (fixed[1],)}
    model, cv = select_and_fit(space, train_archs, y[tr], table, table_fingerprint, num_classes,
                               seed, feature_sets, **options)
    predictor = FittedPredictor(space, model, "fitted", table)
    predicted = np.array([predictor.latency_ms(a) for a in test_archs])
    flops_tr = flops_matrix(space, train_archs, num_classes)
    flops_fit: LinearFit = fit_nonneg(flops_tr, y[tr], 0.0, robust=False)
    baseline = accuracy(flops_fit.predict(flops_matrix(space, test_archs, num_classes)), y[te])
    report = FitReport(model, len(tr), len(te), accuracy(predicted, y[te]), baseline, cv,
                       time.perf_counter() - start)
    return report, predictor


class FittedPredictor:
    """latency_ms(arch) from a `FittedModel` (table features read the local table given)."""

    def __init__(self, space: SearchSpace, model: FittedModel, device: str,
                 table: dict[str, float] | None = None):
        if model.space != space.name:
            raise LatencyError(f"device {device!r} was fitted for space {model.space!r}, "
                               f"not {space.name!r}")
        self.space, self.model, self.device = space, model, device
        self.features = StageFeatures(space, model.stats, model.stages, model.num_classes, table,
                                      model.kinds, model.knots)
        self.coef = np.asarray(model.coef)

    def latency_ms(self, arch: Arch) -> float:
        """Never negative (a negative intercept can undershoot below the fitted range)."""
        return max(0.0, float(self.features.vector(arch) @ self.coef + self.model.intercept))

    def describe(self) -> dict[str, object]:
        return {"device": self.device, "kind": "fitted", "space": self.space.name,
                "feature_set": self.model.feature_set, "stages": list(self.model.stages)}
