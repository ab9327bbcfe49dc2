"""The value checks of the commands' settings dataclasses (`nas grow`, `nas compress`,
`nas stitch`): one-line errors of the command's own `NasError` class."""
from __future__ import annotations

import math
from typing import Any

from search_spaces import NasError


def check_whole(name: str, value: Any, low: int, error: type[NasError] = NasError) -> None:
    """`value` is an int (not a bool) of at least `low`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise error(f"{name} must be a whole number >= {low}, got {value!r}")


def check_number(name: str, value: Any, low: float, high: float = math.inf,
                 low_open: bool = False, high_open: bool = True,
                 error: type[NasError] = NasError) -> None:
    """`value` is a number (not a bool) in the interval from `low` to `high`, each end open or
    closed as given."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        (value > low if low_open else value >= low) and (value < high if high_open
                                                         else value <= high)
    if not ok:
        raise error(f"{name} must be a number in {'(' if low_open else '['}{low:g}, "
                    f"{high:g}{')' if high_open else ']'}, got {value!r}")


__all__ = ["check_number", "check_whole"]
