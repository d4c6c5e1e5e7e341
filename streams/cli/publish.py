"""``copybot publish TAPE``: send a tape of input events to the live system (see :mod:`streams.publish`)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from streams.cli.main import command
from streams.cli.replay import open_tape
from streams.cli.terminal import ProgressBar, table
from streams.errors import InputUnreadable, UsageError
from streams.kafka import CopybotClient, kafka_errors, quiet_kafka_logs
from streams.publish import DEFAULT_WAIT_TIMEOUT_S, PublishSummary, publish_lines
from streams.settings import Settings


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``copybot publish``."""
    cmd = subparsers.add_parser(
        "publish",
        help="publish a tape of events (JSON lines) to the live system",
        description=(
            "Publish a tape (one JSON event per line: leaderTrade, portfolioSnapshot, configChange, tick) "
            "to copybot's Kafka topics, each kind to its topic (ticks into every leader-trades partition). "
            "Lines are validated strictly first; invalid lines are skipped and reported on stderr with "
            "their line number. Prints a summary at the end. Exit code 0 on success, 1 if the file cannot "
            "be read, Kafka cannot be reached, or (--ordered) no worker copies an event in time. "
            "For a live run that decides exactly what `copybot replay` decides, use --ordered --finish "
            "with a running `copybot worker`."
        ),
    )
    cmd.add_argument("tape", help="the tape file (JSON lines), or - for standard input")
    cmd.add_argument(
        "--rate",
        type=float,
        metavar="N",
        help="publish at most N events per second (default: as fast as possible)",
    )
    cmd.add_argument(
        "--ordered",
        action="store_true",
        help=(
            "make the worker see the events in file order: after each snapshot, config change, resolution or "
            "execution report, wait until "
            "the worker has copied it into leader-trades before publishing the next event (needs a worker)"
        ),
    )
    cmd.add_argument(
        "--wait-timeout",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT_S,
        metavar="S",
        help=f"--ordered: seconds to wait for each copy (default {DEFAULT_WAIT_TIMEOUT_S:g})",
    )
    cmd.add_argument(
        "--finish",
        action="store_true",
        help=(
            "after the file, publish a tick at the end-of-input time `copybot replay` uses into every "
            "leader-trades partition, so every open window and buffer is decided"
        ),
    )
    command(cmd, run)


def run(args: argparse.Namespace) -> int:
    quiet_kafka_logs()
    if args.rate is not None and args.rate <= 0:
        raise UsageError("--rate must be > 0")
    settings = Settings.from_env()
    handle, size = open_tape(args.tape)

    def invalid(line_no: int, reason: str) -> None:
        print(f"{args.command}: line {line_no} skipped: {reason}", file=sys.stderr)

    async def publish(bar: ProgressBar) -> PublishSummary:
        async with CopybotClient(settings, client_id="copybot-publish") as client:
            return await publish_lines(
                client,
                handle,
                rate=args.rate,
                ordered=args.ordered,
                wait_timeout_s=args.wait_timeout,
                finish=args.finish,
                on_invalid=invalid,
                on_progress=bar.update if size else lambda done: None,
            )

    try:
        with (
            ProgressBar(size, sys.stderr, label="publish") as bar,
            kafka_errors(f"Kafka at {settings.bootstrap} failed", network=False),
        ):
            bar.enabled = bar.enabled and size > 0
            summary = asyncio.run(publish(bar))
    except OSError as exc:
        raise InputUnreadable(f"cannot read {args.tape}: {exc.strerror or exc}") from exc
    except KeyboardInterrupt:
        print(f"{args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    print(format_summary(summary))
    return 0


def format_summary(summary: PublishSummary) -> str:
    """The end-of-run summary: events per kind, messages per topic, skipped lines, the finish tick."""
    kinds = [[kind, f"{n:,}"] for kind, n in sorted(summary.kinds.items())]
    kinds.append(["total", f"{sum(summary.kinds.values()):,}"])
    topics = [[topic, f"{n:,}"] for topic, n in sorted(summary.messages.items())]
    parts = [
        table(["kind", "events"], kinds, [False, True]),
        "",
        table(["topic", "messages"], topics, [False, True]),
        "",
        f"{summary.invalid:,} invalid line{'s' if summary.invalid != 1 else ''} skipped",
    ]
    if summary.waited_s:
        parts.append(f"waited {summary.waited_s:.1f}s for the worker's copies (--ordered)")
    if summary.finish_tick_ms is not None:
        parts.append(
            f"finish tick nowMs={summary.finish_tick_ms} published into every leader-trades partition"
        )
    elif summary.finished:
        parts.append("--finish: nothing was open at the end of the file; no finish tick needed")
    return "\n".join(parts)
