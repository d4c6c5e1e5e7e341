"""``copybot replay TAPE``: the decision core offline over a tape (a backtest); see :mod:`streams.replay`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from streams.cli.main import command
from streams.errors import InputUnreadable

if TYPE_CHECKING:
    from streams.replay import ReplayResult

BIG_INPUT_BYTES = 5_000_000
"""Inputs larger than this get a progress bar (on a terminal)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay",
        help="run the decision core offline over a tape of events (backtest)",
        description=(
            "Replay a tape (one JSON event per line: leaderTrade, portfolioSnapshot, configChange, tick, "
            "marketResolved, executionReport) through the decision core as one partition. Copy attempts "
            "and book events (positionSettled, orderExpired, leaderBook) are written as JSON lines in the "
            "order they are produced; dead letters, rejected config changes, config warnings and ignored "
            "execution reports as JSON lines to stderr (or --diagnostics). At the end of the input the "
            "clock moves past every open window "
            "and buffer, so every accepted trade is accounted for. Identical input gives identical bytes. "
            "Exit code 0 unless the input cannot be read."
        ),
    )
    replay.add_argument("tape", help="the tape file (JSON lines), or - for standard input")
    replay.add_argument("-o", "--output", help="write attempts to this file instead of stdout")
    replay.add_argument("--diagnostics", help="write dead letters and config reports here instead of stderr")
    replay.add_argument(
        "--summary",
        action="store_true",
        help="print the per-leader budget summary table (and totals) to stderr at the end",
    )
    command(replay, run)


def open_tape(path: str) -> tuple[BinaryIO, int]:
    """The tape's binary stream (``-``: standard input) and its size in bytes (0 when unknown)."""
    if path == "-":
        return sys.stdin.buffer, 0
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise InputUnreadable(f"cannot read {path}: {exc.strerror or exc}") from exc
    return handle, os.fstat(handle.fileno()).st_size


def run(args: argparse.Namespace) -> int:
    from streams.cli.terminal import ProgressBar
    from streams.replay import replay

    handle, size = open_tape(args.tape)
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    diag = open(args.diagnostics, "wb") if args.diagnostics else sys.stderr.buffer  # noqa: SIM115
    try:
        with ProgressBar(size, sys.stderr, label="replay") as bar:
            big = size > BIG_INPUT_BYTES

            def tracked() -> Iterator[bytes]:
                for n, line in enumerate(handle):
                    if big and n % 4096 == 0:
                        bar.update(handle.tell())
                    yield line

            try:
                result = replay(tracked() if big else iter(handle), out, diag, tally=args.summary)
            except OSError as exc:
                raise InputUnreadable(f"cannot read {args.tape}: {exc.strerror or exc}") from exc
    finally:
        for stream in (out, diag, handle):
            if stream not in (sys.stdout.buffer, sys.stderr.buffer, sys.stdin.buffer):
                stream.close()
            else:
                stream.flush()
    if args.summary:
        print_summary(result)
    return 0


def print_summary(result: ReplayResult) -> None:
    """The per-leader budget table and the totals line, on stderr."""
    from models.summary import summarize
    from streams.cli.terminal import leader_summary_table

    print(file=sys.stderr)
    print(leader_summary_table(summarize(result.state, result.tallies)), file=sys.stderr)
    print(
        f"\n{result.events:,} events ({result.trades:,} leader trades) -> "
        f"{result.attempts:,} copy attempts "
        f"({result.executed:,} EXECUTE, {result.attempts - result.executed:,} SKIP), "
        f"{result.book_events:,} book events; "
        f"{result.dead_letters:,} dead letters, {result.config_rejected:,} config changes rejected, "
        f"{result.config_warnings:,} config warnings, {result.reports_ignored:,} execution reports ignored",
        file=sys.stderr,
    )
