"""`nas strategies` and `nas estimators`: each registered plugin, what it does and the options
it takes (default and help), read from the registries that `--option` is checked against."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from dataclasses import MISSING, fields
from typing import Any

from nas.cli.common import CommandAdder, emit
from search_spaces import NasError

HELP_WIDTH = 100


def _summary(obj: Any) -> str:
    """The first sentence of a plugin module's docstring, without its `name:` lead."""
    doc = (sys.modules[obj.__module__].__doc__ or "").strip().split("\n\n")[0]
    text = " ".join(doc.split())
    return text.split(": ", 1)[1] if text.startswith("`") and ": " in text else text


def _option_rows(options_type: type) -> list[dict[str, Any]]:
    """Each option with its default and help: the plugin's own first, then inherited ones
    (e.g. the warm start's)."""
    own = set(vars(options_type).get("__annotations__", {}))
    rows = []
    for f in sorted(fields(options_type), key=lambda f: f.name not in own):
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        rows.append({"name": f.name, "default": default, "help": str(f.metadata.get("help", ""))})
    return rows


def strategy_rows(names: list[str] | None = None) -> list[dict[str, Any]]:
    from nas.strategies import get_strategy, list_strategies

    rows = []
    for name in names or list_strategies():
        cls = get_strategy(name)
        rows.append({"name": name, "objectives": "several" if cls.multi_objective else "one",
                     "summary": _summary(cls), "options": _option_rows(cls.options_type)})
    return rows


def estimator_rows(names: list[str] | None = None) -> list[dict[str, Any]]:
    from estimators.registry import get_estimator, list_estimators

    rows = []
    for name in names or list_estimators():
        plugin = get_estimator(name)
        rows.append({"name": name, "needs_data": plugin.needs_data, "unit": plugin.unit,
                     "summary": plugin.summary, "options": _option_rows(plugin.Options)})
    return rows


def format_rows(rows: list[dict[str, Any]], traits: tuple[str, ...]) -> str:
    lines = []
    for row in rows:
        said = ", ".join(f"{t.replace('_', ' ')}" if row[t] is True else
                         f"{t.replace('_', ' ')}: {row[t]}" for t in traits
                         if row[t] not in (False, None))
        lines.append(f"{row['name']}" + (f" ({said})" if said else ""))
        if row["summary"]:
            lines += textwrap.wrap(row["summary"], HELP_WIDTH, initial_indent="  ",
                                   subsequent_indent="  ")
        width = max((len(f"{o['name']}={json.dumps(o['default'])}") for o in row["options"]),
                    default=0)
        for option in row["options"]:
            head = f"{option['name']}={json.dumps(option['default'])}"
            lines += textwrap.wrap(option["help"] or "-", HELP_WIDTH,
                                   initial_indent=f"    {head:<{width}}  ",
                                   subsequent_indent=" " * (width + 6))
        lines.append("")
    return "\n".join(lines).rstrip()


def _pick(names: list[str], known: list[str], what: str) -> list[str]:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise NasError(f"unknown {what} {unknown[0]!r}; known: {', '.join(known)}")
    return names


def cmd_strategies(args: argparse.Namespace) -> int:
    from nas.strategies import list_strategies

    rows = strategy_rows(_pick(args.names, list_strategies(), "strategy"))
    emit(args, rows, format_rows(rows, ("objectives",)))
    return 0


def cmd_estimators(args: argparse.Namespace) -> int:
    from estimators.registry import list_estimators

    rows = estimator_rows(_pick(args.names, list(list_estimators()), "estimator"))
    emit(args, rows, format_rows(rows, ("needs_data", "unit")))
    return 0


def register(command: CommandAdder) -> None:
    p = command("strategies", cmd_strategies,
                "list the search strategies and their options (nas search --option NAME=VALUE)")
    p.add_argument("names", nargs="*", help="only these strategies")
    p = command("estimators", cmd_estimators,
                "list the accuracy estimators and their options (nas search --option NAME=VALUE)")
    p.add_argument("names", nargs="*", help="only these estimators")
