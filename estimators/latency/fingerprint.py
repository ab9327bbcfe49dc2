"""Device fingerprints: the identity every latency entry is keyed by.

A CPU is its model name, the thread count used, the torch version and the clock that timed it;
a GPU is its name, the CUDA and cuDNN versions (and whether CUDA graphs were used). Two
measurements are only comparable when their fingerprints are equal.
"""
from __future__ import annotations

import platform
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache

import torch

from estimators.latency.errors import LatencyError

CLOCKS = ("thread", "wall")


@dataclass(frozen=True)
class Fingerprint:
    """What a measurement is valid for. `key` is the stable text used in the store."""

    kind: str  # "cpu" or "cuda"
    model: str  # CPU model name or GPU name
    threads: int  # intra-op threads (CPU); 0 on CUDA
    torch_version: str
    clock: str = "wall"  # "thread" (CPU time of the timing thread) or "wall"
    cuda_version: str = ""
    cudnn_version: str = ""
    graphs: bool = False

    @property
    def key(self) -> str:
        if self.kind == "cpu":
            return (f"cpu|{self.model}|threads={self.threads}|torch={self.torch_version}"
                    f"|{self.clock}")
        graphs = "|graphs" if self.graphs else ""
        return (f"cuda|{self.model}|cuda={self.cuda_version}|cudnn={self.cudnn_version}"
                f"|torch={self.torch_version}{graphs}")

    def describe(self) -> dict[str, object]:
        return {"key": self.key, "kind": self.kind, "model": self.model, "threads": self.threads,
                "torch": self.torch_version, "clock": self.clock, "cuda": self.cuda_version,
                "cudnn": self.cudnn_version, "cuda_graphs": self.graphs}


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo, sysctl, or the platform module)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                 capture_output=True, text=True, timeout=5, check=False)
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def default_clock(threads: int) -> str:
    """CPU time of the timing thread when one thread does all the work (it excludes the time the
    thread waits while other processes run, which dominates wall time on a shared machine);
    wall time otherwise, and on Windows (whose thread clock ticks in ~15 ms steps)."""
    return "thread" if threads == 1 and sys.platform != "win32" else "wall"


def cpu_fingerprint(threads: int = 1, clock: str | None = None) -> Fingerprint:
    if threads < 1:
        raise LatencyError(f"--threads must be at least 1, got {threads}")
    clock = clock or default_clock(threads)
    if clock not in CLOCKS:
        raise LatencyError(f"unknown clock {clock!r}; accepted: {', '.join(CLOCKS)}")
    if clock == "thread" and threads != 1:
        raise LatencyError("the 'thread' clock only measures one thread; use --clock wall "
                           "with --threads > 1")
    return Fingerprint("cpu", cpu_model(), threads, torch.__version__, clock)


def cuda_fingerprint(index: int = 0, graphs: bool = False) -> Fingerprint:
    if not torch.cuda.is_available():
        raise LatencyError("--device cuda: no CUDA device is visible to torch here; "
                           "use --device cpu or a fitted/imported device name")
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return Fingerprint("cuda", torch.cuda.get_device_name(index), 0, torch.__version__,
                       "cuda-events", str(torch.version.cuda), str(cudnn or "none"), graphs)


def local_fingerprint(device: str = "cpu", threads: int | None = None, clock: str | None = None,
                      graphs: bool = False) -> Fingerprint:
    """The fingerprint of this machine's `cpu` or `cuda` device with the given settings."""
    if device == "cpu":
        return cpu_fingerprint(threads or 1, clock)
    if device == "cuda":
        return cuda_fingerprint(0, graphs)
    raise LatencyError(f"local device must be 'cpu' or 'cuda', got {device!r}")
