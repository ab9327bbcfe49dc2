"""Validation on this machine: predicted against measured latency for random networks.

Every network is measured end to end interleaved with its own blocks (`interleave.py`), so
drift of a shared machine hits prediction and measurement alike. The correction is fitted on
`calibration` extra networks measured the same way, never on the test networks. Baselines
and variants reported beside it: a FLOPs-only linear model fitted on the same calibration
networks, and (when a table was built) the stored table with its stored correction, which is
what search uses.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from estimators.files import atomic_path
from estimators.latency.correction import fit_correction, fit_linear
from estimators.latency.errors import LatencyError
from estimators.latency.interleave import Paired, measure_paired
from estimators.latency.metrics import accuracy
from estimators.latency.predictor import Predictor
from estimators.latency.profiler import Profiler
from estimators.progress import CountProgress
from search_spaces import Arch, SearchSpace


@dataclass
class Validation:
    rows: list[dict[str, object]]
    interleaved: dict[str, float]
    flops_baseline: dict[str, float]
    table: dict[str, float] | None
    correction: dict[str, float]
    settings: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {**self.interleaved, "flops_baseline": self.flops_baseline, "table": self.table,
                "correction": self.correction, **self.settings}


def distinct_samples(space: SearchSpace, count: int, seed: int,
                     exclude: set[Arch] = frozenset()) -> list[Arch]:
    rng = np.random.default_rng(seed)
    archs: dict[Arch, None] = {}
    tries = 0
    while len(archs) < count and tries < 100 * count:
        arch = space.sample(rng)
        tries += 1
        if arch not in exclude:
            archs[arch] = None
    if len(archs) < count:
        raise LatencyError(f"space {space.name!r} has fewer than {count} distinct architectures")
    return list(archs)


def validate(space: SearchSpace, profiler: Profiler, n: int = 100, calibration: int = 20,
             passes: int = 3, seed: int = 0, num_classes: int | None = None,
             table_predictor: Predictor | None = None,
             progress: CountProgress | None = None) -> Validation:
    """Measure `calibration` + `n` random networks (shuffled, each interleaved with its blocks),
    fit the correction on the first group, and score predictions on the second."""
    from estimators.flops import analytical_cost

    if n < 2 or calibration < 2:
        raise LatencyError(f"-n and --calibration must be at least 2, got {n} and {calibration}")
    calib = distinct_samples(space, calibration, seed + 1)
    tests = distinct_samples(space, n, seed, set(calib))
    order = [(a, "calibration") for a in calib] + [(a, "test") for a in tests]
    np.random.default_rng(seed).shuffle(order)  # no link between time of measurement and split
    paired: dict[Arch, Paired] = {}
    with profiler.session():
        for done, (arch, _) in enumerate(order, 1):
            paired[arch] = measure_paired(profiler, space, arch, passes, num_classes)
            if progress:
                progress(done, len(order))
    correction = fit_correction([paired[a].block_sum_ms for a in calib],
                                [paired[a].network_ms for a in calib])
    flops = {a: float(analytical_cost(a, num_classes).macs) for a, _ in order}
    f0, f1 = fit_linear([flops[a] for a in calib], [paired[a].network_ms for a in calib])
    rows = []
    for arch, split in order:
        p = paired[arch]
        row: dict[str, object] = {
            "key": arch.key, "split": split, "flops": flops[arch], "measured_ms": p.network_ms,
            "block_sum_ms": p.block_sum_ms, "predicted_ms": correction.apply(p.block_sum_ms),
            "flops_model_ms": f0 + f1 * flops[arch]}
        if table_predictor is not None:
            row["table_predicted_ms"] = float(table_predictor.latency_ms(arch))
        rows.append(row)
    test_rows = [r for r in rows if r["split"] == "test"]
    measured = [r["measured_ms"] for r in test_rows]
    table = (accuracy([r["table_predicted_ms"] for r in test_rows], measured)
             if table_predictor is not None else None)
    return Validation(rows, accuracy([r["predicted_ms"] for r in test_rows], measured),
                      accuracy([r["flops_model_ms"] for r in test_rows], measured), table,
                      {"overhead_ms": correction.overhead_ms, "scale": correction.scale},
                      {"space": space.name, "fingerprint": profiler.fingerprint.key,
                       "calibration_networks": calibration, "passes": passes, "seed": seed})


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    """Atomically write rows as CSV."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_scatter(rows: list[dict[str, object]], path: Path, title: str) -> None:
    """Predicted vs measured (test networks), with the +-10% band; atomic write."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = [r for r in rows if r["split"] == "test"]
    measured = np.array([r["measured_ms"] for r in test], dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    series = [("predicted_ms", "blocks + correction", "o"), ("flops_model_ms", "FLOPs only", "x")]
    if test and "table_predicted_ms" in test[0]:
        series.insert(1, ("table_predicted_ms", "stored table", "."))
    for column, label, marker in series:
        ax.scatter(measured, [r[column] for r in test], s=14, marker=marker, label=label, alpha=0.7)
    lo, hi = float(measured.min()) * 0.8, float(measured.max()) * 1.2
    line = np.linspace(lo, hi, 50)
    ax.plot(line, line, "k-", lw=0.8)
    ax.fill_between(line, line * 0.9, line * 1.1, color="grey", alpha=0.2, label="+-10%")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured latency (ms)",
           ylabel="predicted latency (ms)", title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
