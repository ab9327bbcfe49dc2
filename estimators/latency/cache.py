"""Where latency tables and device models live: the user's cache directory.

Order of precedence: an explicit argument, the `NAS_CACHE_DIR` environment variable, then the
platform's cache location (`$XDG_CACHE_HOME/nas` or `~/.cache/nas` on Linux,
`~/Library/Caches/nas` on macOS, `%LOCALAPPDATA%\\nas\\Cache` on Windows).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from estimators.latency.errors import LatencyError

ENV_VAR = "NAS_CACHE_DIR"
TABLE_FILE = "latency.sqlite"
DEVICES_DIR = "devices"


def platform_cache_dir() -> Path:
    """The platform's per-user cache folder for this application."""
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "nas"
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / "nas" / "Cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(home / ".cache")
    return Path(base) / "nas"


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder to use (created if missing)."""
    chosen = Path(override) if override else (
        Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else platform_cache_dir())
    chosen = chosen.expanduser()
    _make(chosen)
    return chosen


def _make(folder: Path) -> None:
    """Create `folder`; a path that is a file or cannot be written is one line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LatencyError(f"cache folder {str(folder)[:80]}: cannot be used ({reason})") \
            from None


def table_path(override: str | os.PathLike[str] | None = None) -> Path:
    return cache_dir(override) / TABLE_FILE


def devices_dir(override: str | os.PathLike[str] | None = None) -> Path:
    path = cache_dir(override) / DEVICES_DIR
    _make(path)
    return path
