"""``copybot tail``: print copy attempts as they are decided (see :mod:`streams.tail`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from streams.cli.main import command
from streams.errors import UsageError
from streams.kafka import CopybotClient, quiet_kafka_logs
from streams.settings import Settings
from streams.tail import attempt_lines, book_lines


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "tail",
        help="print copy attempts as they are decided",
        description=(
            "Print the copy attempts the worker writes to copy-attempts, one line each: decision time (UTC), "
            "leader, asset, side, decision, reason codes, target notional (USD), the copy rate r_u and the "
            "HARD budget headroom (— when not enforced). Starts at the end of the topic (new attempts only) "
            "unless --from-beginning; stops after --limit attempts, at the current end with --no-follow, "
            "or on Ctrl-C."
        ),
    )
    cmd.add_argument("--leader", metavar="U", help="only attempts of this leader (followedUserId)")
    cmd.add_argument("--decision", choices=("EXECUTE", "SKIP"), help="only this decision")
    cmd.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest attempt instead of new ones only"
    )
    cmd.add_argument("--limit", type=int, metavar="N", help="stop after N attempts")
    cmd.add_argument("--json", action="store_true", help="print each attempt as its raw JSON line instead")
    cmd.add_argument(
        "--books",
        action="store_true",
        help="print the book events instead (book-events: settlements, expired orders, leader books "
        "with exposure, reserved budget and PnL); --decision does not apply",
    )
    cmd.add_argument(
        "--no-follow", action="store_true", help="stop at the end of the topic instead of waiting for more"
    )
    command(cmd, run)


def run(args: argparse.Namespace) -> int:
    quiet_kafka_logs()
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be ≥ 1")
    settings = Settings.from_env()

    async def tail() -> None:
        async with CopybotClient(settings, client_id="copybot-tail") as client:
            common = {
                "leader": args.leader,
                "from_beginning": args.from_beginning,
                "limit": args.limit,
                "as_json": args.json,
                "follow": not args.no_follow,
            }
            if args.books:
                lines = book_lines(client, **common)
            else:
                lines = attempt_lines(client, decision=args.decision, **common)
            async for line in lines:
                print(line, flush=True)

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a follow ends
    except BrokenPipeError:  # e.g. `copybot tail | head`
        with contextlib.suppress(OSError):  # silence the interpreter's flush of stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0
