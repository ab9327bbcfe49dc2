"""Checks of a space family's settings (what a YAML/JSON space file may give).

Every check raises a ValueError whose message names the setting, what it accepts and what it
got; `config_from_dict` turns that into one `error:` line. The bounds are generous sanity
limits (a width of 10^9 channels or a kernel of 1,000 is a typo, not a network this engine can
build), and every number that ends up in an architecture key must be written in plain ASCII
decimal (`1e-05`, `-8` or `nan` could not be read back from a key).
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

MAX_CHANNELS = 1 << 16  # widths, stems, heads, growth rates
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841; a 10^6-way classifier is gigabytes
MAX_KERNEL = 31
MAX_STRIDE = 8
MAX_DEPTH = 256  # layers or blocks per stage (and a ViT's depth)
MAX_RESOLUTION = 8192
MAX_RATIO = 64.0  # expand and MLP ratios, bottleneck expansions
MAX_WIDTH_MULT = 16.0

_PLAIN = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value: Any) -> bool:
    """An int that is not a bool (YAML's `true` is not a width)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def as_list(value: Any) -> list[Any]:
    """A list or tuple as a list; anything else as a one-item list (a bare `3` means `[3]`,
    while a string stays one item, so `"three"` fails the item check)."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def int_value(field: str, value: Any, low: int = 1, high: int = MAX_CHANNELS) -> int:
    """One whole number in low..high."""
    if not is_int(value) or not low <= value <= high:
        raise ValueError(f"{field} must be a whole number in {low}..{high}, got {_shown(value)}")
    return int(value)


def float_value(field: str, value: Any, low: float, high: float,
                low_closed: bool = True, high_closed: bool = False) -> float:
    """One finite number in the interval low..high (ends as given)."""
    inside = is_number(value) and (low <= value if low_closed else low < value) and (
        value <= high if high_closed else value < high)
    if not inside:
        interval = f"{'[' if low_closed else '('}{low}, {high}{']' if high_closed else ')'}"
        raise ValueError(f"{field} must be a number in {interval}, got {_shown(value)}")
    return float(value)


def bool_value(field: str, value: Any) -> bool:
    """true/false (0 and 1 are read as false and true)."""
    if isinstance(value, bool) or (is_int(value) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{field} must be true or false, got {_shown(value)}")


def _describe_ints(low: int, high: int, odd: bool) -> str:
    return f"{'odd ' if odd else ''}whole numbers in {low}..{high}"


def int_list(field: str, values: Any, low: int = 1, high: int = MAX_CHANNELS, *,
             odd: bool = False, length: int | None = None, sort: bool = True) -> tuple[int, ...]:
    """Whole numbers in low..high (odd ones only if `odd`: a kernel that pads k//2 must be
    odd to keep the shape). Sorted and deduplicated when `sort` (options, cheapest first),
    else kept in order (one per stage) and `length` long when given."""
    items = as_list(values)
    what = _describe_ints(low, high, odd)
    if not items:
        raise ValueError(f"{field} must be a non-empty list of {what}")
    for item in items:
        if not is_int(item) or not low <= item <= high or (odd and item % 2 == 0):
            raise ValueError(f"{field} must be a list of {what}, got {_shown(item)}"
                             + (" (an even kernel changes the output size)"
                                if odd and is_int(item) and low <= item <= high else ""))
    if length is not None and len(items) != length:
        raise ValueError(f"{field} needs one entry per stage ({length}), got {len(items)}")
    return tuple(sorted(set(items))) if sort else tuple(items)


def number_list(field: str, values: Any, low: float = 0.0, high: float = MAX_RATIO, *,
                plain: bool = True) -> tuple[float | int, ...]:
    """Distinct finite numbers in (low, high], sorted ascending; `plain`: each one written as
    an ASCII decimal by str() (it is a token of the architecture keys)."""
    items = as_list(values)
    what = f"numbers in ({low:g}, {high:g}]"
    if not items:
        raise ValueError(f"{field} must be a non-empty list of {what}")
    for item in items:
        if not is_number(item) or not low < item <= high:
            raise ValueError(f"{field} must be a list of {what}, got {_shown(item)}")
        if plain and not _PLAIN.fullmatch(str(item)):
            raise ValueError(f"{field}: {item!r} has no short decimal form (keys write it "
                             f"as {str(item)!r}); use a number such as 0.5, 2 or 4.5")
    unique: dict[float, Any] = {}
    for item in items:
        unique.setdefault(float(item), item)  # 3 and 3.0 are one option: the first one given
    return tuple(unique[k] for k in sorted(unique))


def name_list(field: str, values: Any, known: Sequence[str], *, length: int | None = None,
              distinct: bool = False) -> tuple[str, ...]:
    """Names from `known`, in the given order."""
    items = as_list(values)
    if not items or any(not isinstance(v, str) or v not in known for v in items):
        bad = next((v for v in items if not isinstance(v, str) or v not in known), None)
        raise ValueError(f"{field} must be a non-empty list of names from {list(known)}"
                         + ("" if not items else f", got {_shown(bad)}"))
    if distinct and len(set(items)) != len(items):
        raise ValueError(f"{field} must not repeat a name, got {items}")
    if length is not None and len(items) != length:
        raise ValueError(f"{field} needs one entry per stage ({length}), got {len(items)}")
    return tuple(items)


def choice(field: str, value: Any, known: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in known:
        raise ValueError(f"{field} must be one of {list(known)}, got {_shown(value)}")
    return value


def nested_int_lists(field: str, values: Any, count: int | None = None, low: int = 1,
                     high: int = MAX_DEPTH) -> tuple[tuple[int, ...], ...]:
    """One list of whole-number options per stage (each sorted, deduplicated)."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{field} must be a list with one list of options per stage")
    if count is not None and len(values) != count:
        raise ValueError(f"{field} must have {count} entries (one per stage), got {len(values)}")
    return tuple(int_list(f"{field}[{i}]", v, low, high) for i, v in enumerate(values))
