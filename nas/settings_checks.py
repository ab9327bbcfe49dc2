"""What the resumable commands' settings dataclasses share (`nas grow`, `nas compress`,
`nas evolve-layer`, `nas stitch`): value checks that raise one-line errors of the command's
own `NasError` class, and `ResumableSettings` (read back from config.json, compared on
--resume)."""
from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from search_spaces import NasError, first_line


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


S = TypeVar("S", bound="ResumableSettings")


class ResumableSettings:
    """A mixin of a frozen settings dataclass that a run folder keeps in its config.json:
    `from_json` reads it back (fields this version does not know are dropped), `differences`
    names what a resumed run would change beyond the fields in `RESUMABLE` (those change how
    the run is computed, not what it computes)."""

    RESUMABLE: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_json(cls: type[S], value: dict[str, Any]) -> S:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in value.items() if k in known})

    def differences(self, other: ResumableSettings) -> list[str]:
        """`name old -> new` for every field of `other` (the saved run's) this one changes."""
        return [f"{f.name} {getattr(other, f.name)!r} -> {getattr(self, f.name)!r}"
                for f in fields(self)  # type: ignore[arg-type]
                if f.name not in self.RESUMABLE
                and getattr(self, f.name) != getattr(other, f.name)]

    def changes_to_run(self, run_dir: str | Path, command: str,
                       error: type[NasError]) -> list[str]:
        """`differences` from the settings of the `command` run kept in RUN/config.json; one
        line of `error` for a folder of another command or with damaged settings."""
        from nas.results import read_json

        config = read_json(Path(run_dir) / "config.json")
        saved = config.get("settings") if isinstance(config, dict) else None
        if not isinstance(saved, dict) or config.get("command") != command:
            raise error(f"{run_dir} holds a run of another command, not `{command}`")
        try:
            other = type(self).from_json(saved)
        except (NasError, TypeError, KeyError) as exc:
            raise error(f"{run_dir}/config.json has damaged settings "
                        f"({first_line(exc)})") from None
        return self.differences(other)


__all__ = ["ResumableSettings", "check_number", "check_whole"]
