"""The ``copybot`` console script: one entry point with a subcommand per job."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

DESCRIPTION = """\
copybot decides, for every trade a followed trader ("leader") makes on a prediction market,
whether and how much to copy -- with Budgeted Dynamic sizing, r_u = clamp(B_u / E_u, r_min, r_max).

Offline: `copybot replay TAPE.jsonl` runs the decision core over a tape (a backtest).
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    code: int = args.func(args)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="copybot", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    replay = sub.add_parser(
        "replay",
        help="run the decision core offline over a tape of events (backtest)",
        description=(
            "Replay a tape (one JSON event per line: leaderTrade, portfolioSnapshot, configChange, tick) "
            "through the decision core as one partition. Copy attempts are written as JSON lines in "
            "decision order; dead letters, rejected config changes and config warnings as JSON lines to "
            "stderr (or --diagnostics). At the end of the input the clock moves past every open window "
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
    replay.set_defaults(func=_cmd_replay)

    tape = sub.add_parser(
        "sample-tape",
        help="write a deterministic sample tape (the seed's $200 bankroll / whale example)",
        description=(
            "Write a realistic, deterministic tape: a $200 bankroll following three small leaders "
            "(budgets $60/$60/$50) and a whale ($30 budget, $100k-$300k exposure) who sprays tiny "
            "trades, with snapshots, config changes, bursts, sells and duplicates."
        ),
    )
    tape.add_argument(
        "-n", "--trades", type=int, default=3_000, help="about how many leader trades (default 3000)"
    )
    tape.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    tape.add_argument("-o", "--output", help="file to write (default stdout)")
    tape.set_defaults(func=_cmd_sample_tape)

    worker = sub.add_parser(
        "worker",
        help="run the live decision worker (a Faust worker) against the Kafka broker",
        description=(
            "Run a Faust worker: it consumes leader trades, snapshots and config changes, keeps "
            "per-leader state in changelog-backed tables, and emits copy attempts. Start more workers "
            "with the same COPYBOT_APP_ID to share the partitions. Settings come from COPYBOT_* "
            "environment variables (streams/settings.py): COPYBOT_BOOTSTRAP, COPYBOT_TOPIC_PREFIX, "
            "COPYBOT_PARTITIONS, COPYBOT_APP_ID, COPYBOT_TICKS (0: no wall-clock ticks, time moves only "
            "with the ticks in the log), COPYBOT_WORKER_DIR, COPYBOT_GUARANTEE."
        ),
    )
    worker.add_argument("--loglevel", default="info", help="log level (default info)")
    worker.set_defaults(func=_cmd_worker)

    for module in (
        "streams.devbroker.broker",
        "streams.kafka.admin",
        "streams.publish",
        "streams.tail",
        "streams.configedit",
        "streams.demo",
        "streams.cli.ingest",
        "projections.consumer",
        "projections.api",
    ):
        _add_optional(sub, module)
    return parser


def _cmd_worker(args: argparse.Namespace) -> int:
    from streams.worker.app import run_worker

    return run_worker(args.loglevel)


def _add_optional(sub: argparse._SubParsersAction[argparse.ArgumentParser], module: str) -> None:
    """Add the subcommands of `module` (kept out of this module so replay never imports Kafka code)."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return
    mod.add_parser(sub)


def _read_lines(path: str) -> tuple[Iterator[bytes], int, BinaryIO]:
    if path == "-":
        return iter(sys.stdin.buffer), 0, sys.stdin.buffer
    handle = open(path, "rb")  # noqa: SIM115 - closed by the caller
    return iter(handle), os.fstat(handle.fileno()).st_size, handle


def _cmd_replay(args: argparse.Namespace) -> int:
    from models.summary import summarize
    from streams.cli.progress import ProgressBar
    from streams.cli.terminal import leader_summary_table
    from streams.replay import replay

    try:
        lines, size, handle = _read_lines(args.tape)
    except OSError as exc:
        print(f"copybot replay: cannot read {args.tape}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    diag = open(args.diagnostics, "wb") if args.diagnostics else sys.stderr.buffer  # noqa: SIM115
    try:
        with ProgressBar(size, sys.stderr, label="replay") as bar:
            big = size > 5_000_000

            def tracked() -> Iterator[bytes]:
                for n, line in enumerate(lines):
                    if big and n % 4096 == 0:
                        bar.update(handle.tell())
                    yield line

            try:
                result = replay(tracked() if big else lines, out, diag, tally=args.summary)
            except OSError as exc:
                print(f"copybot replay: cannot read {args.tape}: {exc.strerror or exc}", file=sys.stderr)
                return 1
    finally:
        for stream in (out, diag, handle):
            if stream not in (sys.stdout.buffer, sys.stderr.buffer, sys.stdin.buffer):
                stream.close()
            else:
                stream.flush()
    if args.summary:
        print(file=sys.stderr)
        print(leader_summary_table(summarize(result.state, result.tallies)), file=sys.stderr)
        print(
            f"\n{result.events:,} events ({result.trades:,} leader trades) -> "
            f"{result.attempts:,} copy attempts "
            f"({result.executed:,} EXECUTE, {result.attempts - result.executed:,} SKIP); "
            f"{result.dead_letters:,} dead letters, {result.config_rejected:,} config changes rejected, "
            f"{result.config_warnings:,} config warnings",
            file=sys.stderr,
        )
    return 0


def _cmd_sample_tape(args: argparse.Namespace) -> int:
    from streams.sample_tape import generate

    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    try:
        batch: list[bytes] = []
        for line in generate(trades=args.trades, seed=args.seed):
            batch.append(line)
            if len(batch) >= 4096:
                out.write(b"\n".join(batch) + b"\n")
                batch.clear()
        if batch:
            out.write(b"\n".join(batch) + b"\n")
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    if args.output:
        print(f"wrote {Path(args.output)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
