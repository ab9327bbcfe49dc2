"""What every `nas` subcommand shares: the one-line-error parser, output (`emit`), argparse
value types (a bad value is a one-line usage error, exit status 2), and the run folder of a
resumable command (`resumed_settings`, `fresh_out_dir`)."""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search_spaces import NasError, first_line
from search_spaces.settings import MAX_CLASSES

EXIT_USAGE = 2
# `command(name, func, help)` adds a subcommand with `--json`; `func(args)` returns the status.
CommandAdder = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line, with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    """The command's result: `payload` as JSON with `--json`, else `text`."""
    print(json.dumps(payload, indent=2) if args.json else text)

MAX_THREADS = 1024


def resumed_settings(resume: str, command: str, kind: Any,
                     given: dict[str, Any]) -> tuple[Any, Path]:
    """The settings (`kind.from_json`) of the `command` run in folder `resume`, with the flags
    `given` over them, and the folder."""
    from dataclasses import replace

    from nas.results import read_json
    from nas.run_lock import check_output_dir

    run_dir = check_output_dir(resume, "--resume")
    config = run_dir / "config.json"
    if not config.is_file():
        raise NasError(f"--resume {run_dir}: no `{command}` run there (no config.json)")
    saved = read_json(config)
    if not isinstance(saved, dict) or saved.get("command") != command or \
            not isinstance(saved.get("settings"), dict):
        raise NasError(f"--resume {run_dir}: a run of another command, not `{command}`")
    try:
        return replace(kind.from_json(saved["settings"]), **given), run_dir
    except (TypeError, ValueError, KeyError) as exc:
        raise NasError(f"--resume {run_dir}: its config.json has damaged settings "
                       f"({first_line(exc)})") from None


def fresh_out_dir(out: str) -> Path:
    """The folder `--out` names, refused when it already holds a run."""
    from nas.run_lock import check_output_dir

    run_dir = check_output_dir(out, "--out")
    if (run_dir / "config.json").exists():
        raise NasError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
                       f"or choose another --out")
    return run_dir


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def number_in(low: float, high: float, what: str, low_open: bool = False
              ) -> Callable[[str], float]:
    """An argparse type: a number in [low, high) (or (low, high) with `low_open`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not ((value > low if low_open else value >= low) and value < high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


# A command-line flag of a settings dataclass: (its field, the argparse type, help text).
SettingsFlag = tuple[str, Callable[[str], Any], str]


def add_settings_flags(parser: argparse.ArgumentParser, flags: dict[str, SettingsFlag],
                       settings_type: type) -> None:
    """One option per flag, default None (the dataclass's own default applies), help ending
    with that default, read from the dataclass's fields."""
    from dataclasses import fields

    defaults = {f.name: f.default for f in fields(settings_type)}
    for flag, (field, kind, text) in flags.items():
        default = defaults[field]
        shown = f"{default:.4g}" if isinstance(default, float) else default
        parser.add_argument(flag, dest=field, type=kind, default=None,
                            help=f"{text} (default {shown})")


MAX_SEED = 2 ** 63 - 1  # numpy refuses negative seeds, torch those of 64 bits and more


def seed(text: str) -> int:
    """A random seed: a whole number in 0..2^63-1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed, a whole number in 0..2^63-1, "
                                         f"got {text!r}")
    return value


def positive_int_up_to(high: int) -> Callable[[str], int]:
    """`positive_int` with an upper bound (a thread count of 10^9 is a typo, not a request)."""

    def parse(text: str) -> int:
        try:
            value = positive_int(text)
        except argparse.ArgumentTypeError:
            value = 0
        if not 1 <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number in 1..{high}, "
                                             f"got {text!r}")
        return value

    parse.__name__ = f"positive_int_up_to_{high}"
    return parse


threads = positive_int_up_to(MAX_THREADS)
classes = positive_int_up_to(MAX_CLASSES)


def resolution(text: str) -> int | str | None:
    """'data' (None: the data set's own size), 'arch' (each architecture's own) or pixels."""
    if text in ("data", "arch"):
        return None if text == "data" else "arch"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'data', 'arch' or a number of pixels, "
                                         f"got {text!r}") from None


def job_flags(*, seeds: str, unit: str, held_out_for: str) -> dict[str, SettingsFlag]:
    """The flags every training job shares (data, seed, threads, Ray workers): `seeds` says
    what the seed draws, `unit` what one worker trains or evaluates, `held_out_for` what the
    validation share scores."""
    return {
        "--data": ("data", str, "data set"),
        "--data-dir": ("data_dir", str, "folder of the data set"),
        "--val-fraction": ("val_fraction", float, "share of the training set held out "
                                                  f"{held_out_for}"),
        "--seed": ("seed", seed, seeds),
        "--threads": ("threads", threads, f"torch threads per {unit}"),
        "--workers": ("workers", non_negative_int, f"Ray workers (0: {unit} in this process)"),
        "--address": ("address", str, "a Ray cluster to join (HOST:PORT or auto)"),
    }
