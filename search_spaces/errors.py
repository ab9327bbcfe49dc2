"""User-facing errors. The CLI prints `error: <message>` and exits with status 2."""


class NasError(Exception):
    """A mistake in what the user asked for (bad key, unknown space, bad budget...)."""


class UnknownSpaceError(NasError):
    pass


class InvalidArchError(NasError):
    pass
