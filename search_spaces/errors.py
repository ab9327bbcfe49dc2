"""User-facing errors. The CLI prints `error: <message>` and exits with status 2."""


class NasError(Exception):
    """A mistake in what the user asked for (bad key, unknown space, bad budget...)."""


class UnknownSpaceError(NasError):
    pass


class InvalidArchError(NasError):
    pass


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line for an `error:` message; never fails, even on an
    exception with an empty message (then its type name stands in)."""
    lines = str(exc).strip().splitlines()
    return (lines[0].strip() if lines else type(exc).__name__)[:limit]
