"""Pure projection: one decoded event -> the SQL row changes it causes. No IO, no clock.

The store (:mod:`projections.store`) loads the rows a batch reads (a :class:`WorkingSet`), a
:class:`BatchProjection` folds the batch's events into them in log order, and the store writes the
resulting :class:`RowChanges` together with the consumed offsets in one transaction.

Query contract (the tables the API reads). Money is integer micros (BIGINT); r_u and utilization are the
only floats. Times are epoch milliseconds (BIGINT). A leader id of ``''`` means "the whole portfolio".

``copy_attempts`` — one row per attemptId (the idempotency key; a redelivered attempt changes nothing):
    attempt_id (PK), leader_id, group_key, asset_id, market_id, side, source_type, decision,
    reason (the first reason code; null for EXECUTE), trade_count, their_notional_micros,
    their_reference_price_micros, raw_target_micros, target_notional_micros, target_share_micros,
    decided_at_ms, sizing_mode, budgeted_dynamic_enabled (the kill switch), budgeted_dynamic_active,
    budget_enforcement, budget_usdc_micros,
    leader_exposure_micros, leader_exposure_status, r_u, effective_rate_bps, clamped_to_r_min,
    clamped_to_r_max, clamped_to_min, clamped_to_max, clamped_by_bankroll, equity_micros,
    current_exposure_micros, headroom_micros, capped, reducing, reserved_micros, config_version,
    attempt_json (the message as received), source_partition, source_offset (where it was first seen).

``leader_budget`` — one row per leader seen in an attempt, a snapshot or a USER config document:
    leader_id (PK); from the current (latest accepted) config: label (the leader id when unset),
    sizing_mode, budgeted_dynamic_active, budget_enforcement, budget_usdc_micros (B_u), r_min_bps,
    r_max_bps; from the newest SHADOW_USER snapshot: leader_exposure_micros (E_u),
    leader_exposure_bucket_time_ms; from the last attempt: leader_exposure_status, r_u,
    effective_rate_bps, last_decided_at_ms, last_attempt_id; exec_exposure_micros (our exposure, live
    estimate, below); from the newest EXEC_GLOBAL slice snapshot of the leader: exec_slice_exposure_micros,
    exec_slice_bucket_time_ms; headroom_micros (B_u − exec_exposure_micros, only while HARD enforcement
    applies, else null; negative when marks moved past the budget); utilization (exec_exposure_micros / B_u
    as a fraction, null when B_u = 0); attempts, executed, skipped, trades (counted once per attemptId).

    exec_exposure_micros is what the HARD check counts (our exposure plus open BUY reservations,
    SPEC 13.3.2), from whichever is newer: the leader's latest leaderBook (exposureMicros +
    reservedMicros, exact as of its asOfMs) or the last attempt — its currentExposureMicros, plus its
    targetNotionalMicros when it was a non-reducing EXECUTE, minus it (floored at 0) for a reducing one;
    a SKIP leaves it unchanged. The attempt-based figure is an approximation (the worker also re-marks
    held assets at later prices, and counts a reports-mode SELL as filled); the next leaderBook corrects
    it. A tie goes to the book (the final book of a replay is then the replay's figure exactly).
    From the latest leaderBook (SPEC 13.5): reserved_micros, cost_basis_micros, realized_pnl_micros,
    unrealized_pnl_micros, book_as_of_ms, book_source_partition, book_source_offset.

``leader_reason_counts`` — leader_id, reason, count (PK leader_id, reason): SKIP reason codes.
``leader_clamp_counts`` — leader_id, clamp, count (PK leader_id, clamp); clamp is one of
    rMin, rMax, min, max, bankroll, hardCap (hardCap: budget.capped, or reason BUDGET_HARD_CAP_EXCEEDED).
``config_history`` — one row per config-changes message: source_partition, source_offset (PK),
    change_id, scope, leader_id (null for GLOBAL), changed_at_ms, status (accepted | rejected |
    duplicate: its changeId was accepted before), errors and warnings (JSON arrays of strings),
    config_version (changeId of the newest accepted change after this one), change_json (as received),
    fill_model (the GLOBAL system.fillModel in force after an accepted change, else null).
``latest_snapshots`` — scope, leader_id ('' for the whole EXEC_GLOBAL portfolio) (PK), bucket_time_ms,
    exposure_micros, equity_micros, cash_micros, source_partition, source_offset: the newest snapshot
    by bucketTimeMs; on equal times the later arrival wins.
``leader_books`` — the leaderBook history (SPEC 13.5): leader_id, as_of_ms (PK), exposure_micros,
    reserved_micros, cost_basis_micros, realized_pnl_micros, unrealized_pnl_micros,
    leader_exposure_micros, leader_exposure_status, positions (JSON, as on the wire), config_version,
    source_partition, source_offset. One book per leader and asOfMs: a redelivered book (the same
    content) changes nothing; a different book with the same asOfMs (a replay's final book at the clock
    of the last periodic one) replaces it when read later. Retention: every book from the start of the
    :data:`BOOK_HISTORY_STEP_MS` (hour) that holds the time :data:`BOOK_HISTORY_FULL_MS` (24 h) before
    the leader's newest book; before that, the last book of each hour of asOfMs. So a leader keeps at
    most about 90,000 books at the default bookIntervalMs (one a second for 25 h), plus 24 a day.
``positions`` — leader_id, asset_id (PK): the held assets of the leader's latest leaderBook (a newer book
    replaces the leader's rows): share_micros, mark_price_micros, cost_basis_micros, value_micros
    (notional(shares, mark)), unrealized_pnl_micros (value − cost), as_of_ms.
``settlements`` — one row per positionSettled (PK settlement_id): leader_id, asset_id, market_id,
    share_micros, payout_micros, proceeds_micros, cost_basis_micros, realized_pnl_micros, settled_at_ms,
    config_version, source_partition, source_offset.
``orders`` — attempt_id, leader_id (PK): each order of the core (an EXECUTE decided under
    ``system.fillModel = "reports"``, SPEC 13.3) as its newest orderUpdated output gives it, stored as is:
    revision, asset_id, side, status (OPEN, FILLED, REJECTED, CANCELLED, EXPIRED), close_reason (REPORT,
    TIMEOUT, MARKET_RESOLVED; null while open), target_share_micros, target_notional_micros,
    reference_price_micros, filled_share_micros, filled_notional_micros, reserved_micros (USDC for a BUY,
    shares for a SELL), last_report_id, opened_at_ms, updated_at_ms, closed_at_ms, config_version,
    source_partition, source_offset. A higher revision replaces the row; an equal or lower one (a
    redelivery) changes nothing. The projector applies no order rule: the core decided them.
``projection_offsets`` — topic, partition, next_offset: the next message to consume, committed with rows.
``projection_state`` — name, value: the projector's config store (JSON), committed with rows.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from models import summary
from models.config import ConfigStore, EffectiveConfig, apply_change
from models.events import (
    ConfigChange,
    CopyAttempt,
    LeaderBook,
    OrderExpired,
    OrderUpdated,
    PortfolioSnapshot,
    PositionSettled,
    WireModel,
)
from models.units import notional

CLAMPS = ("rMin", "rMax", "min", "max", "bankroll", "hardCap")
"""The clamp names of ``leader_clamp_counts``."""
BUDGET_HARD_CAP_EXCEEDED = "BUDGET_HARD_CAP_EXCEEDED"
WHOLE_PORTFOLIO = ""
"""``leader_id`` of a snapshot row for the whole EXEC_GLOBAL portfolio."""

SnapshotKey = tuple[str, str]
"""(scope, leader_id) of a ``latest_snapshots`` row."""


def to_json(value: object) -> str:
    """Compact, key-sorted JSON: equal values give equal text, so replays leave rows byte-identical."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a row's event was read: the columns that end every table of output events."""

    source_partition: int
    source_offset: int


# --- copy attempts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """A ``copy_attempts`` row."""

    attempt_id: str
    leader_id: str
    group_key: str
    asset_id: str
    market_id: str | None
    side: str
    source_type: str
    decision: str
    reason: str | None
    trade_count: int
    their_notional_micros: int
    their_reference_price_micros: int
    raw_target_micros: int
    target_notional_micros: int
    target_share_micros: int
    decided_at_ms: int
    sizing_mode: str
    budgeted_dynamic_enabled: bool
    budgeted_dynamic_active: bool
    budget_enforcement: str
    budget_usdc_micros: int
    leader_exposure_micros: int | None
    leader_exposure_status: str
    r_u: float
    effective_rate_bps: int
    clamped_to_r_min: bool
    clamped_to_r_max: bool
    clamped_to_min: bool
    clamped_to_max: bool
    clamped_by_bankroll: bool
    equity_micros: int
    current_exposure_micros: int
    headroom_micros: int | None
    capped: bool
    reducing: bool
    reserved_micros: int
    config_version: str | None
    attempt_json: str
    source_partition: int
    source_offset: int


def attempt_row(attempt: CopyAttempt, attempt_json: str, partition: int, offset: int) -> AttemptRow:
    """The ``copy_attempts`` row of an attempt first seen at `partition`/`offset`."""
    s, b = attempt.sizing, attempt.budget
    return AttemptRow(
        attempt_id=attempt.attempt_id,
        leader_id=attempt.followed_user_id,
        group_key=attempt.group_key,
        asset_id=attempt.asset_id,
        market_id=attempt.market_id,
        side=attempt.side,
        source_type=attempt.source_type,
        decision=attempt.decision,
        reason=attempt.reason_codes[0] if attempt.reason_codes else None,
        trade_count=attempt.buffered_trade_count,
        their_notional_micros=attempt.their_notional_micros,
        their_reference_price_micros=attempt.their_reference_price_micros,
        raw_target_micros=attempt.raw_target_micros,
        target_notional_micros=attempt.target_notional_micros,
        target_share_micros=attempt.target_share_micros,
        decided_at_ms=attempt.decided_at_ms,
        sizing_mode=s.sizing_mode,
        budgeted_dynamic_enabled=s.budgeted_dynamic_enabled,
        budgeted_dynamic_active=s.budgeted_dynamic_active,
        budget_enforcement=s.budget_enforcement,
        budget_usdc_micros=s.budget_usdc_micros,
        leader_exposure_micros=s.leader_exposure_micros,
        leader_exposure_status=s.leader_exposure_status,
        r_u=s.r_u,
        effective_rate_bps=s.effective_rate_bps,
        clamped_to_r_min=s.clamped_to_r_min,
        clamped_to_r_max=s.clamped_to_r_max,
        clamped_to_min=s.clamped_to_min,
        clamped_to_max=s.clamped_to_max,
        clamped_by_bankroll=s.clamped_by_bankroll,
        equity_micros=s.equity_micros,
        current_exposure_micros=b.current_exposure_micros,
        headroom_micros=b.headroom_micros,
        capped=b.capped,
        reducing=b.reducing,
        reserved_micros=b.reserved_micros,
        config_version=attempt.config_version,
        attempt_json=attempt_json,
        source_partition=partition,
        source_offset=offset,
    )


def attempt_clamps(attempt: CopyAttempt) -> tuple[str, ...]:
    """The clamps (of :data:`CLAMPS`) that bound this attempt's target, each at most once."""
    s = attempt.sizing
    hard_cap = attempt.budget.capped or BUDGET_HARD_CAP_EXCEEDED in attempt.reason_codes
    flags = (s.clamped_to_r_min, s.clamped_to_r_max, s.clamped_to_min, s.clamped_to_max)
    return tuple(
        name for name, on in zip(CLAMPS, (*flags, s.clamped_by_bankroll, hard_cap), strict=True) if on
    )


def exposure_after(attempt: CopyAttempt) -> int:
    """Our exposure attributed to the leader just after this decision (see :mod:`models.summary`)."""
    b = attempt.budget
    return summary.exposure_after(
        b.current_exposure_micros, attempt.target_notional_micros, attempt.decision == "EXECUTE", b.reducing
    )


# --- leader budget ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaderBudgetRow:
    """A ``leader_budget`` row."""

    leader_id: str
    label: str
    sizing_mode: str
    budgeted_dynamic_active: bool
    budget_enforcement: str
    budget_usdc_micros: int
    r_min_bps: int
    r_max_bps: int
    leader_exposure_micros: int | None = None
    leader_exposure_bucket_time_ms: int | None = None
    leader_exposure_status: str | None = None
    r_u: float | None = None
    effective_rate_bps: int | None = None
    exec_exposure_micros: int = 0
    exec_slice_exposure_micros: int | None = None
    exec_slice_bucket_time_ms: int | None = None
    headroom_micros: int | None = None
    utilization: float | None = None
    attempts: int = 0
    executed: int = 0
    skipped: int = 0
    trades: int = 0
    last_decided_at_ms: int | None = None
    last_attempt_id: str | None = None
    reserved_micros: int = 0
    cost_basis_micros: int = 0
    realized_pnl_micros: int = 0
    unrealized_pnl_micros: int = 0
    book_as_of_ms: int | None = None
    book_source_partition: int | None = None
    book_source_offset: int | None = None


def new_leader(leader_id: str, cfg: EffectiveConfig) -> LeaderBudgetRow:
    """The row of a leader seen for the first time, under its effective config."""
    return with_config(
        LeaderBudgetRow(leader_id, leader_id, cfg.sizing_mode, False, cfg.budget_enforcement, 0, 0, 0), cfg
    )


def _derived(row: LeaderBudgetRow) -> LeaderBudgetRow:
    """Recompute headroom and utilization from B_u, the enforcement and our exposure."""
    hard = row.budgeted_dynamic_active and row.budget_enforcement == "hard"
    budget, ours = row.budget_usdc_micros, row.exec_exposure_micros
    return replace(
        row,
        headroom_micros=summary.budget_headroom_micros(budget, ours, hard),
        utilization=summary.budget_utilization(ours, budget),
    )


def with_config(row: LeaderBudgetRow, cfg: EffectiveConfig) -> LeaderBudgetRow:
    """The row with the configured columns of the leader's effective config."""
    return _derived(
        replace(
            row,
            label=cfg.label or row.leader_id,
            sizing_mode=cfg.sizing_mode,
            budgeted_dynamic_active=cfg.budgeted_dynamic_active,
            budget_enforcement=cfg.budget_enforcement,
            budget_usdc_micros=cfg.budget_usdc_micros,
            r_min_bps=cfg.budget_r_min_bps,
            r_max_bps=cfg.budget_r_max_bps,
        )
    )


def with_attempt(row: LeaderBudgetRow, attempt: CopyAttempt) -> LeaderBudgetRow:
    """The row after a newly seen attempt of the leader (a redelivery must not reach this)."""
    executed = attempt.decision == "EXECUTE"
    counted = replace(
        row,
        attempts=row.attempts + 1,
        executed=row.executed + executed,
        skipped=row.skipped + (not executed),
        trades=row.trades + attempt.buffered_trade_count,
    )
    if row.last_decided_at_ms is not None and attempt.decided_at_ms < row.last_decided_at_ms:
        return counted  # an older decision (out of order) does not describe the leader's present
    book_is_newer = row.book_as_of_ms is not None and row.book_as_of_ms >= attempt.decided_at_ms
    return _derived(
        replace(
            counted,
            leader_exposure_status=attempt.sizing.leader_exposure_status,
            r_u=attempt.sizing.r_u,
            effective_rate_bps=attempt.sizing.effective_rate_bps,
            exec_exposure_micros=row.exec_exposure_micros if book_is_newer else exposure_after(attempt),
            last_decided_at_ms=attempt.decided_at_ms,
            last_attempt_id=attempt.attempt_id,
        )
    )


# --- snapshots ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """A ``latest_snapshots`` row."""

    scope: str
    leader_id: str
    bucket_time_ms: int
    exposure_micros: int
    equity_micros: int | None
    cash_micros: int | None
    source_partition: int
    source_offset: int

    @property
    def key(self) -> SnapshotKey:
        return (self.scope, self.leader_id)


def snapshot_row(snapshot: PortfolioSnapshot, partition: int, offset: int) -> SnapshotRow:
    """The ``latest_snapshots`` row a snapshot read at `partition`/`offset` would be."""
    return SnapshotRow(
        scope=snapshot.portfolio_scope,
        leader_id=snapshot.followed_user_id or WHOLE_PORTFOLIO,
        bucket_time_ms=snapshot.bucket_time_ms,
        exposure_micros=snapshot.exposure_micros,
        equity_micros=snapshot.equity_micros,
        cash_micros=snapshot.cash_micros,
        source_partition=partition,
        source_offset=offset,
    )


def supersedes(new: SnapshotRow, old: SnapshotRow | None) -> bool:
    """`new` is the newest: a later bucketTimeMs, or the same one arriving later (SPEC 12.2).

    A key's snapshots all share one partition, so arrival order is offset order; comparing positions
    (not "whatever came last") also makes a replayed old snapshot change nothing.
    """
    if old is None:
        return True
    return (new.bucket_time_ms, new.source_partition, new.source_offset) >= (
        old.bucket_time_ms,
        old.source_partition,
        old.source_offset,
    )


def with_snapshot(row: LeaderBudgetRow, snapshot: SnapshotRow) -> LeaderBudgetRow:
    """The leader's row after its newest SHADOW_USER (E_u) or EXEC_GLOBAL slice snapshot changed."""
    if snapshot.scope == "SHADOW_USER":
        return replace(
            row,
            leader_exposure_micros=snapshot.exposure_micros,
            leader_exposure_bucket_time_ms=snapshot.bucket_time_ms,
        )
    return replace(
        row,
        exec_slice_exposure_micros=snapshot.exposure_micros,
        exec_slice_bucket_time_ms=snapshot.bucket_time_ms,
    )


# --- the venue loop: books, positions, settlements, orders (SPEC 13.3, 13.5) ------------------------

BookEvent = LeaderBook | PositionSettled | OrderExpired | OrderUpdated
"""What the worker outputs on ``copybot.book-events``."""
OrderKey = tuple[str, str]
"""(attempt_id, leader_id) of an ``orders`` row."""
BookKey = tuple[str, int]
"""(leader_id, as_of_ms) of a ``leader_books`` row."""
BOOK_HISTORY_FULL_MS = 86_400_000
"""``leader_books`` keeps every book this long before the leader's newest."""
BOOK_HISTORY_STEP_MS = 3_600_000
"""Older books are thinned to the last one of each step of asOfMs."""


def book_thinning_cut(newest_ms: int) -> int | None:
    """Books of a leader whose newest is at `newest_ms` are thinned below this asOfMs (None: none is old).

    The thinning covers every older book, not only those aged since the last batch: a redelivered old book
    is thinned away again, and the part already thinned is small (24 books a day)."""
    cut = (newest_ms - BOOK_HISTORY_FULL_MS) // BOOK_HISTORY_STEP_MS * BOOK_HISTORY_STEP_MS  # a whole step
    return cut if cut > 0 else None


def event_fields(event: WireModel, partition: int, offset: int) -> dict[str, Any]:
    """A book event as a row: its fields (followedUserId as leader_id, lists as JSON), where it was read."""
    row = event.model_dump(exclude={"kind"})
    row["leader_id"] = row.pop("followed_user_id")
    for name, value in row.items():
        if isinstance(value, list):
            row[name] = to_json(value)
    return {**row, "source_partition": partition, "source_offset": offset}


def position_rows(book: LeaderBook) -> list[dict[str, Any]]:
    """The ``positions`` rows of a leader's book: each held asset, valued at its mark."""
    rows = []
    for p in book.positions:
        value = notional(p["shareMicros"], p["markPriceMicros"])  # the asset's part of the exposure
        rows.append(
            {
                "leader_id": book.followed_user_id,
                "asset_id": p["assetId"],
                "share_micros": p["shareMicros"],
                "mark_price_micros": p["markPriceMicros"],
                "cost_basis_micros": p["costBasisMicros"],
                "value_micros": value,
                "unrealized_pnl_micros": value - p["costBasisMicros"],  # SPEC 13.5: exposure − cost
                "as_of_ms": book.as_of_ms,
            }
        )
    return rows


def book_supersedes(row: LeaderBudgetRow, book: LeaderBook, partition: int, offset: int) -> bool:
    """`book` is the leader's newest: a later asOfMs, or the same one read later (replays change nothing)."""
    if row.book_as_of_ms is None:
        return True
    return (book.as_of_ms, partition, offset) >= (
        row.book_as_of_ms,
        row.book_source_partition or 0,
        row.book_source_offset or 0,
    )


def with_book(row: LeaderBudgetRow, book: LeaderBook, partition: int, offset: int) -> LeaderBudgetRow:
    """The leader's row after its newest leaderBook: PnL, reservations, and our exposure when newer."""
    newer = row.last_decided_at_ms is None or book.as_of_ms >= row.last_decided_at_ms
    return _derived(
        replace(
            row,
            reserved_micros=book.reserved_micros,
            cost_basis_micros=book.cost_basis_micros,
            realized_pnl_micros=book.realized_pnl_micros,
            unrealized_pnl_micros=book.unrealized_pnl_micros,
            exec_exposure_micros=(
                book.exposure_micros + book.reserved_micros if newer else row.exec_exposure_micros
            ),
            book_as_of_ms=book.as_of_ms,
            book_source_partition=partition,
            book_source_offset=offset,
        )
    )


# --- config -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigHistoryRow:
    """A ``config_history`` row."""

    source_partition: int
    source_offset: int
    change_id: str
    scope: str
    leader_id: str | None
    changed_at_ms: int
    status: str
    errors: str
    warnings: str
    config_version: str | None
    change_json: str
    fill_model: str | None


def fold_config(
    store: ConfigStore, change: ConfigChange, change_json: str, partition: int, offset: int
) -> tuple[ConfigStore, ConfigHistoryRow]:
    """Apply a change exactly as the worker does; the new store and the change's history row."""
    outcome = apply_change(store, change)
    if outcome.duplicate:
        status, new_store = "duplicate", store
    elif outcome.store is not None:
        status, new_store = "accepted", outcome.store
    else:
        status, new_store = "rejected", store
    row = ConfigHistoryRow(
        source_partition=partition,
        source_offset=offset,
        change_id=change.change_id,
        scope=change.scope,
        leader_id=change.followed_user_id,
        changed_at_ms=change.changed_at_ms,
        status=status,
        errors=to_json(list(outcome.errors)),
        # A rejected change reports errors only (as the worker's configRejected does).
        warnings=to_json(list(outcome.warnings) if status == "accepted" else []),
        config_version=new_store.version,
        change_json=change_json,
        fill_model=new_store.global_effective.fill_model if status == "accepted" else None,
    )
    return new_store, row


# --- a batch ------------------------------------------------------------------------------------


@dataclass(slots=True)
class WorkingSet:
    """The stored rows a batch reads before it writes (loaded by the store)."""

    config: ConfigStore
    known_attempt_ids: set[str] = field(default_factory=set)
    """Those of the batch's attemptIds that are already in ``copy_attempts``."""
    leaders: dict[str, LeaderBudgetRow] = field(default_factory=dict)
    """The stored rows of the batch's leaders (of every leader when the batch has a config change)."""
    snapshots: dict[SnapshotKey, SnapshotRow] = field(default_factory=dict)
    """The stored rows of the batch's snapshot keys."""
    all_leaders: bool = False
    """`leaders` holds every stored leader row (required for a batch with a config change)."""
    order_revisions: dict[OrderKey, int] = field(default_factory=dict)
    """The stored revision of each order the batch's orderUpdated events name."""


@dataclass(slots=True)
class RowChanges:
    """What one batch writes: inserts, count increments and rows to upsert."""

    attempts: list[AttemptRow] = field(default_factory=list)
    reason_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    clamp_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    leaders: dict[str, LeaderBudgetRow] = field(default_factory=dict)
    snapshots: dict[SnapshotKey, SnapshotRow] = field(default_factory=dict)
    config_history: list[ConfigHistoryRow] = field(default_factory=list)
    config: ConfigStore | None = None
    """The projector's config store after the batch, when a change was applied."""
    duplicate_attempts: int = 0
    books: dict[BookKey, dict[str, Any]] = field(default_factory=dict)
    """The ``leader_books`` rows to write (the last read of each key)."""
    book_thinning: dict[str, int] = field(default_factory=dict)
    """leader id -> thin its ``leader_books`` history below this asOfMs (:func:`book_thinning_cut`)."""
    positions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """leader id -> every ``positions`` row of the leader (replacing the stored ones)."""
    settlements: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[OrderKey, dict[str, Any]] = field(default_factory=dict)
    """The ``orders`` rows to upsert: the newest revision of each order the batch named."""


class BatchProjection:
    """Folds one batch of decoded events, in log order, into the row changes it causes."""

    def __init__(self, working: WorkingSet) -> None:
        self._working = working
        self._config = working.config
        self._config_changed = False
        self._seen = set(working.known_attempt_ids)
        self._leaders = dict(working.leaders)
        self._touched: set[str] = set()
        self._snapshots = dict(working.snapshots)
        self._order_revisions = dict(working.order_revisions)
        self._changes = RowChanges()

    def _leader(self, leader_id: str) -> LeaderBudgetRow:
        self._touched.add(leader_id)
        row = self._leaders.get(leader_id)
        if row is None:
            row = self._leaders[leader_id] = new_leader(leader_id, self._config.for_leader(leader_id))
        return row

    def attempt(self, attempt: CopyAttempt, attempt_json: str, partition: int, offset: int) -> bool:
        """Project a copy attempt; False (nothing changes) when its attemptId was projected before."""
        if attempt.attempt_id in self._seen:
            self._changes.duplicate_attempts += 1
            return False
        self._seen.add(attempt.attempt_id)
        leader_id = attempt.followed_user_id
        self._changes.attempts.append(attempt_row(attempt, attempt_json, partition, offset))
        if attempt.decision == "SKIP":
            self._changes.reason_counts.update((leader_id, reason) for reason in attempt.reason_codes)
        self._changes.clamp_counts.update((leader_id, clamp) for clamp in attempt_clamps(attempt))
        self._leaders[leader_id] = with_attempt(self._leader(leader_id), attempt)
        return True

    def snapshot(self, snapshot: PortfolioSnapshot, partition: int, offset: int) -> bool:
        """Project a snapshot; False when a newer one of its scope and leader is already there."""
        row = snapshot_row(snapshot, partition, offset)
        if not supersedes(row, self._snapshots.get(row.key)):
            return False
        self._snapshots[row.key] = self._changes.snapshots[row.key] = row
        if row.leader_id != WHOLE_PORTFOLIO:
            self._leaders[row.leader_id] = with_snapshot(self._leader(row.leader_id), row)
        return True

    def book_event(self, event: BookEvent, partition: int, offset: int) -> None:
        """Project a leaderBook, positionSettled or orderUpdated (a redelivery changes nothing); an
        orderExpired changes no row: the orderUpdated that follows it carries the expired order."""
        if isinstance(event, PositionSettled):
            self._changes.settlements[event.settlement_id] = event_fields(event, partition, offset)
        elif isinstance(event, OrderUpdated):
            key = (event.attempt_id, event.followed_user_id)
            if event.revision > self._order_revisions.get(key, 0):  # the core's newest state of the order
                self._order_revisions[key] = event.revision
                self._changes.orders[key] = event_fields(event, partition, offset)
        elif isinstance(event, LeaderBook):
            self._changes.books[event.followed_user_id, event.as_of_ms] = event_fields(
                event, partition, offset
            )
            leader = self._leader(event.followed_user_id)
            if book_supersedes(leader, event, partition, offset):
                self._leaders[event.followed_user_id] = with_book(leader, event, partition, offset)
                self._changes.positions[event.followed_user_id] = position_rows(event)

    def config_change(self, change: ConfigChange, change_json: str, partition: int, offset: int) -> str:
        """Project a config change; returns its status (accepted, rejected or duplicate)."""
        if not self._working.all_leaders:
            raise ValueError("a batch with a config change needs every leader row in its working set")
        self._config, row = fold_config(self._config, change, change_json, partition, offset)
        self._changes.config_history.append(row)
        if row.status == "accepted":
            self._config_changed = True
            if change.followed_user_id is not None:
                self._leader(change.followed_user_id)
        return row.status

    def changes(self) -> RowChanges:
        """The batch's row changes; configured columns reflect the config after the whole batch."""
        if self._config_changed:
            self._touched.update(self._leaders)
            self._touched.update(self._config.user_docs)
            self._changes.config = self._config
        for leader_id in sorted(self._touched):
            row = with_config(self._leader(leader_id), self._config.for_leader(leader_id))
            if row != self._working.leaders.get(leader_id):
                self._changes.leaders[leader_id] = row
        for leader_id in sorted({leader for leader, _ in self._changes.books}):
            newest = self._leaders[leader_id].book_as_of_ms
            cut = None if newest is None else book_thinning_cut(newest)
            if cut is not None:
                self._changes.book_thinning[leader_id] = cut
        return self._changes
