"""Per-partition processor state: the clock, config, equity, and each leader's books (SPEC 4, 7).

Plain mutable dataclasses, owned by whoever drives :func:`models.engine.process` (replay keeps one in
memory, the live worker keeps it in Faust tables). Everything here is derived from the input events
alone, so the same events in the same order always rebuild the same state.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from models.config import ConfigStore
from models.events import OrderUpdatedWire, Side

WindowKey = tuple[str, str, int, int]
"""(assetId, side, windowStartMs, windowEndMs) of an open aggregation window."""
BucketKey = tuple[str, str]
"""(assetId, side) in sameSideOnly; (assetId, "") in netBuySell."""


@dataclass(slots=True, init=False)
class Window:
    """An open aggregation window: trades of one (leader, asset, side) in [start, end).

    Window, Bucket and Order write their ``__init__`` out: compiled, mypyc builds these in a few
    instructions, where a dataclass's generated ``__init__`` is interpreted Python (one per group or order).
    The dataclass still gives them ``__eq__`` and ``__repr__``."""

    seq: int
    asset_id: str
    side: Side
    start_ms: int
    end_ms: int
    market_id: str | None
    trade_ids: list[str]
    notional_micros: int
    share_micros: int

    def __init__(
        self,
        seq: int,
        asset_id: str,
        side: Side,
        start_ms: int,
        end_ms: int,
        market_id: str | None,
        trade_ids: list[str],
        notional_micros: int = 0,
        share_micros: int = 0,
    ) -> None:
        self.seq = seq
        self.asset_id = asset_id
        self.side = side
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.market_id = market_id
        self.trade_ids = trade_ids
        self.notional_micros = notional_micros
        self.share_micros = share_micros


@dataclass(slots=True, init=False)
class Bucket:
    """A small-trade buffer bucket: already-scaled copy notional waiting to be netted and flushed."""

    seq: int
    asset_id: str
    side: Side | None
    """The bucket's side in sameSideOnly; None in netBuySell (the side follows the net's sign)."""
    market_id: str | None
    first_seen_ms: int
    last_updated_ms: int
    trade_ids: list[str]
    net_copy_notional_micros: int
    """Signed: BUY adds, SELL subtracts."""
    net_copy_share_micros: int
    leader_notional_micros: int
    """Σ of the leader notional of the buffered trades (gross, not netted)."""
    reference_price_micros: int
    scheduled_ms: int | None
    """The deadline of its live entry in the deadline queue; never later than its real flush deadline."""

    def __init__(
        self,
        seq: int,
        asset_id: str,
        side: Side | None,
        market_id: str | None,
        first_seen_ms: int,
        last_updated_ms: int,
        trade_ids: list[str] | None = None,
        net_copy_notional_micros: int = 0,
        net_copy_share_micros: int = 0,
        leader_notional_micros: int = 0,
        reference_price_micros: int = 0,
        scheduled_ms: int | None = None,
    ) -> None:
        self.seq = seq
        self.asset_id = asset_id
        self.side = side
        self.market_id = market_id
        self.first_seen_ms = first_seen_ms
        self.last_updated_ms = last_updated_ms
        self.trade_ids = [] if trade_ids is None else trade_ids
        self.net_copy_notional_micros = net_copy_notional_micros
        self.net_copy_share_micros = net_copy_share_micros
        self.leader_notional_micros = leader_notional_micros
        self.reference_price_micros = reference_price_micros
        self.scheduled_ms = scheduled_ms


@dataclass(slots=True)
class Snapshot:
    """The newest portfolio snapshot of one kind (by bucketTimeMs; on ties the later arrival)."""

    bucket_time_ms: int
    exposure_micros: int
    equity_micros: int | None = None


@dataclass(slots=True)
class Journal:
    """What changed in a leader's long-lived memory (trade ids, group keys) since it was last drained.

    The live worker persists those as one small record each instead of rewriting the leader's whole
    dedup memory every batch; replay leaves ``LeaderState.journal`` as None and pays nothing.
    """

    trade_ids: set[str] = field(default_factory=set)
    group_keys: set[str] = field(default_factory=set)
    attempts: set[str] = field(default_factory=set)
    """Attempt ids added to or forgotten from ``LeaderState.attempt_memory``."""


ATTEMPT_SKIP = 0
ATTEMPT_PAPER = 1
"""What ``LeaderState.attempt_memory`` remembers of an attempt that opened no order."""


@dataclass(slots=True, init=False)
class Order:
    """The order of an EXECUTE decided in reports mode (SPEC 13.3), open until closed or expired."""

    seq: int
    """Creation sequence, shared with windows and buckets (deadline ties, resolution order)."""
    attempt_id: str
    asset_id: str
    side: Side
    target_share_micros: int
    target_notional_micros: int
    opened_at_ms: int
    filled_share_micros: int
    filled_notional_micros: int
    open: bool
    reference_price_micros: int
    """The attempt's theirReferencePriceMicros (reported in orderUpdated only)."""
    status: str
    """OPEN, or what closed it: FILLED, REJECTED, CANCELLED, EXPIRED (``models.events.OrderStatus``)."""
    close_reason: str | None
    closed_at_ms: int | None
    last_report_id: str | None
    revision: int
    """How many times the order's state changed (1 when opened): orderUpdated.revision."""
    report_ids: set[str]
    """reportIds already processed for this attempt (a repeat is silent)."""
    scheduled_ms: int | None
    """The deadline of its live entry in the deadline queue (derived, not stored)."""

    def __init__(
        self,
        seq: int,
        attempt_id: str,
        asset_id: str,
        side: Side,
        target_share_micros: int,
        target_notional_micros: int,
        opened_at_ms: int,
        filled_share_micros: int = 0,
        filled_notional_micros: int = 0,
        open: bool = True,
        reference_price_micros: int = 0,
        status: str = "OPEN",
        close_reason: str | None = None,
        closed_at_ms: int | None = None,
        last_report_id: str | None = None,
        revision: int = 1,
        report_ids: set[str] | None = None,
        scheduled_ms: int | None = None,
    ) -> None:
        self.seq = seq
        self.attempt_id = attempt_id
        self.asset_id = asset_id
        self.side = side
        self.target_share_micros = target_share_micros
        self.target_notional_micros = target_notional_micros
        self.opened_at_ms = opened_at_ms
        self.filled_share_micros = filled_share_micros
        self.filled_notional_micros = filled_notional_micros
        self.open = open
        self.reference_price_micros = reference_price_micros
        self.status = status
        self.close_reason = close_reason
        self.closed_at_ms = closed_at_ms
        self.last_report_id = last_report_id
        self.revision = revision
        self.report_ids = set() if report_ids is None else report_ids
        self.scheduled_ms = scheduled_ms

    def reserved(self) -> int:
        """What the open order still holds back: USDC for a BUY, shares for a SELL (0 once closed)."""
        if not self.open:
            return 0
        if self.side == "BUY":
            return max(0, self.target_notional_micros - self.filled_notional_micros)
        return max(0, self.target_share_micros - self.filled_share_micros)


@dataclass(slots=True)
class LeaderState:
    """Everything the processor knows about one leader u."""

    leader_id: str
    seen_trade_ids: dict[str, int] = field(default_factory=dict)
    """tradeId -> clock when first accepted (dedup within system.dedupWindowMs)."""
    seen_order: deque[tuple[int, str]] = field(default_factory=deque)
    forgotten_through_ms: int = -1
    """The newest seen-at time of a forgotten trade id: every remembered id was seen after it."""
    attempts_forgotten_through_ms: int = -1
    """The newest decision time of a forgotten order-less attempt (every remembered one is newer)."""
    used_group_keys: dict[str, int] = field(default_factory=dict)
    """base groupKey -> how many groups used it (the next one gets ``~n+1``)."""
    used_key_times: deque[tuple[int, str]] = field(default_factory=deque)
    """(time in the key, base groupKey) in first-use order, to forget keys older than the dedup window.

    Key times are almost always increasing; a late key behind a newer one is just forgotten later."""
    group_key_floor_ms: int = 0
    """Keys whose time is below this may have been forgotten; such groups get a ``~lateN`` suffix."""
    late_groups: int = 0
    windows: dict[WindowKey, Window] = field(default_factory=dict)
    buckets: dict[BucketKey, Bucket] = field(default_factory=dict)
    held_share_micros: dict[str, int] = field(default_factory=dict)
    """Our paper holdings per asset attributed to u (never negative)."""
    mark_price_micros: dict[str, int] = field(default_factory=dict)
    exposure_part_micros: dict[str, int] = field(default_factory=dict)
    exposure_micros: int = 0
    """Σ over assets floor(held × mark / 10^6): our exposure attributed to u."""
    shadow: Snapshot | None = None
    """Newest SHADOW_USER snapshot: E_u."""
    exec_slice: Snapshot | None = None
    """Newest EXEC_GLOBAL slice attributed to u (reporting only)."""
    journal: Journal | None = None
    """Changes of trade ids and group keys to persist (live worker only)."""
    # --- the venue loop (SPEC 13) ---
    cost_basis_micros: dict[str, int] = field(default_factory=dict)
    """Per asset: what our holding cost (SPEC 13.6)."""
    realized_pnl_micros: int = 0
    shadow_share_micros: dict[str, int] = field(default_factory=dict)
    """The leader's own book from its accepted trades (SPEC 13.4), never negative."""
    shadow_part_micros: dict[str, int] = field(default_factory=dict)
    shadow_exposure_micros: int = 0
    """E_shadow(u) = Σ over assets floor(shares × mark / 10^6), kept per asset like ``exposure_micros``
    (derived from the shadow book and the marks; not saved)."""
    orders: dict[str, Order] = field(default_factory=dict)
    """attemptId -> order: open ones, and closed ones until the dedup window has passed."""
    reserved_buy_micros: int = 0
    """Σ BUY reservations of the open orders (derived from ``orders``)."""
    reserved_sell_share_micros: dict[str, int] = field(default_factory=dict)
    """Per asset: Σ SELL reservations of the open orders (derived from ``orders``)."""
    attempt_memory: dict[str, int] = field(default_factory=dict)
    """attemptId -> ATTEMPT_SKIP / ATTEMPT_PAPER, for attempts without an order, within the dedup window."""
    attempt_order: deque[tuple[int, str]] = field(default_factory=deque)
    """(decidedAtMs, attemptId) of ``attempt_memory`` in decision order, to forget old ones."""
    has_book: bool = False
    """The leader had an accepted trade or a SHADOW_USER snapshot: it gets leaderBook outputs."""
    book_changed: bool = False
    """A fill, order, report, settlement or new mark since the last leaderBook (SPEC 13.8.2)."""
    last_book_exposure: tuple[int | None, str] | None = None
    """(leaderExposureMicros, leaderExposureStatus) shown by the last leaderBook."""


DeadlineKind = Literal[0, 1, 2]
WINDOW: DeadlineKind = 0
BUCKET: DeadlineKind = 1
ORDER: DeadlineKind = 2
DeadlineEntry = tuple[int, int, int, str, tuple[str, str, int, int] | tuple[str, str] | str]
"""(deadline, creation seq, kind, leader id, window key, bucket key or attemptId) in the deadline queue."""


@dataclass(slots=True)
class PartitionState:
    """The state of one partition's processor (replay is one partition)."""

    config: ConfigStore = field(default_factory=ConfigStore)
    clock_ms: int = 0
    """The largest detectTimeMs or tick nowMs seen; time moves only through events."""
    equity: Snapshot | None = None
    """Newest whole EXEC_GLOBAL snapshot with a non-null equity."""
    leaders: dict[str, LeaderState] = field(default_factory=dict)
    next_seq: int = 0
    deadlines: list[DeadlineEntry] = field(default_factory=list)
    """Min-heap of window ends and bucket flush deadlines (stale entries are skipped when popped).

    A bucket's deadline only moves later as trades join it, so its entry stays put and is re-queued
    at the real deadline when popped early; an entry is pushed again only when a deadline moves earlier.
    """
    pending_buckets: int = 0
    resolved: dict[str, int] = field(default_factory=dict)
    """assetId -> payoutMicros of every market resolved in this partition (the first resolution stands)."""
    stray_reports: dict[tuple[str, str], int] = field(default_factory=dict)
    """(attemptId, reportId) -> clock, for reports that matched no order (a repeat is silent)."""
    stray_order: deque[tuple[int, tuple[str, str]]] = field(default_factory=deque)
    order_updates: list[OrderUpdatedWire] = field(default_factory=list)
    """orderUpdated outputs of orders opened while processing the current event, placed by
    ``models.venue.place_order_updates`` right after their attempts (transient: always empty between
    events, never saved)."""
    journaling: bool = False
    """Give every leader a :class:`Journal` (the live worker persists memory changes from it), also
    those first seen after the partition was loaded."""

    def leader(self, leader_id: str) -> LeaderState:
        """The state of `leader_id`, created empty on first sight."""
        state = self.leaders.get(leader_id)
        if state is None:
            journal = Journal() if self.journaling else None
            state = self.leaders[leader_id] = LeaderState(leader_id, journal=journal)
        return state

    def equity_micros(self) -> int:
        """Equity for sizing: the newest whole EXEC_GLOBAL snapshot, else system.initialBankrollMicros."""
        if self.equity is not None and self.equity.equity_micros is not None:
            return self.equity.equity_micros
        return self.config.global_effective.initial_bankroll_micros
