"""User-facing latency errors (the CLI prints them as one `error: ...` line, exit status 2)."""
from __future__ import annotations

from search_spaces.errors import NasError


class LatencyError(NasError):
    """A latency request that cannot be met: unknown device, missing table, bad file or column."""
