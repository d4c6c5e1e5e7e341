"""Follow the copy attempts the worker decides, or its book events (``--books``), one readable line each
(or raw JSON): ``copybot tail``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

import orjson

from models.units import iso_ms, pct, usd
from streams.kafka import CopybotClient

Columns = tuple[tuple[str, int, bool], ...]
"""Header, width and right-alignment of each column of a table."""

COLUMNS: Columns = (
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


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _line(cells: list[str], columns: Columns = COLUMNS) -> str:
    out = []
    for cell, (_, width, right) in zip(cells, columns, strict=True):
        cell = _fit(cell, width)
        out.append(cell.rjust(width) if right else cell.ljust(width))
    return "  ".join(out).rstrip()


def _header(columns: Columns) -> str:
    return _line([name for name, _, _ in columns], columns) + "\n" + "  ".join("─" * w for _, w, _ in columns)


def header() -> str:
    """The table header and its rule."""
    return _header(COLUMNS)


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


async def attempt_lines(
    client: CopybotClient,
    *,
    leader: str | None = None,
    decision: str | None = None,
    from_beginning: bool = False,
    limit: int | None = None,
    as_json: bool = False,
    follow: bool = True,
) -> AsyncIterator[str]:
    """The lines to show: the header (unless `as_json`), then one per attempt until `limit` (or forever
    when following)."""
    attempts = client.attempts(from_beginning=from_beginning, leader=leader, decision=decision, follow=follow)
    async for line in _lines(header(), attempts, format_attempt, limit=limit, as_json=as_json):
        yield line


async def _lines(
    head: str,
    items: AsyncGenerator[dict[str, Any], None],
    fmt: Callable[[Mapping[str, Any]], str],
    *,
    limit: int | None,
    as_json: bool,
) -> AsyncIterator[str]:
    """`head` (unless `as_json`), then each of `items` as a line (`fmt`, or its JSON) until `limit`."""
    async with contextlib.aclosing(items):
        if limit is not None and limit <= 0:
            return
        if not as_json:
            yield head
        count = 0
        async for item in items:
            yield orjson.dumps(item).decode() if as_json else fmt(item)
            count += 1
            if limit is not None and count >= limit:
                break


BOOK_COLUMNS: Columns = (
    ("at (UTC)", 24, False),
    ("leader", 14, False),
    ("event", 14, False),
    ("asset / order", 22, False),
    ("shares", 12, True),
    ("exposure", 12, True),
    ("reserved", 12, True),
    ("realized PnL", 13, True),
    ("unrealized", 12, True),
)


def book_header() -> str:
    """The header of ``copybot tail --books``."""
    return _header(BOOK_COLUMNS)


def format_book_event(event: Mapping[str, Any]) -> str:
    """One book event as a line: a settlement (shares, proceeds as exposure, realized PnL), an expired
    order (filled of target shares), an order's new state (status, filled of target shares, what it still
    reserves), or a leader's book (exposure, reserved, PnL)."""
    kind = event.get("kind")
    at = (
        event.get("settledAtMs")
        or event.get("expiredAtMs")
        or event.get("asOfMs")
        or event.get("updatedAtMs")
    )
    cells = [iso_ms(at) if isinstance(at, int) else "?", str(event.get("followedUserId", "?")), str(kind)]
    if kind == "positionSettled":
        cells += [str(event.get("assetId")), _shares(event.get("shareMicros"))]
        cells += [usd(event.get("proceedsMicros"))]
        cells += ["", usd(event.get("realizedPnlMicros")), ""]
    elif kind == "orderExpired":
        filled, target = _shares(event.get("filledShareMicros")), _shares(event.get("targetShareMicros"))
        cells += [str(event.get("attemptId", "?"))[:8] + f" {event.get('side')}", f"{filled}/{target}"]
        cells += ["", "", "", ""]
    elif kind == "orderUpdated":
        filled, target = _shares(event.get("filledShareMicros")), _shares(event.get("targetShareMicros"))
        side, reserved = str(event.get("side")), event.get("reservedMicros")
        cells += [
            f"{str(event.get('attemptId', '?'))[:8]} {side[:1]} {event.get('status')}",
            f"{filled}/{target}",
        ]
        cells += ["", usd(reserved) if side == "BUY" else _shares(reserved), "", ""]
    else:
        cells += [f"{len(event.get('positions') or [])} positions", ""]
        cells += [usd(event.get(k)) for k in ("exposureMicros", "reservedMicros")]
        cells += [usd(event.get(k)) for k in ("realizedPnlMicros", "unrealizedPnlMicros")]
    return _line(cells, BOOK_COLUMNS)


def _shares(micros: Any) -> str:
    return f"{micros / 1_000_000:,.2f}" if isinstance(micros, int) else "—"


async def book_lines(
    client: CopybotClient,
    *,
    leader: str | None = None,
    from_beginning: bool = False,
    limit: int | None = None,
    as_json: bool = False,
    follow: bool = True,
) -> AsyncIterator[str]:
    """The lines of ``copybot tail --books``: the header (unless `as_json`), then one per book event."""
    events = client.book_events(from_beginning=from_beginning, leader=leader, follow=follow)
    async for line in _lines(book_header(), events, format_book_event, limit=limit, as_json=as_json):
        yield line
