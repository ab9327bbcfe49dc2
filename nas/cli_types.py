"""argparse value types shared by the `nas` subcommands (a bad value is a one-line usage error)."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def resolution(text: str) -> int | str | None:
    """'data' (None: the data set's own size), 'arch' (each architecture's own) or pixels."""
    if text in ("data", "arch"):
        return None if text == "data" else "arch"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'data', 'arch' or a number of pixels, "
                                         f"got {text!r}") from None
