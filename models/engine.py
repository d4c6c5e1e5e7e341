"""The decision core's one entry point: ``process(state, event) -> outputs`` per partition.

It turns leader trades into groups (aggregation windows, or small-trade buffering), decides each group
(:mod:`models.decision`) and keeps the partition's state. Time moves only through events: the clock is
the largest detectTimeMs or tick nowMs seen, and whatever becomes due when it moves (window ends,
bucket deadlines) is decided first, in deadline order, before the event that moved it.
"""

from __future__ import annotations

import heapq

from models import venue
from models.book import changed_books, exposure_for_sizing, set_mark, shadow_trade
from models.config import EffectiveConfig, apply_change
from models.decision import Group, decide
from models.events import (
    AnyInputEvent,
    ConfigChange,
    ConfigRejected,
    ConfigWarning,
    CopyAttemptWire,
    LeaderTrade,
    Output,
    PortfolioSnapshot,
    Side,
    SourceType,
    Tick,
)
from models.sizing import raw_target
from models.state import (
    BUCKET,
    ORDER,
    WINDOW,
    Bucket,
    BucketKey,
    LeaderState,
    PartitionState,
    Snapshot,
    Window,
)
from models.units import MICROS
from models.venue import expire, on_report, on_resolution, order_deadline, reschedule_orders

InputEvent = AnyInputEvent


def process(state: PartitionState, event: InputEvent) -> list[Output]:
    """Apply one input event to the partition `state`, **mutating it in place**; return the outputs in
    decision order.

    The caller owns `state`. The outputs are copy attempts, the book events of SPEC 13.5
    (``positionSettled``, ``orderExpired``, ``leaderBook``) and the diagnostics ``configRejected``,
    ``configWarning`` and ``executionReportIgnored``.
    """
    out: list[Output] = []
    if event.kind == "leaderTrade":  # dispatch on the tag: cheaper than isinstance on pydantic models
        _on_trade(state, _fields(event), out)
    elif event.kind == "tick":
        _advance(state, event.now_ms, out)
        if state.pending_buckets and not state.config.global_effective.buffering_enabled:
            _flush_all_buckets(state, out)
    elif event.kind == "portfolioSnapshot":
        _on_snapshot(state, event)
    elif event.kind == "executionReport":
        on_report(state, event, out)
    elif event.kind == "marketResolved":
        on_resolution(state, event, out)
    else:
        _on_config_change(state, event, out)
    if state.order_updates:  # orders opened by this event (reports mode)
        venue.place_order_updates(state, out)
    return out


def finish_time(state: PartitionState) -> int | None:
    """The clock that decides everything still open: the latest window end or bucket max-time deadline.

    None when nothing is open. A live run reproduces a replay's end of input by sending a tick at this
    time into every partition (``copybot publish --finish``).
    """
    last = max(
        [w.end_ms for leader in state.leaders.values() for w in leader.windows.values()]
        + [
            b.first_seen_ms + state.config.global_effective.max_buffer_ms
            for leader in state.leaders.values()
            for b in leader.buckets.values()
        ],
        default=None,
    )
    return None if last is None else max(last, state.clock_ms)


def finish(state: PartitionState) -> list[Output]:
    """End of input: move the clock past every open window and bucket deadline, deciding them all,
    then a final leaderBook for every leader whose book changed since its last one (SPEC 13.8.2).

    Order timeouts are not forced: only those due by then expire."""
    last = finish_time(state)
    out: list[Output] = []
    if last is not None:
        out = process(state, Tick(kind="tick", now_ms=last))
    if state.pending_buckets:  # buffering is on and a deadline equals the clock: flush what is left
        _flush_all_buckets(state, out)
        if state.order_updates:
            venue.place_order_updates(state, out)
    if state.config.global_effective.book_interval_ms > 0:
        out.extend(changed_books(state))
    return out


# --- time -----------------------------------------------------------------------------------------


def _advance(state: PartitionState, now_ms: int, out: list[Output]) -> None:
    """Move the clock to `now_ms` (never back) and decide everything that became due, in deadline order;
    then, when the clock crossed a book boundary, the leaderBooks that changed (SPEC 13.5, 13.8.1)."""
    before = state.clock_ms
    if now_ms <= before:
        return
    state.clock_ms = now_ms
    heap = state.deadlines
    while heap and heap[0][0] <= now_ms:
        deadline, seq, kind, leader_id, key = heapq.heappop(heap)
        leader = state.leaders[leader_id]
        if kind == WINDOW:
            window = leader.windows.get(key)  # type: ignore[arg-type]
            if window is not None and window.seq == seq:
                del leader.windows[window.asset_id, window.side, window.start_ms, window.end_ms]
                out.append(_decide_window(state, leader, window))
        elif kind == BUCKET:
            _bucket_due(state, leader, deadline, seq, key, out)  # type: ignore[arg-type]
        else:
            _order_due(state, leader, deadline, key, out)  # type: ignore[arg-type]
    interval = state.config.global_effective.book_interval_ms
    if interval > 0 and now_ms // interval > before // interval:
        out.extend(changed_books(state))


def _bucket_due(
    state: PartitionState, leader: LeaderState, deadline: int, seq: int, key: BucketKey, out: list[Output]
) -> None:
    bucket = leader.buckets.get(key)
    if bucket is None or bucket.seq != seq or bucket.scheduled_ms != deadline:
        return  # flushed already, or superseded by an earlier entry
    actual = bucket_deadline(bucket, state.config.global_effective)
    if actual == deadline:
        out.append(_flush(state, leader, key, bucket))
    else:
        # Its deadline moved later (trades joined it, or the config changed): re-queue it at the
        # real one, so whatever falls due in between is decided first, in deadline order.
        bucket.scheduled_ms = actual
        heapq.heappush(state.deadlines, (actual, seq, BUCKET, leader.leader_id, key))


def _order_due(
    state: PartitionState, leader: LeaderState, deadline: int, attempt_id: str, out: list[Output]
) -> None:
    order = leader.orders.get(attempt_id)
    if order is None or not order.open or order.scheduled_ms != deadline:
        return  # closed already, or superseded by an earlier entry
    actual = order_deadline(state, order)
    if actual <= state.clock_ms:
        out.extend(expire(state, leader, order))
    else:  # the timeout grew since it was queued
        order.scheduled_ms = actual
        heapq.heappush(state.deadlines, (actual, order.seq, ORDER, leader.leader_id, attempt_id))


def _next_seq(state: PartitionState) -> int:
    state.next_seq += 1
    return state.next_seq


def bucket_deadline(bucket: Bucket, cfg: EffectiveConfig) -> int:
    deadline = bucket.first_seen_ms + cfg.max_buffer_ms
    if abs(bucket.net_copy_notional_micros) >= cfg.min_exec_notional_micros:
        deadline = min(deadline, bucket.last_updated_ms + cfg.quiet_flush_ms)
    return deadline


def _schedule_bucket(state: PartitionState, leader: LeaderState, key: BucketKey, bucket: Bucket) -> None:
    """Queue the bucket's flush deadline unless an entry at or before it is already queued."""
    deadline = bucket_deadline(bucket, state.config.global_effective)
    if bucket.scheduled_ms is None or deadline < bucket.scheduled_ms:
        bucket.scheduled_ms = deadline
        heapq.heappush(state.deadlines, (deadline, bucket.seq, BUCKET, leader.leader_id, key))


# --- events ---------------------------------------------------------------------------------------


def _on_snapshot(state: PartitionState, snap: PortfolioSnapshot) -> None:
    """Keep the newest snapshot of each kind; snapshots never move the clock."""
    new = Snapshot(snap.bucket_time_ms, snap.exposure_micros, snap.equity_micros)
    if snap.followed_user_id is None:
        if snap.equity_micros is not None and _newer(state.equity, new):
            state.equity = new
        return
    leader = state.leader(snap.followed_user_id)
    if snap.portfolio_scope == "SHADOW_USER":
        leader.has_book = True
        if _newer(leader.shadow, new):
            leader.shadow = new
    elif _newer(leader.exec_slice, new):
        leader.exec_slice = new


def _newer(old: Snapshot | None, new: Snapshot) -> bool:
    return old is None or new.bucket_time_ms >= old.bucket_time_ms


def _on_config_change(state: PartitionState, change: ConfigChange, out: list[Output]) -> None:
    outcome = apply_change(state.config, change)
    if outcome.duplicate:
        return
    if outcome.store is None:
        out.append(ConfigRejected(change_id=change.change_id, errors=outcome.errors))
        return
    state.config = outcome.store
    if outcome.warnings:
        out.append(ConfigWarning(change_id=change.change_id, warnings=outcome.warnings))
    sections = change.sections()
    if "buffering" in sections:  # bucket deadlines follow the buffering config in force
        for leader in state.leaders.values():
            for key, bucket in leader.buckets.items():
                _schedule_bucket(state, leader, key, bucket)
    if "system" in sections:  # so do order timeouts
        reschedule_orders(state)


class Trade:
    """A leaderTrade's fields, read once from the validated model: compiled, an attribute of this class
    is a load from a fixed offset, and one of the pydantic model a generic lookup (~370 instructions
    through BaseModel's ``__getattr__`` hook); a trade's path reads them about 25 times. A plain class,
    not a dataclass: mypyc compiles this ``__init__``, while a dataclass's comes from the interpreted
    ``dataclasses`` module (~3,400 instructions a trade)."""

    __slots__ = (
        "asset_id",
        "detect_time_ms",
        "followed_user_id",
        "market_id",
        "notional_micros",
        "price_micros",
        "share_micros",
        "side",
        "trade_id",
    )

    def __init__(
        self,
        trade_id: str,
        followed_user_id: str,
        asset_id: str,
        market_id: str | None,
        side: Side,
        price_micros: int,
        share_micros: int,
        notional_micros: int,
        detect_time_ms: int,
    ) -> None:
        self.trade_id = trade_id
        self.followed_user_id = followed_user_id
        self.asset_id = asset_id
        self.market_id = market_id
        self.side: Side = side
        self.price_micros = price_micros
        self.share_micros = share_micros
        self.notional_micros = notional_micros
        self.detect_time_ms = detect_time_ms


def _fields(trade: LeaderTrade) -> Trade:
    f = trade.__dict__  # a pydantic model keeps its validated fields in its __dict__
    return Trade(
        f["trade_id"],
        f["followed_user_id"],
        f["asset_id"],
        f["market_id"],
        f["side"],
        f["price_micros"],
        f["share_micros"],
        f["notional_micros"],
        f["detect_time_ms"],
    )


def _on_trade(state: PartitionState, trade: Trade, out: list[Output]) -> None:
    leader = state.leaders.get(trade.followed_user_id) or state.leader(trade.followed_user_id)
    cfg = state.config.for_leader(leader.leader_id)  # deciding due groups never changes the config
    trade_id = trade.trade_id
    seen = leader.seen_trade_ids
    if trade_id in seen and _is_duplicate(leader, trade_id, state.clock_ms, cfg.dedup_window_ms):
        return
    if trade.detect_time_ms > state.clock_ms:
        _advance(state, trade.detect_time_ms, out)
    clock = state.clock_ms
    seen_order = leader.seen_order
    if seen_order and clock - seen_order[0][0] > cfg.dedup_window_ms:
        _forget_old_trade_ids(leader, clock, cfg.dedup_window_ms)
    seen[trade_id] = clock
    seen_order.append((clock, trade_id))
    if leader.journal is not None:
        leader.journal.trade_ids.add(trade_id)
    leader.has_book = True
    asset = trade.asset_id
    if not state.resolved or asset not in state.resolved:
        # Marks and the leader's shadow book move before the group is decided (a resolved asset's don't).
        if leader.held_share_micros.get(asset):
            set_mark(leader, asset, trade.price_micros)
        else:  # nothing held: only the mark moves (set_mark's cheap case, inline: this is per trade)
            leader.mark_price_micros[asset] = trade.price_micros
        shadow_trade(leader, asset, trade.side, trade.share_micros)
    if cfg.buffering_enabled:
        _buffer_trade(state, leader, cfg, trade, out)
    else:
        _aggregate_trade(state, leader, cfg, trade, out)


def _is_duplicate(leader: LeaderState, trade_id: str, clock_ms: int, window_ms: int) -> bool:
    """True when `trade_id` was accepted within the dedup window of `clock_ms`."""
    _forget_old_trade_ids(leader, clock_ms, window_ms)
    return trade_id in leader.seen_trade_ids


def _forget_old_trade_ids(leader: LeaderState, clock_ms: int, window_ms: int) -> None:
    """Forget trade ids accepted more than the dedup window ago (memory stays bounded)."""
    order, seen = leader.seen_order, leader.seen_trade_ids
    while order and clock_ms - order[0][0] > window_ms:
        seen_at, old = order.popleft()
        leader.forgotten_through_ms = seen_at
        if seen.get(old) == seen_at:
            del seen[old]
            if leader.journal is not None:
                leader.journal.trade_ids.add(old)


# --- aggregation (buffering off) --------------------------------------------------------------------


def _single_trade_group(trade: Trade, source: SourceType, key_time_ms: int) -> Group:
    # Positional, in Group's field order: a keyword call costs more, and this is once per trade group.
    return Group(
        source,
        key_time_ms,
        trade.asset_id,
        trade.market_id,
        trade.side,
        [trade.trade_id],
        trade.notional_micros,
        trade.notional_micros * MICROS // trade.share_micros,  # the reference price
    )


def _aggregate_trade(
    state: PartitionState, leader: LeaderState, cfg: EffectiveConfig, trade: Trade, out: list[Output]
) -> None:
    """Put the trade in its aggregation window (or decide it alone) under `cfg`, the config in force."""
    width = cfg.aggregation_window_ms
    if width == 0:
        out.append(decide(state, leader, cfg, _single_trade_group(trade, "AGGREGATOR", trade.detect_time_ms)))
        return
    start = trade.detect_time_ms // width * width
    end = start + width
    if end <= state.clock_ms:  # its window already closed: the trade is a group of its own, decided now
        out.append(decide(state, leader, cfg, _single_trade_group(trade, "AGGREGATOR", start)))
        return
    key = (trade.asset_id, trade.side, start, end)
    window = leader.windows.get(key)
    if window is None:
        seq = _next_seq(state)
        window = leader.windows[key] = Window(
            seq, trade.asset_id, trade.side, start, end, trade.market_id, []
        )
        heapq.heappush(state.deadlines, (end, seq, WINDOW, leader.leader_id, key))
    window.trade_ids.append(trade.trade_id)
    window.notional_micros += trade.notional_micros
    window.share_micros += trade.share_micros


def _decide(state: PartitionState, leader: LeaderState, group: Group) -> CopyAttemptWire:
    """Decide `group` now under the leader's config in force."""
    return decide(state, leader, state.config.for_leader(leader.leader_id), group)


def _decide_window(state: PartitionState, leader: LeaderState, window: Window) -> CopyAttemptWire:
    group = Group(
        source_type="AGGREGATOR",
        key_time_ms=window.start_ms,
        asset_id=window.asset_id,
        market_id=window.market_id,
        side=window.side,
        trade_ids=window.trade_ids,  # the window is gone: its list moves to the attempt
        their_notional_micros=window.notional_micros,
        reference_price_micros=window.notional_micros * MICROS // window.share_micros,
    )
    return _decide(state, leader, group)


# --- small-trade buffering ----------------------------------------------------------------------------


def _buffer_trade(
    state: PartitionState, leader: LeaderState, cfg: EffectiveConfig, trade: Trade, out: list[Output]
) -> None:
    if (
        cfg.min_leader_trade_notional_micros > 0
        and trade.notional_micros < cfg.min_leader_trade_notional_micros
    ):
        # Filtered before buffering, so a whale's micro-trades cannot slip past the filter in a bucket.
        out.append(decide(state, leader, cfg, _single_trade_group(trade, "IMMEDIATE", trade.detect_time_ms)))
        return
    _, exposure_used, _ = exposure_for_sizing(leader, state.clock_ms, cfg)
    raw_copy = raw_target(cfg, trade.notional_micros, exposure_used)[0]
    same_side_only = cfg.netting_mode == "sameSideOnly"
    if same_side_only:
        opposite_key = (trade.asset_id, "SELL" if trade.side == "BUY" else "BUY")
        opposite = leader.buckets.get(opposite_key)
        if opposite is not None:
            out.append(_flush(state, leader, opposite_key, opposite))
    key: BucketKey = (trade.asset_id, trade.side if same_side_only else "")
    bucket = leader.buckets.get(key)
    if raw_copy >= cfg.notional_threshold_micros:
        if bucket is None:
            group = _single_trade_group(trade, "IMMEDIATE", trade.detect_time_ms)
            out.append(decide(state, leader, cfg, group))
        else:  # a large trade joins the pending bucket and flushes it at once
            _append(bucket, trade, raw_copy, state.clock_ms)
            out.append(_flush(state, leader, key, bucket))
        return
    if bucket is None:
        bucket = leader.buckets[key] = Bucket(
            seq=_next_seq(state),
            asset_id=trade.asset_id,
            side=trade.side if same_side_only else None,
            market_id=trade.market_id,
            first_seen_ms=state.clock_ms,
            last_updated_ms=state.clock_ms,
        )
        state.pending_buckets += 1
    _append(bucket, trade, raw_copy, state.clock_ms)
    if abs(bucket.net_copy_notional_micros) >= cfg.flush_min_notional_micros:
        out.append(_flush(state, leader, key, bucket))
    else:
        _schedule_bucket(state, leader, key, bucket)


def _append(bucket: Bucket, trade: Trade, copy_micros: int, clock_ms: int) -> None:
    """Add one trade's copy notional to a bucket; the reference price is weighted by abs(net) and copy."""
    old_weight = abs(bucket.net_copy_notional_micros)
    weight = old_weight + copy_micros
    if weight > 0:
        bucket.reference_price_micros = (
            old_weight * bucket.reference_price_micros + copy_micros * trade.price_micros
        ) // weight
    else:
        bucket.reference_price_micros = trade.price_micros
    sign = 1 if trade.side == "BUY" else -1
    bucket.net_copy_notional_micros += sign * copy_micros
    bucket.net_copy_share_micros += sign * (
        copy_micros * MICROS // trade.price_micros
    )  # shares_for: price ≥ 1
    bucket.leader_notional_micros += trade.notional_micros
    bucket.last_updated_ms = clock_ms
    bucket.trade_ids.append(trade.trade_id)


def _flush(state: PartitionState, leader: LeaderState, key: BucketKey, bucket: Bucket) -> CopyAttemptWire:
    """Remove a bucket and decide it: one attempt per flush, a SKIP when below buffering.minExec."""
    del leader.buckets[key]
    state.pending_buckets -= 1
    cfg = state.config.for_leader(leader.leader_id)
    net = bucket.net_copy_notional_micros
    side = bucket.side or ("BUY" if net >= 0 else "SELL")
    group = Group(
        source_type="BUFFER",
        key_time_ms=bucket.first_seen_ms,
        asset_id=bucket.asset_id,
        market_id=bucket.market_id,
        side=side,
        trade_ids=bucket.trade_ids,  # the bucket is gone: its list moves to the attempt
        their_notional_micros=bucket.leader_notional_micros,
        reference_price_micros=bucket.reference_price_micros,
        buffered_copy_micros=abs(net),
    )
    return decide(state, leader, cfg, group, below_min_exec=abs(net) < cfg.min_exec_notional_micros)


def _flush_all_buckets(state: PartitionState, out: list[Output]) -> None:
    """Flush every pending bucket in creation order (buffering was turned off)."""
    pending = sorted(
        ((b.seq, leader, key, b) for leader in state.leaders.values() for key, b in leader.buckets.items()),
        key=lambda item: item[0],
    )
    for _, leader, key, bucket in pending:
        out.append(_flush(state, leader, key, bucket))
