"""Every SQL read of the API and the dashboard, over the projection tables (:mod:`projections.rows`).

Each function takes an open connection and returns plain JSON-ready values in the API's shape (money in
USDC, rates in %); the API (:mod:`projections.api`) runs them and the pages (:mod:`projections.web`)
render the same values. Nothing here writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from pydantic.alias_generators import to_camel
from sqlalchemy import Connection, Engine, Table, and_, create_engine, event, func, or_, select, text
from sqlalchemy.engine import make_url

from models import summary
from models.config import ConfigStore
from models.units import BPS, MICROS
from projections.store import (
    config_history,
    copy_attempts,
    database_url,
    leader_books,
    leader_budget,
    leader_clamp_counts,
    leader_reason_counts,
    orders,
    positions,
    projection_offsets,
    settlements,
    stored_config,
)

RECENT_ATTEMPTS = 25
HISTORY_POINTS = 400
"""Exposure-history points at most (evenly thinned, the newest always kept)."""


def read_engine(db: str) -> Engine:
    """An engine for reads: no write lock is ever taken (unlike the projector's store)."""
    url = database_url(db)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url)

        def pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        event.listen(engine, "connect", pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def ping(conn: Connection) -> None:
    """Raises when the database cannot answer."""
    conn.execute(text("SELECT 1")).scalar_one()


# --- config -------------------------------------------------------------------------------------------


def config_store(conn: Connection) -> ConfigStore:
    """The config as the projector last folded it from config-changes (every stored document)."""
    return stored_config(conn)


# --- the budget summary and one leader --------------------------------------------------------------


def _usdc(micros: int | None) -> float | None:
    return None if micros is None else micros / MICROS


def summary_item(r: Any, open_orders: int = 0) -> dict[str, Any]:
    """One leader of ``/api/budgeted-dynamic/summary`` from its ``leader_budget`` row (USD; rates in %)."""
    return {
        "id": r.leader_id,
        "label": r.label,
        "sizingMode": r.sizing_mode,
        "budgetedDynamicActive": bool(r.budgeted_dynamic_active),
        "budgetUsdc": _usdc(r.budget_usdc_micros),
        "budgetEnforcement": r.budget_enforcement,
        "rMin": r.r_min_bps / 100,
        "rMax": r.r_max_bps / 100,
        "leaderExposureUsdc": _usdc(r.leader_exposure_micros),
        "leaderExposureStatus": r.leader_exposure_status,
        "execExposureUsdc": _usdc(r.exec_exposure_micros),
        "execSliceExposureUsdc": _usdc(r.exec_slice_exposure_micros),
        "rU": None if r.r_u is None else r.r_u * 100,
        "budgetHeadroomUsdc": _usdc(r.headroom_micros),
        "utilizationPct": None if r.utilization is None else r.utilization * 100,
        "attempts": r.attempts,
        "executed": r.executed,
        "skipped": r.skipped,
        "trades": r.trades,
        "lastDecidedAtMs": r.last_decided_at_ms,
        "realizedPnlUsdc": _usdc(r.realized_pnl_micros),
        "unrealizedPnlUsdc": _usdc(r.unrealized_pnl_micros),
        "costBasisUsdc": _usdc(r.cost_basis_micros),
        "reservedUsdc": _usdc(r.reserved_micros),
        "openOrders": open_orders,
        "bookAsOfMs": r.book_as_of_ms,
    }


def budget_summary(conn: Connection) -> list[dict[str, Any]]:
    """Every projected leader's summary item, by leader id."""
    rows = conn.execute(select(leader_budget).order_by(leader_budget.c.leader_id)).all()
    counts = open_order_counts(conn)
    return [summary_item(r, counts.get(r.leader_id, 0)) for r in rows]


def _counts(conn: Connection, table: Table, column: str, leader: str) -> dict[str, int]:
    rows = conn.execute(
        select(table.c[column], table.c["count"])
        .where(table.c.leader_id == leader, table.c["count"] > 0)
        .order_by(table.c["count"].desc(), table.c[column])
    ).all()
    return {r[0]: int(r[1]) for r in rows}


def exposure_history(
    conn: Connection, leader: str, points: int = HISTORY_POINTS
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Our exposure to `leader` just after each decision, with the budget then in force (oldest first),
    and the mode changes: each decision whose kill switch, sizing mode, Budgeted Dynamic state or
    enforcement differs from the leader's previous decision, with the config change that brought it."""
    c = copy_attempts.c
    rows = conn.execute(
        select(
            c.decided_at_ms,
            c.decision,
            c.reducing,
            c.current_exposure_micros,
            c.target_notional_micros,
            c.budget_usdc_micros,
            c.budgeted_dynamic_enabled,
            c.sizing_mode,
            c.budgeted_dynamic_active,
            c.budget_enforcement,
            c.config_version,
        )
        .where(c.leader_id == leader)
        .order_by(c.decided_at_ms, c.attempt_id)
    ).all()
    history = [
        {
            "t": r.decided_at_ms,
            "execExposureUsdc": summary.exposure_after(
                r.current_exposure_micros, r.target_notional_micros, r.decision == "EXECUTE", r.reducing
            )
            / MICROS,
            "budgetUsdc": _usdc(r.budget_usdc_micros),
        }
        for r in rows
    ]
    return _thinned(history, points), _mode_changes(conn, rows)


def _mode(r: Any) -> tuple[bool, str, bool, str]:
    return (
        bool(r.budgeted_dynamic_enabled),
        r.sizing_mode,
        bool(r.budgeted_dynamic_active),
        r.budget_enforcement,
    )


def _mode_changes(conn: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    changes = []
    for before, r in pairwise(rows):
        if _mode(before) == _mode(r):
            continue
        kill = bool(r.budgeted_dynamic_enabled) != bool(before.budgeted_dynamic_enabled)
        changes.append(
            {
                "t": r.decided_at_ms,
                "killSwitch": kill,
                "budgetedDynamicEnabled": bool(r.budgeted_dynamic_enabled),
                "sizingMode": r.sizing_mode,
                "budgetedDynamicActive": bool(r.budgeted_dynamic_active),
                "budgetEnforcement": r.budget_enforcement,
                "configVersion": r.config_version,
            }
        )
    h = config_history.c
    ids = sorted({m["configVersion"] for m in changes if m["configVersion"] is not None})
    found = (
        {
            row.change_id: row
            for row in conn.execute(
                select(h.change_id, h.scope, h.leader_id, h.changed_at_ms).where(
                    h.change_id.in_(ids), h.status == "accepted"
                )
            ).all()
        }
        if ids
        else {}
    )
    for m in changes:
        row = found.get(m["configVersion"])
        m["changeScope"] = None if row is None else row.scope
        m["changedAtMs"] = None if row is None else row.changed_at_ms
    return changes


def _thinned(history: list[dict[str, Any]], points: int) -> list[dict[str, Any]]:
    """At most `points` of `history`, evenly spaced, the newest always kept."""
    if len(history) <= points:
        return history
    step = len(history) / points
    return [history[int(i * step)] for i in range(points - 1)] + [history[-1]]


def user_detail(conn: Connection, leader: str) -> dict[str, Any] | None:
    """``/api/users/{id}``: summary item, recent attempts, skip reasons, clamps, history; None if unseen."""
    row = conn.execute(select(leader_budget).where(leader_budget.c.leader_id == leader)).first()
    if row is None:
        return None
    c = copy_attempts.c
    recent = conn.execute(
        select(c.attempt_json)
        .where(c.leader_id == leader)
        .order_by(c.decided_at_ms.desc(), c.attempt_id.desc())
        .limit(RECENT_ATTEMPTS)
    ).scalars()
    history, mode_changes = exposure_history(conn, leader)
    return {
        "summary": summary_item(row, open_order_counts(conn, leader).get(leader, 0)),
        "recentAttempts": [json.loads(a) for a in recent],
        "skipReasons": _counts(conn, leader_reason_counts, "reason", leader),
        "clamps": _counts(conn, leader_clamp_counts, "clamp", leader),
        "exposureHistory": history,
        "modeChanges": mode_changes,
        "pnlHistory": pnl_history(conn, leader),
        "positions": list_positions(conn, leader),
        "orders": list_orders(conn, leader, limit=RECENT_ORDERS),
        "settlements": list_settlements(conn, leader),
    }


# --- the venue loop: orders, positions, settlements, books (SPEC 13) ---------------------------------

ORDER_STATUSES = ("OPEN", "FILLED", "REJECTED", "CANCELLED", "EXPIRED")
RECENT_ORDERS = 25


def _orders_query(leader: str | None, status: str | None) -> Any:
    """The core's orders (the newest orderUpdated of each), with their attempt's market."""
    o, a = orders.c, copy_attempts.c
    market = select(a.market_id).where(a.attempt_id == o.attempt_id).scalar_subquery()
    query = select(orders, market.label("market_id"))
    if leader is not None:
        query = query.where(o.leader_id == leader)
    if status is not None:
        query = query.where(o.status == status)
    return query


def order_item(r: Any) -> dict[str, Any]:
    """An order in the API's shape: as the core output it, with its fill ratio and price."""
    shares, paid = r.filled_share_micros, r.filled_notional_micros
    price = paid * MICROS // shares if shares > 0 else None  # the fill price rule of SPEC 13.3.3
    reference = r.reference_price_micros
    return {
        "attemptId": r.attempt_id,
        "followedUserId": r.leader_id,
        "assetId": r.asset_id,
        "marketId": r.market_id,
        "side": r.side,
        "status": r.status,
        "closeReason": r.close_reason,
        "openedAtMs": r.opened_at_ms,
        "updatedAtMs": r.updated_at_ms,
        "closedAtMs": r.closed_at_ms,
        "expiredAtMs": r.closed_at_ms if r.status == "EXPIRED" else None,
        "targetShareMicros": r.target_share_micros,
        "targetNotionalMicros": r.target_notional_micros,
        "filledShareMicros": shares,
        "filledNotionalMicros": paid,
        "reservedMicros": r.reserved_micros,
        "fillRatio": shares / r.target_share_micros if r.target_share_micros > 0 else None,
        "averageFillPriceMicros": price,
        "referencePriceMicros": reference,
        "priceVsReferenceBps": (
            None if price is None or reference <= 0 else (price - reference) * BPS / reference
        ),
        "lastReportId": r.last_report_id,
        "revision": r.revision,
    }


def list_orders(
    conn: Connection, leader: str | None = None, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Orders, newest first (openedAtMs, then attemptId, descending)."""
    o = orders.c
    query = _orders_query(leader, status).order_by(o.opened_at_ms.desc(), o.attempt_id.desc())
    return [order_item(r) for r in conn.execute(query.limit(limit)).all()]


def open_order_counts(conn: Connection, leader: str | None = None) -> dict[str, int]:
    """leader id -> its open orders (every leader's, or `leader`'s)."""
    o = orders.c
    query = select(o.leader_id, func.count()).where(o.status == "OPEN").group_by(o.leader_id)
    if leader is not None:
        query = query.where(o.leader_id == leader)
    rows = conn.execute(query).all()
    return {r[0]: int(r[1]) for r in rows}


def list_positions(conn: Connection, leader: str | None = None) -> list[dict[str, Any]]:
    """Held assets of each leader's latest leaderBook, by leader and asset (market from the attempts)."""
    p, a = positions.c, copy_attempts.c
    market = (
        select(a.market_id)
        .where(a.leader_id == p.leader_id, a.asset_id == p.asset_id)
        .limit(1)
        .scalar_subquery()
    )
    query = select(positions, market.label("market_id")).order_by(p.leader_id, p.asset_id)
    if leader is not None:
        query = query.where(p.leader_id == leader)
    return [
        {
            "followedUserId": r.leader_id,
            "assetId": r.asset_id,
            "marketId": r.market_id,
            "shareMicros": r.share_micros,
            "markPriceMicros": r.mark_price_micros,
            "costBasisMicros": r.cost_basis_micros,
            "valueMicros": r.value_micros,
            "unrealizedPnlMicros": r.unrealized_pnl_micros,
            "asOfMs": r.as_of_ms,
        }
        for r in conn.execute(query).all()
    ]


def _wire(r: Any, names: Sequence[str]) -> dict[str, Any]:
    """Columns of an event row under their wire names (leader_id as followedUserId)."""
    return {("followedUserId" if n == "leader_id" else to_camel(n)): r._mapping[n] for n in names}


SETTLEMENT_FIELDS = tuple(c.name for c in settlements.c if not c.name.startswith("source_"))
BOOK_FIELDS = tuple(c.name for c in leader_books.c if not c.name.startswith("source_"))


def list_settlements(conn: Connection, leader: str | None = None) -> list[dict[str, Any]]:
    """positionSettled events as received, newest first."""
    s = settlements.c
    query = select(settlements).order_by(s.settled_at_ms.desc(), s.settlement_id)
    if leader is not None:
        query = query.where(s.leader_id == leader)
    return [{"kind": "positionSettled", **_wire(r, SETTLEMENT_FIELDS)} for r in conn.execute(query).all()]


def book_history(conn: Connection, leader: str, limit: int = HISTORY_POINTS) -> list[dict[str, Any]] | None:
    """The leader's leaderBook events, newest first (positions as on the wire); None if never projected."""
    if (
        conn.execute(select(leader_budget.c.leader_id).where(leader_budget.c.leader_id == leader)).first()
        is None
    ):
        return None
    b = leader_books.c
    rows = conn.execute(
        select(leader_books)
        .where(b.leader_id == leader)
        .order_by(b.as_of_ms.desc(), b.source_partition.desc(), b.source_offset.desc())
        .limit(limit)
    ).all()
    return [
        {"kind": "leaderBook", **_wire(r, BOOK_FIELDS), "positions": json.loads(r.positions)} for r in rows
    ]


def pnl_history(conn: Connection, leader: str, points: int = HISTORY_POINTS) -> list[dict[str, Any]]:
    """Realized and unrealized PnL of the leader's leaderBooks (oldest first), thinned in SQL to about
    `points` evenly spaced books and the newest: a book is output every bookIntervalMs while the book
    changes, so a long run has many."""
    b = leader_books.c
    total = conn.execute(select(func.count()).where(b.leader_id == leader)).scalar_one()
    step = max(1, -(-total // points))
    n = func.row_number().over(order_by=(b.as_of_ms, b.source_partition, b.source_offset)).label("n")
    numbered = (
        select(b.as_of_ms, b.realized_pnl_micros, b.unrealized_pnl_micros, n)
        .where(b.leader_id == leader)
        .subquery()
    )
    k = numbered.c
    rows = conn.execute(select(numbered).where(or_((k.n - 1) % step == 0, k.n == total)).order_by(k.n)).all()
    return [
        {
            "t": r.as_of_ms,
            "realizedPnlUsdc": r.realized_pnl_micros / MICROS,
            "unrealizedPnlUsdc": r.unrealized_pnl_micros / MICROS,
            "pnlUsdc": (r.realized_pnl_micros + r.unrealized_pnl_micros) / MICROS,
        }
        for r in rows
    ]


# --- copy attempts ------------------------------------------------------------------------------------

CURSOR_PATTERN = r"^(0|[1-9][0-9]{0,15}):[\s\S]*$"
"""A page cursor: ``{decidedAtMs}:{attemptId}`` of the last item of the previous page."""


@dataclass(frozen=True, slots=True)
class AttemptQuery:
    """Filters and the page of ``/api/copy-attempts``; `from_ms` ≤ decidedAtMs < `to_ms`."""

    leader: str | None = None
    decision: str | None = None
    reason: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    limit: int = 50
    offset: int = 0
    cursor: str | None = None


def encode_cursor(decided_at_ms: int, attempt_id: str) -> str:
    return f"{decided_at_ms}:{attempt_id}"


def decode_cursor(cursor: str) -> tuple[int, str]:
    """(decidedAtMs, attemptId) of a cursor; ValueError when it is not one :func:`encode_cursor` makes."""
    decided, colon, attempt_id = cursor.partition(":")
    if not colon or not decided.isascii() or not decided.isdigit():
        raise ValueError(f"cursor {cursor!r} is not one returned as nextCursor")
    return int(decided), attempt_id


def _filters(q: AttemptQuery) -> list[Any]:
    c = copy_attempts.c
    where = []
    if q.leader is not None:
        where.append(c.leader_id == q.leader)
    if q.decision is not None:
        where.append(c.decision == q.decision)
    if q.reason is not None:
        where.append(c.reason == q.reason)
    if q.from_ms is not None:
        where.append(c.decided_at_ms >= q.from_ms)
    if q.to_ms is not None:
        where.append(c.decided_at_ms < q.to_ms)
    return where


def list_attempts(conn: Connection, q: AttemptQuery) -> dict[str, Any]:
    """A page of attempts, newest first (decidedAtMs, then attemptId, descending), and the filtered total.

    A cursor page starts strictly after the cursor's (decidedAtMs, attemptId), so attempts inserted
    while a client pages never make it see an attempt twice or skip one that was there when it started.
    """
    c = copy_attempts.c
    where = _filters(q)
    total = conn.execute(
        select(func.count()).select_from(copy_attempts).where(and_(True, *where))
    ).scalar_one()
    page = list(where)
    if q.cursor is not None:
        decided, attempt_id = decode_cursor(q.cursor)
        page.append(
            or_(c.decided_at_ms < decided, and_(c.decided_at_ms == decided, c.attempt_id < attempt_id))
        )
    query = (
        select(c.attempt_json, c.decided_at_ms, c.attempt_id)
        .where(and_(True, *page))
        .order_by(c.decided_at_ms.desc(), c.attempt_id.desc())
        .limit(q.limit)
    )
    if q.cursor is None and q.offset:
        query = query.offset(q.offset)
    rows = conn.execute(query).all()
    last = rows[-1] if len(rows) == q.limit else None
    return {
        "total": int(total),
        "limit": q.limit,
        "offset": q.offset if q.cursor is None else None,
        "nextCursor": None if last is None else encode_cursor(last.decided_at_ms, last.attempt_id),
        "items": [json.loads(r.attempt_json) for r in rows],
    }


# --- metrics ------------------------------------------------------------------------------------------

_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("copybot_leader_utilization_ratio", "Our exposure / B_u (absent when B_u = 0).", "utilization"),
    ("copybot_leader_budget_usdc", "B_u in USDC.", "budget_usdc_micros"),
    (
        "copybot_leader_exec_exposure_usdc",
        "Our exposure attributed to the leader, USDC.",
        "exec_exposure_micros",
    ),
    ("copybot_leader_exposure_usdc", "E_u, the leader's own exposure, USDC.", "leader_exposure_micros"),
    ("copybot_leader_copy_rate", "r_u of the leader's last attempt (fraction).", "r_u"),
    (
        "copybot_leader_realized_pnl_usdc",
        "Realized PnL of what we copied (latest leaderBook), USDC.",
        "realized_pnl_micros",
    ),
    (
        "copybot_leader_unrealized_pnl_usdc",
        "Our exposure − cost basis (latest leaderBook), USDC.",
        "unrealized_pnl_micros",
    ),
    (
        "copybot_leader_reserved_usdc",
        "Σ BUY reservations of open orders (latest leaderBook), USDC.",
        "reserved_micros",
    ),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _leader_gauges(conn: Connection) -> list[str]:
    leaders = conn.execute(select(leader_budget).order_by(leader_budget.c.leader_id)).all()
    lines = []
    for name, help_text, column in _GAUGES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for r in leaders:
            value = getattr(r, column)
            if value is None:
                continue
            if column.endswith("_micros"):
                value = value / MICROS
            lines.append(f'{name}{{leader="{_label(r.leader_id)}"}} {value}')
    return lines


def metrics_text(conn: Connection) -> str:
    """Prometheus text exposition: attempts by decision, per-leader budget figures, projection offsets."""
    lines = [
        "# HELP copybot_copy_attempts_total Copy attempts projected, by decision.",
        "# TYPE copybot_copy_attempts_total counter",
    ]
    by_decision: dict[str, int] = dict(
        conn.execute(select(copy_attempts.c.decision, func.count()).group_by(copy_attempts.c.decision)).all()
    )
    for decision in sorted({"EXECUTE", "SKIP", *by_decision}):
        lines.append(
            f'copybot_copy_attempts_total{{decision="{_label(decision)}"}} {by_decision.get(decision, 0)}'
        )
    lines += _leader_gauges(conn)
    last_decided = conn.execute(select(func.max(copy_attempts.c.decided_at_ms))).scalar()
    lines += [
        "# HELP copybot_projection_last_decided_at_ms decidedAtMs of the newest projected attempt.",
        "# TYPE copybot_projection_last_decided_at_ms gauge",
        f"copybot_projection_last_decided_at_ms {last_decided or 0}",
        "# HELP copybot_projection_next_offset The next offset the projector consumes, per partition.",
        "# TYPE copybot_projection_next_offset gauge",
    ]
    for r in conn.execute(
        select(projection_offsets).order_by(projection_offsets.c.topic, projection_offsets.c.partition)
    ):
        lines.append(
            f'copybot_projection_next_offset{{topic="{_label(r.topic)}",partition="{r.partition}"}} '
            f"{r.next_offset}"
        )
    return "\n".join(lines) + "\n"
