"""What every performance predictor is: fit on (arch, value) pairs, predict a mean and an
uncertainty for new archs, draw one posterior sample (Thompson sampling).

Inputs are the architecture's genes one-hot encoded (`GeneEncoder`: one block per dimension, an
inactive gene all zeros; on cell spaces such as NB201 this is the adjacency encoding of White et
al., "A Study on Encodings for NAS"), optionally followed by extra numeric features per arch,
e.g. zero-cost proxy scores, standardised with the training rows' mean and spread. Targets are
standardised too, so options do not depend on the metric's units; with `targets="ranks"` they
are replaced by the normal scores of their ranks (a Gaussian copula) and predictions are mapped
back through the training values' quantiles, so a few very low values (NB201's 10 % cells) do
not flatten the differences at the top. A predictor class declares
its `name`, `summary` and `Options` (the estimators' option dataclass: defaults, help, checks);
`estimators.predictors` finds the classes by name.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from estimators.base import EstimatorOptions, build_options, option
from search_spaces import Arch, NasError, SearchSpace

MIN_TRAIN = 2  # archs a fit needs (a spread to standardise by)


class PredictorError(NasError):
    """A predictor used wrongly: too few or mismatched training rows, predicting before fit."""


@dataclass(frozen=True)
class Prediction:
    """Per arch: the predicted `mean` and its standard deviation `std` (the model's
    uncertainty, in the target's units)."""

    mean: np.ndarray
    std: np.ndarray


@dataclass(frozen=True)
class PredictorOptions(EstimatorOptions):
    """Options every predictor has (a predictor's own Options add to these)."""

    targets: str = option("values", "values: the standardised values; ranks: normal scores "
                                     "of their ranks, mapped back by the values' quantiles",
                          "targets")


class RankScores:
    """Values <-> normal scores of their ranks (mid-ranks for ties): `scores` are the training
    values', `back` maps any score to a value by linear interpolation between the training
    pairs, extended linearly past both ends by the end segments' slopes."""

    def __init__(self, values: np.ndarray):
        from scipy.stats import norm, rankdata

        self.scores = norm.ppf((rankdata(values) - 0.5) / len(values))
        self._z, first = np.unique(self.scores, return_index=True)
        self._y = values[first]

    def back(self, z: np.ndarray) -> np.ndarray:
        zs, ys = self._z, self._y
        if len(zs) == 1:
            return np.full(np.shape(z), ys[0])
        out = np.interp(z, zs, ys)
        low, high = z < zs[0], z > zs[-1]
        out[low] = ys[0] + (z[low] - zs[0]) * (ys[1] - ys[0]) / (zs[1] - zs[0])
        out[high] = ys[-1] + (z[high] - zs[-1]) * (ys[-1] - ys[-2]) / (zs[-1] - zs[-2])
        return out


class GeneEncoder:
    """The space's one-hot encoding of the genes (`SearchSpace.to_vector`: one block per
    dimension, an inactive gene all zeros), checked and cached per arch: a search encodes the
    same archs again at every fit."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.width = int(sum(len(d.options) for d in space.dimensions))
        self._rows: dict[Arch, np.ndarray] = {}

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        """The encodings, one row per arch; a PredictorError for an arch of another space."""
        out = np.zeros((len(archs), self.width))
        for row, arch in enumerate(archs):
            vector = self._rows.get(arch)
            if vector is None:
                if not self.space.contains(arch):
                    raise PredictorError(f"{arch} is not an architecture of space "
                                         f"{self.space.name!r}")
                vector = self._rows[arch] = self.space.to_vector(arch)
            out[row] = vector
        return out


class Predictor(ABC):
    """Base: encoding, standardisation and the checks; subclasses fit and predict on the
    standardised matrices (`_fit`, `_predict`, `_sample`)."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    Options: ClassVar[type[PredictorOptions]] = PredictorOptions

    def __init__(self, space: SearchSpace, seed: int = 0, **options: Any):
        self.space = space
        self.seed = int(seed)
        self.opts = self.parse_options(options)
        self.encoder = GeneEncoder(space)
        self.fitted = False
        self._x_shift = self._x_scale = np.zeros(0)
        self._y_shift, self._y_scale = 0.0, 1.0
        self._ranks: RankScores | None = None
        self._features = 0

    @classmethod
    def parse_options(cls, given: Mapping[str, Any]) -> EstimatorOptions:
        """The options from user values; a one-line PredictorError naming the predictor."""
        return build_options(cls.Options, given, f"predictor {cls.name!r}", PredictorError)

    # --- the interface -------------------------------------------------------------------------
    def fit(self, archs: Sequence[Arch], values: Sequence[float],
            features: np.ndarray | None = None) -> Predictor:
        """Learn `values` (larger or smaller, the predictor does not care) of `archs`; rows whose
        value is not finite are left out. Returns self."""
        y = np.asarray(values, dtype=float)
        if len(y) != len(archs):
            raise PredictorError(f"{len(archs)} archs but {len(y)} values")
        keep = np.isfinite(y)
        if int(keep.sum()) < MIN_TRAIN:
            raise PredictorError(f"a fit needs at least {MIN_TRAIN} finite values, got "
                                 f"{int(keep.sum())}")
        self._features = 0 if features is None else np.asarray(features).shape[1]
        x = self._inputs(archs, features, fitting=True)[keep]
        y = y[keep]
        self._ranks = RankScores(y) if self.opts.targets == "ranks" else None
        if self._ranks is not None:
            y = self._ranks.scores
        self._y_shift = float(y.mean())
        self._y_scale = float(y.std()) or 1.0
        self._fit(x, (y - self._y_shift) / self._y_scale)
        self.fitted = True
        return self

    def predict(self, archs: Sequence[Arch], features: np.ndarray | None = None) -> Prediction:
        """Mean and standard deviation of the value of each arch (with rank targets: the
        mapped mean, and half the mapped width of mean +- one spread)."""
        mean, std = self._predict(self._inputs(archs, features))
        mean, std = mean * self._y_scale + self._y_shift, std * self._y_scale
        if self._ranks is None:
            return Prediction(mean, std)
        back = self._ranks.back
        return Prediction(back(mean), (back(mean + std) - back(mean - std)) / 2)

    def sample(self, archs: Sequence[Arch], rng: np.random.Generator,
               features: np.ndarray | None = None) -> np.ndarray:
        """One draw of the values of `archs` from the predictor's posterior (Thompson
        sampling), in the target's units."""
        draw = self._sample(self._inputs(archs, features), rng) * self._y_scale + self._y_shift
        return draw if self._ranks is None else self._ranks.back(draw)

    # --- what a subclass provides --------------------------------------------------------------
    @abstractmethod
    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fit standardised targets `y` on inputs `x`."""

    @abstractmethod
    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standardised mean and standard deviation."""

    def _sample(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Independent Gaussian draws around the mean (a subclass may draw jointly)."""
        mean, std = self._predict(x)
        return mean + std * rng.standard_normal(len(mean))

    # --- inputs --------------------------------------------------------------------------------
    def _inputs(self, archs: Sequence[Arch], features: np.ndarray | None,
                fitting: bool = False) -> np.ndarray:
        if not fitting and not self.fitted:
            raise PredictorError(f"predictor {self.name!r} is used before fit()")
        genes = self.encoder(archs)
        given = 0 if features is None else np.asarray(features).shape[-1]
        if given != self._features or (features is not None and len(features) != len(archs)):
            raise PredictorError(f"expected {self._features} features for each of "
                                 f"{len(archs)} archs, got shape "
                                 f"{None if features is None else np.shape(features)}")
        if features is None:
            return genes
        extra = np.asarray(features, dtype=float)
        if fitting:
            finite = np.isfinite(extra)
            count = np.maximum(finite.sum(axis=0), 1)
            filled = np.where(finite, extra, 0.0)
            self._x_shift = filled.sum(axis=0) / count
            spread = np.sqrt((np.where(finite, extra - self._x_shift, 0.0) ** 2).sum(axis=0)
                             / count)
            self._x_scale = np.where(spread > 0, spread, 1.0)
        extra = (extra - self._x_shift) / self._x_scale
        extra[~np.isfinite(extra)] = 0.0  # a missing value counts as the training mean
        return np.hstack([genes, extra])


__all__ = ["GeneEncoder", "MIN_TRAIN", "Prediction", "Predictor", "PredictorError",
           "PredictorOptions", "RankScores"]
