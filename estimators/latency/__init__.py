"""Hardware latency: profiler, device fingerprints, the SQLite lookup-table store, table and
fitted predictors, imported published tables, and `LatencyEstimator` for search."""
from estimators.latency.build import BuildReport, build_table, calibrate
from estimators.latency.devices import import_lut, list_devices, open_predictor
from estimators.latency.errors import LatencyError
from estimators.latency.estimator import LatencyEstimator
from estimators.latency.fingerprint import Fingerprint, local_fingerprint
from estimators.latency.metrics import accuracy
from estimators.latency.profiler import Profiler
from estimators.latency.store import Correction, Entry, LatencyStore
from estimators.latency.timing import Timing, TimingPlan

__all__ = ["BuildReport", "Correction", "Entry", "Fingerprint", "LatencyError",
           "LatencyEstimator", "LatencyStore", "Profiler", "Timing", "TimingPlan", "accuracy",
           "build_table", "calibrate", "import_lut", "list_devices", "local_fingerprint",
           "open_predictor"]
