"""`nas` command line. User mistakes print one `error: ...` line and exit with status 2.

Each subcommand group lives in its own module with `register(command)`; they are imported
here, statically, and share `nas.cli.common` (parser, output, value types)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from nas.cli import (
    benchmark,
    evaluate,
    evonorm,
    explore,
    latency,
    morph,
    plugins,
    search,
    stitch,
    supernet,
    train,
)
from nas.cli.common import EXIT_USAGE, Parser
from nas.differentiable import cli as differentiable
from nas.run_lock import path_refusal
from search_spaces import NasError

# In the order `nas --help` lists them.
COMMAND_MODULES = (explore, evaluate, train, search, morph, stitch, latency, differentiable,
                   supernet, benchmark, evonorm, plugins)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nas", description="Neural architecture search engine.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str):
        """A subcommand with `--json`; `func(args)` returns the exit status."""
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
        return p

    for module in COMMAND_MODULES:
        module.register(command)
    return parser


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Our own warnings (a data-set fallback, a damaged cache discarded) as one `warning: ...`
    line when they happen; library noise (deprecations inside Ray, fvcore...) is dropped."""
    if category.__module__.split(".")[0] in ("estimators", "nas", "search_spaces"):
        sys.stderr.write(f"warning: {' '.join(str(message).split())}\n")


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _warning_line  # restored when the block ends
            return args.func(args)
    except NasError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader stopped early (`nas spaces | head`): not an error. Later writes, the
        # interpreter's final flush included, go nowhere instead of raising again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, ValueError) as exc:  # a path the system refused, wherever it was used
        reason = path_refusal(exc)
        if reason is None:
            raise
        sys.stderr.write(f"error: {reason}\n")
        return EXIT_USAGE
