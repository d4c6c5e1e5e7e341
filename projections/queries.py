"""Every SQL read of the API and the dashboard, over the projection tables (:mod:`projections.rows`).

Each function takes an open connection and returns plain JSON-ready values in the API's shape (money in
USDC, rates in %); the API (:mod:`projections.api`) runs them and the pages (:mod:`projections.web`)
render the same values. Nothing here writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, create_engine, event, func, or_, select, text
from sqlalchemy.engine import make_url

from models import summary
from models.config import ConfigStore
from models.units import MICROS
from projections.store import (
    copy_attempts,
    database_url,
    leader_budget,
    leader_clamp_counts,
    leader_reason_counts,
    projection_offsets,
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


def summary_item(r: Any) -> dict[str, Any]:
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
    }


def budget_summary(conn: Connection) -> list[dict[str, Any]]:
    """Every projected leader's summary item, by leader id."""
    rows = conn.execute(select(leader_budget).order_by(leader_budget.c.leader_id)).all()
    return [summary_item(r) for r in rows]


def _counts(conn: Connection, table: Table, column: str, leader: str) -> dict[str, int]:
    rows = conn.execute(
        select(table.c[column], table.c["count"])
        .where(table.c.leader_id == leader, table.c["count"] > 0)
        .order_by(table.c["count"].desc(), table.c[column])
    ).all()
    return {r[0]: int(r[1]) for r in rows}


def exposure_history(conn: Connection, leader: str, points: int = HISTORY_POINTS) -> list[dict[str, Any]]:
    """Our exposure to `leader` just after each decision, with the budget then in force (oldest first)."""
    c = copy_attempts.c
    rows = conn.execute(
        select(
            c.decided_at_ms,
            c.decision,
            c.reducing,
            c.current_exposure_micros,
            c.target_notional_micros,
            c.budget_usdc_micros,
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
    if len(history) > points:
        step = len(history) / points
        history = [history[int(i * step)] for i in range(points - 1)] + [history[-1]]
    return history


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
    return {
        "summary": summary_item(row),
        "recentAttempts": [json.loads(a) for a in recent],
        "skipReasons": _counts(conn, leader_reason_counts, "reason", leader),
        "clamps": _counts(conn, leader_clamp_counts, "clamp", leader),
        "exposureHistory": exposure_history(conn, leader),
    }


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
