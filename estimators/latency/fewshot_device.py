"""A new device from a few whole-network measurements, for any architecture of the space.

`fewshot.fit_fewshot` needs the reference devices' latencies of the architectures it predicts;
a user's architectures are arbitrary, so here each reference device is replaced by its
*reference model*: a ridge of its standardised log latency on the architecture features,
fitted on that device's reference rows, strength by leave-one-out (the `D` block of
`fewshot.py`, extended to every architecture). The new device is then a ridge on log latency
over those reference models (`D`) and the centred features (`F`, under a `FEATURE_PENALTY`
times stronger prior), strength by leave-one-out on its measured rows. Everything is linear in
the features, so the fitted device collapses to one weight per (dimension, option) plus an
intercept: `latency_ms = exp(intercept + sum of the arch's option weights)`, saved as JSON.

Features: the one-hot of every dimension's option (`space.dimensions`; every gene is
categorical). Reference sets: shipped per space as package data (`references/<space>.csv`,
read with importlib.resources; see its README for source and licence), plus the user's own
devices added with `nas latency fit ... --save-as-reference`, kept in the cache folder
(`<cache>/references/<space>.csv`, columns `device, arch, latency_ms`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from estimators.files import atomic_write_text
from estimators.latency.cache import cache_dir as _cache_dir
from estimators.latency.errors import LatencyError
from estimators.latency.fewshot import FEATURE_PENALTY, GRID, best_ridge, loo_ridge, standardise
from search_spaces import Arch, InvalidArchError, SearchSpace, first_line

PREFIX = "latency_ms_"
USER_DIR = "references"
MIN_REFERENCE_ROWS = 10
MIN_ROWS = 3
CacheDir = str | os.PathLike[str] | None
Layout = list[tuple[str, tuple[Any, ...]]]


def layout_of(space: SearchSpace) -> Layout:
    return [(d.name, tuple(d.options)) for d in space.dimensions]


def one_hot(space: SearchSpace, archs: list[Arch]) -> np.ndarray:
    """(archs, sum of options): the space's one-hot of every dimension's option
    (`SearchSpace.to_vector`; an inactive gene is all zeros)."""
    width = sum(len(options) for _, options in layout_of(space))
    return np.array([space.to_vector(a) for a in archs], dtype=float).reshape(len(archs), width)


@dataclass
class ReferenceSet:
    """Reference devices of one space: name -> (archs, latencies ms), and where each is from."""

    space: str
    devices: dict[str, tuple[list[Arch], np.ndarray]]
    origin: dict[str, str]  # "shipped" or "user"
    population: list[Arch]  # the archs that set the scale of the reference models


def shipped_csv(space: str) -> str | None:
    """Text of the shipped reference set of `space` (None when the engine ships none)."""
    ref = resources.files("estimators.latency").joinpath("references", f"{space}.csv")
    return ref.read_text() if ref.is_file() else None


def user_reference_path(space: str, cache_dir: CacheDir = None) -> Path:
    return _cache_dir(cache_dir) / USER_DIR / f"{space}.csv"


def _parse(space: SearchSpace, texts, where: str) -> list[Arch]:
    out = []
    for row, text in enumerate(texts):
        try:
            out.append(space.parse(str(text)))
        except InvalidArchError as exc:
            raise LatencyError(f"{where} row {row + 2}: {first_line(exc)}") from None
    return out


def load_references(space: SearchSpace, cache_dir: CacheDir = None,
                    exclude: tuple[str, ...] = ()) -> ReferenceSet:
    """The shipped and user reference devices of `space` (`exclude`: names left out)."""
    import io

    import pandas as pd

    devices: dict[str, tuple[list[Arch], np.ndarray]] = {}
    origin: dict[str, str] = {}
    population: list[Arch] = []
    text = shipped_csv(space.name)
    if text is not None:
        frame = pd.read_csv(io.StringIO(text))
        population = _parse(space, frame["arch"], f"shipped reference set {space.name}")
        for col in (c for c in frame.columns if c.startswith(PREFIX)):
            name = col[len(PREFIX):]
            if name not in exclude:
                devices[name] = (population, frame[col].to_numpy(dtype=float))
                origin[name] = "shipped"
    path = user_reference_path(space.name, cache_dir)
    if path.is_file():
        try:
            frame = pd.read_csv(path)
            frame["latency_ms"] = frame["latency_ms"].astype(float)
            groups = list(frame.groupby("device", sort=True))
        except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
            raise LatencyError(f"user reference set {path} is damaged: "
                               f"{type(exc).__name__} {first_line(exc)}") from None
        for name, rows in groups:
            if str(name) in exclude:
                continue
            archs = _parse(space, rows["arch"], str(path))
            devices[str(name)] = (archs, rows["latency_ms"].to_numpy())
            origin[str(name)] = "user"
            if text is None:
                population.extend(archs)
    if not devices:
        raise LatencyError(f"no reference devices for space {space.name!r}: the engine ships "
                           f"none for it; add your own with `nas latency fit --space "
                           f"{space.name} ... --save-as-reference` (at least "
                           f"{MIN_REFERENCE_ROWS} measured rows)")
    return ReferenceSet(space.name, devices, origin, population)


def add_reference(space: SearchSpace, name: str, archs: list[Arch], latencies: np.ndarray,
                  cache_dir: CacheDir = None) -> Path:
    """Add (or replace) the user reference device `name` of `space` with its measured rows."""
    import pandas as pd

    latencies = np.asarray(latencies, dtype=float)
    if len(archs) < MIN_REFERENCE_ROWS:
        raise LatencyError(f"a reference device needs at least {MIN_REFERENCE_ROWS} measured "
                           f"rows, the file has {len(archs)}")
    text = shipped_csv(space.name)
    if text is not None and f"{PREFIX}{name}," in text.split("\n", 1)[0] + ",":
        raise LatencyError(f"{name!r} is a shipped reference device of {space.name}; save "
                           f"yours under another --name")
    path = user_reference_path(space.name, cache_dir)
    new = pd.DataFrame({"device": name, "arch": [a.key for a in archs], "latency_ms": latencies})
    if path.is_file():
        old = pd.read_csv(path)
        new = pd.concat([old[old["device"].astype(str) != name], new], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, new.to_csv(index=False, float_format="%.6g"))
    return path


@dataclass
class ReferenceModels:
    """Each reference device as a ridge of its standardised log latency on the features."""

    layout: Layout
    devices: tuple[str, ...]
    coef: np.ndarray  # (1 + features, devices), intercept row first
    mean: np.ndarray  # (devices,) over the population
    scale: np.ndarray  # (devices,)
    feature_mean: np.ndarray  # (features,) over the population

    def design(self, features: np.ndarray) -> np.ndarray:
        """[1, D, F - mean] for the given one-hot rows."""
        d = (features @ self.coef[1:] + self.coef[0] - self.mean) / self.scale
        return np.column_stack([np.ones(len(features)), d, features - self.feature_mean])


def _multi_loo_ridge(x: np.ndarray, t: np.ndarray, grid: tuple[float, ...]) -> np.ndarray:
    """Per column of `t`, ridge weights (intercept column 0 free) at its best LOO strength."""
    best_err = np.full(t.shape[1], np.inf)
    best_w = np.zeros((x.shape[1], t.shape[1]))
    penalty = np.r_[0.0, np.ones(x.shape[1] - 1)]
    for g in grid:
        w, err = loo_ridge(x, t, penalty * g)
        better = err < best_err
        best_err[better], best_w[:, better] = err[better], w[:, better]
    return best_w


def reference_models(space: SearchSpace, refs: ReferenceSet,
                     grid: tuple[float, ...] = GRID) -> ReferenceModels:
    layout = layout_of(space)
    pop = one_hot(space, refs.population)
    names, coefs = [], []
    groups: dict[int, list[str]] = {}  # devices measured on the same arch list share a design
    for name, (archs, _) in refs.devices.items():
        groups.setdefault(id(archs), []).append(name)
    for members in groups.values():
        archs = refs.devices[members[0]][0]
        ys = np.column_stack([refs.devices[m][1] for m in members])
        if not np.all(np.isfinite(ys)) or np.any(ys <= 0):
            raise LatencyError(f"reference devices {', '.join(members)} of {space.name}: "
                               f"latencies must be finite and positive")
        x = np.column_stack([np.ones(len(archs)), one_hot(space, archs)])
        coefs.append(_multi_loo_ridge(x, standardise(np.log(ys)), grid))
        names.extend(members)
    coef = np.column_stack(coefs)
    projected = pop @ coef[1:] + coef[0]
    mean, std = projected.mean(axis=0), projected.std(axis=0)
    keep = std > 1e-9 * max(1.0, float(std.max(initial=0.0)))
    return ReferenceModels(layout, tuple(n for n, k in zip(names, keep) if k), coef[:, keep],
                           mean[keep], std[keep], pop.mean(axis=0))


@dataclass
class FewShotModel:
    """A fitted device: log latency = intercept + one weight per (dimension, option)."""

    space: str
    layout: Layout
    intercept: float
    weights: list[list[float]]  # per dimension, per option
    references: tuple[str, ...] = ()
    strength: float = 1.0
    loo_rmse: float = float("nan")
    _index: dict = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def log_latency(self, arch: Arch) -> float:
        if self._index is None:
            self._index = {(name, o): w for (name, options), ws in zip(self.layout, self.weights)
                           for o, w in zip(options, ws)}
        return self.intercept + sum(self._index[g] for g in arch.genes if g[1] is not None)

    def latency_ms(self, arch: Arch) -> float:
        return float(np.exp(self.log_latency(arch)))

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "fewshot", "space": self.space, "intercept": self.intercept,
                "layout": [{"name": n, "options": list(o), "weights": w}
                           for (n, o), w in zip(self.layout, self.weights)],
                "references": list(self.references), "strength": self.strength,
                "loo_rmse": self.loo_rmse}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> FewShotModel:
        layout = [(d["name"], tuple(d["options"])) for d in data["layout"]]
        weights = [[float(w) for w in d["weights"]] for d in data["layout"]]
        if any(len(o) != len(w) for (_, o), w in zip(layout, weights)):
            raise ValueError("weights and options differ in length")
        return FewShotModel(data["space"], layout, float(data["intercept"]), weights,
                            tuple(data.get("references", ())), float(data.get("strength", 1.0)),
                            float(data.get("loo_rmse", float("nan"))))


def fit_fewshot_device(space: SearchSpace, archs: list[Arch], latencies, models: ReferenceModels,
                       feature_penalty: float = FEATURE_PENALTY,
                       grid: tuple[float, ...] = GRID) -> FewShotModel:
    """Fit a new device from `latencies` (ms) measured on `archs` (any of the space)."""
    y = np.asarray(latencies, dtype=float)
    if len(archs) != len(y):
        raise LatencyError(f"{len(archs)} architectures but {len(y)} latencies")
    if len(y) < MIN_ROWS:
        raise LatencyError(f"a few-shot fit needs at least {MIN_ROWS} measured rows, "
                           f"got {len(y)}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise LatencyError("measured latencies must be finite and positive")
    x = models.design(one_hot(space, archs))
    m, k = len(models.devices), len(models.feature_mean)
    base = np.r_[0.0, np.ones(m), np.full(k, feature_penalty)]
    loo, g, w = best_ridge(x, np.log(y), base, grid)
    wd, wf = w[1:1 + m], w[1 + m:]
    beta = models.coef[1:] @ (wd / models.scale) + wf
    intercept = float(w[0] + (models.coef[0] - models.mean) @ (wd / models.scale)
                      - wf @ models.feature_mean)
    weights, start = [], 0
    for _, options in models.layout:
        weights.append([float(v) for v in beta[start:start + len(options)]])
        start += len(options)
    return FewShotModel(space.name, models.layout, intercept, weights, models.devices,
                        float(g), float(np.sqrt(loo)))


class FewShotPredictor:
    """latency_ms(arch) of a device fitted few-shot (see `FewShotModel`)."""

    def __init__(self, space: SearchSpace, model: FewShotModel, device: str):
        if model.space != space.name:
            raise LatencyError(f"device {device!r} was fitted for space {model.space!r}, "
                               f"not {space.name!r}")
        if model.layout != layout_of(space):
            raise LatencyError(f"device {device!r} was fitted for another version of space "
                               f"{space.name!r} (its dimensions differ); fit it again")
        self.space, self.model, self.device = space, model, device

    def latency_ms(self, arch: Arch) -> float:
        return self.model.latency_ms(arch)

    def describe(self) -> dict[str, object]:
        return {"device": self.device, "kind": "fewshot", "space": self.space.name,
                "references": list(self.model.references)}
