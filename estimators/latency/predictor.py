"""Table predictors: latency_ms(arch) = correction(sum of the arch's block entries).

`LocalTable` reads this machine's measured entries (and, if given a profiler, measures a block
the table lacks and stores it); `LutTable` reads an imported published table through its
format's key mapping. Entries are loaded into a dict once, so a prediction costs the space's
`blocks(arch)` plus one dict lookup per block.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from estimators.latency.errors import LatencyError
from estimators.latency.profiler import Profiler
from estimators.latency.store import Correction, Entry, LatencyStore
from search_spaces import Arch, BlockSpec, SearchSpace

Keyer = Callable[[Sequence[BlockSpec]], list]


class Predictor(Protocol):
    device: str
    space: SearchSpace

    def latency_ms(self, arch: Arch) -> float: ...

    def describe(self) -> dict[str, object]: ...


class BlockTable(Protocol):
    def lookup(self, specs: Sequence[BlockSpec]) -> list[float]: ...


class LocalTable:
    """Entries measured here for one fingerprint/batch/dtype, read with statistic `stat`."""

    def __init__(self, store: LatencyStore, fingerprint: str, batch_size: int, dtype: str,
                 stat: str = "median", profiler: Profiler | None = None):
        self.store, self.fingerprint = store, fingerprint
        self.batch_size, self.dtype, self.stat = batch_size, dtype, stat
        self.profiler = profiler
        self.ms = {sig: e.stat(stat) for sig, e in store.entries(fingerprint, batch_size,
                                                                  dtype).items()}
        self.measured_on_demand = 0

    def lookup(self, specs: Sequence[BlockSpec]) -> list[float]:
        table = self.ms
        try:
            return [table[s.signature] for s in specs]
        except KeyError:
            self._fill([s for s in specs if s.signature not in table])
            return [table[s.signature] for s in specs]

    def _fill(self, missing: list[BlockSpec]) -> None:
        if self.profiler is None:
            raise LatencyError(f"the latency table lacks {len(missing)} block(s) of this network, "
                               f"e.g. {missing[0].signature}; run `nas latency build` for the "
                               f"space")
        with self.profiler.session():
            for spec in {s.signature: s for s in missing}.values():
                timing = self.profiler.time_block(spec)
                entry = Entry(spec.signature, timing.median_ms, timing.min_ms, timing.rounds,
                              timing.calls)
                self.store.put(self.fingerprint, self.batch_size, self.dtype, [entry])
                self.ms[spec.signature] = entry.stat(self.stat)
                self.measured_on_demand += 1


class LutTable:
    """An imported table: `keyer(specs)` gives each block's key in the table (None: free)."""

    def __init__(self, entries: dict[str, float], keyer: Keyer, name: str):
        self.ms = entries
        self.keyer = keyer
        self.name = name

    def lookup(self, specs: Sequence[BlockSpec]) -> list[float]:
        keys = self.keyer(specs)
        missing = [k for k in keys if k is not None and k not in self.ms]
        if missing:
            raise LatencyError(f"device {self.name!r}: its table has no entry {missing[0]!r} "
                               f"({len(missing)} block(s) of this network are not covered)")
        return [0.0 if k is None else self.ms[k] for k in keys]


class TablePredictor:
    """Sum of a table's block entries plus the fitted correction."""

    def __init__(self, space: SearchSpace, table: BlockTable, correction: Correction,
                 device: str, num_classes: int | None = None, info: dict | None = None):
        self.space, self.table, self.correction = space, table, correction
        self.device, self.num_classes = device, num_classes
        self.info = info or {}

    def block_ms(self, arch: Arch) -> list[tuple[BlockSpec, float]]:
        specs = self.space.blocks(arch, self.num_classes)
        return list(zip(specs, self.table.lookup(specs)))

    def latency_ms(self, arch: Arch) -> float:
        """Never negative: a fitted negative overhead below the calibrated range gives 0."""
        total = sum(self.table.lookup(self.space.blocks(arch, self.num_classes)))
        return max(0.0, self.correction.apply(total))

    def describe(self) -> dict[str, object]:
        return {"device": self.device, "kind": "table", "space": self.space.name,
                "overhead_ms": self.correction.overhead_ms, "scale": self.correction.scale,
                **self.info}
