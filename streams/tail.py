"""``copybot tail``: follow the copy attempts the worker decides, one readable line each (or raw JSON)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from streams.cli.terminal import pct, usd
from streams.kafka.client import CopybotClient, KafkaUnavailable, quiet_kafka_logs
from streams.settings import Settings, SettingsError

COLUMNS: tuple[tuple[str, int, bool], ...] = (
    ("decided at (UTC)", 24, False),
    ("leader", 14, False),
    ("asset", 16, False),
    ("side", 4, False),
    ("decision", 8, False),
    ("reason", 30, False),
    ("target", 12, True),
    ("r_u", 8, True),
    ("headroom", 12, True),
)
"""Header, width and right-alignment of each column (widths are fixed: lines are printed as they come)."""


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds, e.g. ``1970-01-01T00:16:40.000Z``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _line(cells: list[str]) -> str:
    out = []
    for cell, (_, width, right) in zip(cells, COLUMNS, strict=True):
        cell = _fit(cell, width)
        out.append(cell.rjust(width) if right else cell.ljust(width))
    return "  ".join(out).rstrip()


def header() -> str:
    """The table header and its rule."""
    return _line([name for name, _, _ in COLUMNS]) + "\n" + "  ".join("─" * w for _, w, _ in COLUMNS)


def format_attempt(attempt: Mapping[str, Any]) -> str:
    """One attempt as a table line: time, leader, asset, side, decision, reason, target, r_u, headroom."""
    sizing = attempt.get("sizing") or {}
    budget = attempt.get("budget") or {}
    decided = attempt.get("decidedAtMs")
    r_u = sizing.get("rU")
    return _line(
        [
            iso_ms(decided) if isinstance(decided, int) else "?",
            str(attempt.get("followedUserId", "?")),
            str(attempt.get("assetId", "?")),
            str(attempt.get("side", "?")),
            str(attempt.get("decision", "?")),
            ", ".join(attempt.get("reasonCodes") or []) or "—",
            usd(attempt.get("targetNotionalMicros")),
            pct(r_u, 2) if isinstance(r_u, int | float) else "—",
            usd(budget.get("headroomMicros")),
        ]
    )


async def tail(
    client: CopybotClient,
    out: TextIO,
    *,
    leader: str | None = None,
    decision: str | None = None,
    from_beginning: bool = False,
    limit: int | None = None,
    as_json: bool = False,
    follow: bool = True,
) -> int:
    """Print copy attempts to `out` until `limit` (or forever when following); returns how many."""
    count = 0
    if limit is not None and limit <= 0:
        return 0
    if not as_json:
        print(header(), file=out, flush=True)
    attempts = client.attempts(from_beginning=from_beginning, leader=leader, decision=decision, follow=follow)
    async with contextlib.aclosing(attempts):
        async for attempt in attempts:
            line = orjson.dumps(attempt).decode() if as_json else format_attempt(attempt)
            print(line, file=out, flush=True)
            count += 1
            if limit is not None and count >= limit:
                break
    return count


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``copybot tail``."""
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
        "--no-follow", action="store_true", help="stop at the end of the topic instead of waiting for more"
    )
    cmd.set_defaults(func=_cmd_tail)


def _cmd_tail(args: argparse.Namespace) -> int:
    name = "copybot tail"
    quiet_kafka_logs()
    if args.limit is not None and args.limit < 1:
        print(f"{name}: --limit must be ≥ 1", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        async with CopybotClient(settings, client_id="copybot-tail") as client:
            return await tail(
                client,
                sys.stdout,
                leader=args.leader,
                decision=args.decision,
                from_beginning=args.from_beginning,
                limit=args.limit,
                as_json=args.json,
                follow=not args.no_follow,
            )

    try:
        asyncio.run(run())
    except KafkaUnavailable as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a follow ends
    except BrokenPipeError:  # e.g. `copybot tail | head`
        with contextlib.suppress(OSError):  # silence the interpreter's flush of stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0
