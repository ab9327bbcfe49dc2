"""Progress lines for benchmark scripts (imported as `progress`: a script's folder is on sys.path)."""
from __future__ import annotations

import sys
from collections.abc import Callable


def progress_lines() -> Callable[[str, int, int, dict], None]:
    """A search progress callback that prints one line per tenth of each phase to stderr."""
    shown: dict[str, int] = {}

    def report(phase: str, step: int, total: int, info: dict) -> None:
        tenth = 10 * step // total
        if tenth > shown.get(phase, 0):
            shown[phase] = tenth
            values = " ".join(f"{k}={v:.3g}" for k, v in info.items() if k != "step")
            print(f"  {phase} {step}/{total} {values}", file=sys.stderr, flush=True)

    return report
