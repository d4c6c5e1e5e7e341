"""The ``copybot`` console script: one entry point, a module per command, and the one error boundary.

Each command module (``streams/cli/<command>.py``) adds its parser and a ``run(args) -> exit code``; it
parses, calls a library, and prints. Libraries raise :mod:`streams.errors`; :func:`main` turns them into
``copybot <command>: <message>`` on stderr and the exit code of :data:`EXIT_CODES` — here and nowhere else.
Only ``copybot worker`` imports Faust, when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from streams import native
from streams.errors import AssignmentError, CopybotError, SettingsError, UsageError

DESCRIPTION = """\
copybot decides, for every trade a followed trader ("leader") makes on a prediction market,
whether and how much to copy -- with Budgeted Dynamic sizing, r_u = clamp(B_u / E_u, r_min, r_max).

Offline: `copybot replay TAPE.jsonl` runs the decision core over a tape (a backtest).
"""

COMMANDS = (
    "streams.cli.replay",
    "streams.cli.sample_tape",
    "streams.cli.worker",
    "streams.cli.kafka",
    "streams.cli.topics",
    "streams.cli.publish",
    "streams.cli.tail",
    "streams.cli.config",
    "streams.cli.demo",
    "streams.cli.ingest",
    "projections.cli",  # copybot project, copybot api
    "streams.cli.schema",
)
"""The modules that add a command (``add_parser(subparsers)``), in the order ``--help`` lists them."""

EXIT_CODES: tuple[tuple[type[CopybotError], int], ...] = (
    (UsageError, 2),
    (SettingsError, 2),
    (AssignmentError, 2),
    (CopybotError, 1),
)
"""Exit code of each error of :mod:`streams.errors` (the first that matches): 2 for what the user gave
(arguments, settings), 1 for what failed (files, Kafka, the worker)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand; returns the process exit code."""
    stale = native.stale_message()  # before any command module loads the core
    if stale is not None:
        print(f"copybot: {stale}", file=sys.stderr)
        return 2
    return dispatch(build_parser(), argv)


def dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Run the command `argv` chooses in `parser`: the one place errors become messages and exit codes."""
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
    except CopybotError as exc:
        print(f"{getattr(args, 'command', 'copybot')}: {exc}", file=sys.stderr)
        return exit_code(exc)
    return code


def exit_code(error: CopybotError) -> int:
    """The process exit code for `error`."""
    return next(code for kind, code in EXIT_CODES if isinstance(error, kind))


def build_parser() -> argparse.ArgumentParser:
    """The ``copybot`` parser with every command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="copybot", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).add_parser(sub)
    return parser


def command(
    parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int], **defaults: object
) -> None:
    """Make `run(args)` the action of `parser`; errors it raises are reported as ``{parser.prog}: ...``."""
    parser.set_defaults(**{"func": run, "command": parser.prog, **defaults})


def command_group(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    title: str = "actions",
    metavar: str = "ACTION",
    **options: Any,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add command `name` (`options` as for ``add_parser``) whose work is done by the actions added to the
    returned subparsers (``copybot topics create``); run without one, it is :func:`no_action`."""
    group = sub.add_parser(name, **options)
    actions = group.add_subparsers(title=title, metavar=metavar)
    command(group, lambda args: no_action(group))
    return actions


def no_action(parser: argparse.ArgumentParser) -> int:
    """A command group run without its action (``copybot topics``): its help on stderr, exit code 2."""
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
