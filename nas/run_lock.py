"""Where a command writes: one search per run folder at a time, and output paths checked
before any long work.

`run_lock(run_dir)` holds an exclusive, non-blocking `flock` on `run_dir/.lock` for the life of
a search (new or resumed): a second `nas search` on the same folder fails at once with one
line and writes nothing. The kernel drops the lock when its process ends, however it ends, so a
run killed with SIGKILL is resumed without any clean-up. (Linux and macOS; where `flock` is
missing or the file system refuses it, runs go unlocked.)
"""
from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from search_spaces import NasError, first_line

try:
    import fcntl
except ImportError:  # not on Linux or macOS
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


class RunFolderError(NasError):
    """A run folder in use by another search, or an output path that cannot be written."""


@contextmanager
def run_lock(run_dir: str | Path, check: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the run folder's lock (the folder must exist) until the block ends. `check` runs
    once the lock is held and before anything is written (it may refuse the folder)."""
    run_dir = Path(run_dir)
    if fcntl is None:
        if check is not None:
            check()
        yield
        return
    with writing(run_dir):
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    locked = True
    try:
        try:
            _acquire(fd)
        except OSError as exc:
            if exc.errno not in BUSY:
                locked = False  # a file system without locks: run unlocked
            else:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                raise RunFolderError(
                    f"{run_dir} is in use by another nas search"
                    f"{f' (process {holder})' if holder.isdigit() else ''}; wait for it to "
                    f"end, or choose another --out") from None
        if check is not None:
            check()
        if locked:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _acquire(fd: int, tries: int = 10) -> None:
    """The exclusive lock, without waiting for a search; a few short retries ride out
    `is_locked` probes (a shared lock held for microseconds by `nas report`)."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in BUSY or attempt == tries - 1:
                raise
            time.sleep(0.02)


def is_locked(run_dir: str | Path) -> bool:
    """True while a search holds the folder's lock."""
    path = Path(run_dir) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


# --- output paths --------------------------------------------------------------------------------
@contextmanager
def writing(target: str | Path) -> Iterator[None]:
    """Turn an OSError from writing `target` (a file or a folder) into one line."""
    try:
        yield
    except OSError as exc:
        raise RunFolderError(f"cannot write {target}: "
                             f"{exc.strerror or first_line(exc)}") from None


def check_output_file(path: str | Path, flag: str) -> Path:
    """A file a command will write: not a folder, not below a file, in a writable folder."""
    with usable_path(path, flag):
        return _check_output_file(Path(path), flag)


def _check_output_file(path: Path, flag: str) -> Path:
    if path.is_dir():
        raise RunFolderError(f"{flag} {path} is a folder; give a file name (inside it, or "
                             f"elsewhere)")
    _check_parents(path, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise RunFolderError(f"{flag} {path}: the file is read-only")
    return path


def path_refusal(exc: BaseException) -> str | None:
    """Why the system refused a path a user gave (a name too long, a NUL byte, a symlink
    loop), as one line; None for any other error."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):
        return f"{exc.strerror}: {str(exc.filename)[:80]!r}"
    if isinstance(exc, ValueError) and "null" in str(exc) and "embedded" in str(exc):
        return "a path holds a NUL byte"
    return None


@contextmanager
def usable_path(path: str | Path, flag: str) -> Iterator[None]:
    """A path the system refuses to look at (a name too long, a NUL byte) is one line."""
    if not str(path).strip():
        raise RunFolderError(f"{flag} is empty: give a path")
    try:
        yield
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
        raise RunFolderError(f"{flag} {str(path)[:80]!r}: not a usable path ({reason})") \
            from None


def check_output_dir(path: str | Path, flag: str) -> Path:
    """A folder a command will create or write into: not a file, not below a file, writable."""
    with usable_path(path, flag):
        return _check_output_dir(Path(path), flag)


def _check_output_dir(path: Path, flag: str) -> Path:
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{flag} {path} is a file, not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise RunFolderError(f"{flag} {path}: the folder is not writable")
        return path
    _check_parents(path, flag)
    return path


def _check_parents(path: Path, flag: str) -> None:
    """The nearest existing folder above `path` is a folder and writable."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunFolderError(f"{flag} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise RunFolderError(f"{flag} {path}: cannot write in {parent} "
                                     f"(permission denied)")
            return
