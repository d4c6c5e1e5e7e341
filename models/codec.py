"""Partition state <-> plain JSON values, so the live worker can keep it in changelog-backed tables.

Per-leader state (one record per leader) and partition-level state (clock, config, equity, resolved
markets, the last applied input offset) are separate records. The deadline queue is not stored: it is
derived again from the leaders' open windows, buckets and orders, which carry their creation sequence
numbers, so a restored partition decides exactly as the original would have. Reservation sums are
derived from the orders, exposure sums from holdings and marks.
"""

from __future__ import annotations

import heapq
from collections import deque
from datetime import UTC, datetime
from typing import Any

from models.book import recount_shadow, reserve, set_mark
from models.config import ConfigStore
from models.engine import bucket_deadline
from models.state import BUCKET, ORDER, WINDOW, Bucket, LeaderState, Order, PartitionState, Snapshot, Window
from models.venue import order_deadline

Json = Any


def _snap(s: Snapshot | None) -> Json:
    return None if s is None else [s.bucket_time_ms, s.exposure_micros, s.equity_micros]


def _unsnap(v: Json) -> Snapshot | None:
    return None if v is None else Snapshot(v[0], v[1], v[2])


def key_time_of(group_key_base: str) -> int:
    """The time in a base groupKey: its ISO-8601 part, the last 24 characters before ``:buffer``."""
    iso = group_key_base.removesuffix(":buffer")[-24:]
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp() * 1000)


def leader_memory(leader: LeaderState) -> tuple[list[list[Json]], list[list[Json]]]:
    """The leader's dedup memory in canonical order: ([seenAt, tradeId]…, [keyTime, baseKey, count]…).

    Group keys older than the key floor are left out: they can no longer affect a decision.
    """
    seen = sorted([seen_at, trade_id] for seen_at, trade_id in leader.seen_order)
    floor = leader.group_key_floor_ms
    keys = sorted(
        [t, base, leader.used_group_keys[base]]
        for t, base in leader.used_key_times
        if t >= floor and base in leader.used_group_keys
    )
    return seen, keys


def leader_to_json(leader: LeaderState, with_memory: bool = True) -> dict[str, Json]:
    """One leader's state as JSON values (exposure sums are derived again on load).

    Without memory, the record leaves out the seen trade ids, used group keys and remembered
    order-less attempts (the live worker keeps those as one record each, see
    :class:`models.state.Journal`).
    """
    seen, keys = leader_memory(leader) if with_memory else ([], [])
    attempts = (
        [[t, a, leader.attempt_memory[a]] for t, a in leader.attempt_order if a in leader.attempt_memory]
        if with_memory
        else []
    )
    return {
        "id": leader.leader_id,
        "seen": seen,
        "keys": keys,
        "keyFloor": leader.group_key_floor_ms,
        "late": leader.late_groups,
        "windows": [
            [
                w.seq,
                w.asset_id,
                w.side,
                w.start_ms,
                w.end_ms,
                w.market_id,
                w.trade_ids,
                w.notional_micros,
                w.share_micros,
            ]
            for w in leader.windows.values()
        ],
        "buckets": [
            [
                b.seq,
                b.asset_id,
                b.side,
                b.market_id,
                b.first_seen_ms,
                b.last_updated_ms,
                b.trade_ids,
                b.net_copy_notional_micros,
                b.net_copy_share_micros,
                b.leader_notional_micros,
                b.reference_price_micros,
            ]
            for b in leader.buckets.values()
        ],
        "held": leader.held_share_micros,
        "marks": leader.mark_price_micros,
        "shadow": _snap(leader.shadow),
        "execSlice": _snap(leader.exec_slice),
        **_venue_to_json(leader),
        "attempts": attempts,
    }


def _venue_to_json(leader: LeaderState) -> dict[str, Json]:
    """The leader's venue-loop state (SPEC 13): cost basis, PnL, shadow book, orders, book tracking."""
    return {
        "cost": leader.cost_basis_micros,
        "realized": leader.realized_pnl_micros,
        "shadowBook": leader.shadow_share_micros,
        "orders": [
            [
                o.seq,
                o.attempt_id,
                o.asset_id,
                o.side,
                o.target_share_micros,
                o.target_notional_micros,
                o.opened_at_ms,
                o.filled_share_micros,
                o.filled_notional_micros,
                o.open,
                o.reference_price_micros,
                o.status,
                o.close_reason,
                o.closed_at_ms,
                o.last_report_id,
                o.revision,
                sorted(o.report_ids),
            ]
            for o in leader.orders.values()
        ],
        "hasBook": leader.has_book,
        "bookChanged": leader.book_changed,
        "lastBook": None if leader.last_book_exposure is None else list(leader.last_book_exposure),
    }


def _venue_from_json(leader: LeaderState, data: dict[str, Json]) -> None:
    """Restore what :func:`_venue_to_json` saved (absent in records written before the venue loop)."""
    leader.cost_basis_micros = dict(data.get("cost", {}))
    leader.realized_pnl_micros = data.get("realized", 0)
    leader.shadow_share_micros = dict(data.get("shadowBook", {}))
    for *fields, reports in data.get("orders", []):
        order = Order(*fields)
        order.report_ids = set(reports)
        aid = order.attempt_id
        leader.orders[aid] = order
        reserve(leader, order)
    for decided_at, aid, code in data.get("attempts", []):
        leader.attempt_order.append((decided_at, aid))
        leader.attempt_memory[aid] = code
    leader.has_book = data.get("hasBook", False)
    last = data.get("lastBook")
    leader.last_book_exposure = None if last is None else (last[0], last[1])
    leader.book_changed = data.get("bookChanged", False)  # after the marks: set_mark flags changes


def leader_from_json(data: dict[str, Json]) -> LeaderState:
    """Rebuild a leader saved with :func:`leader_to_json`."""
    leader = LeaderState(data["id"])
    for seen_at, trade_id in data["seen"]:
        leader.seen_order.append((seen_at, trade_id))
        leader.seen_trade_ids[trade_id] = seen_at
    leader.used_key_times = deque((t, base) for t, base, _ in data["keys"])
    leader.used_group_keys = {base: count for _, base, count in data["keys"]}
    leader.group_key_floor_ms = data["keyFloor"]
    leader.late_groups = data["late"]
    for seq, asset, side, start, end, market, trade_ids, notional, shares in data["windows"]:
        leader.windows[asset, side, start, end] = Window(
            seq, asset, side, start, end, market, list(trade_ids), notional, shares
        )
    for seq, asset, side, market, first, last, trade_ids, net, net_shares, leader_notional, ref in data[
        "buckets"
    ]:
        leader.buckets[asset, side or ""] = Bucket(
            seq, asset, side, market, first, last, list(trade_ids), net, net_shares, leader_notional, ref
        )
    leader.held_share_micros = dict(data["held"])
    for asset, price in data["marks"].items():
        set_mark(leader, asset, price)
    leader.shadow = _unsnap(data["shadow"])
    leader.exec_slice = _unsnap(data["execSlice"])
    _venue_from_json(leader, data)
    recount_shadow(leader)
    return leader


def partition_to_json(state: PartitionState, offset: int) -> dict[str, Json]:
    """The partition-level record: clock, config, equity, sequence, leaders, last applied input offset."""
    return {
        "clock": state.clock_ms,
        "nextSeq": state.next_seq,
        "config": state.config.to_json(),
        "equity": _snap(state.equity),
        "leaders": sorted(state.leaders),
        "offset": offset,
        "resolved": state.resolved,
        "strayReports": [
            [t, a, r] for t, (a, r) in state.stray_order if state.stray_reports.get((a, r)) == t
        ],
    }


def partition_from_json(data: dict[str, Json], leaders: dict[str, LeaderState]) -> tuple[PartitionState, int]:
    """Rebuild a partition (and its deadline queue) from its record and its leaders' records."""
    state = PartitionState(
        config=ConfigStore.from_json(data["config"]),
        clock_ms=data["clock"],
        equity=_unsnap(data["equity"]),
        leaders=leaders,
        next_seq=data["nextSeq"],
        resolved=dict(data.get("resolved", {})),
    )
    for t, attempt, report in data.get("strayReports", []):
        state.stray_order.append((t, (attempt, report)))
        state.stray_reports[attempt, report] = t
    rebuild_deadlines(state)
    return state, data["offset"]


def rebuild_deadlines(state: PartitionState) -> None:
    """Derive the deadline queue and the pending-bucket count from the open windows, buckets and orders."""
    cfg = state.config.global_effective
    heap: list[Any] = []
    pending = 0
    for leader_id, leader in state.leaders.items():
        for key, window in leader.windows.items():
            heap.append((window.end_ms, window.seq, WINDOW, leader_id, key))
        for bkey, bucket in leader.buckets.items():
            bucket.scheduled_ms = bucket_deadline(bucket, cfg)
            heap.append((bucket.scheduled_ms, bucket.seq, BUCKET, leader_id, bkey))
            pending += 1
        for order in leader.orders.values():
            if order.open:
                order.scheduled_ms = order_deadline(state, order)
                heap.append((order.scheduled_ms, order.seq, ORDER, leader_id, order.attempt_id))
    heapq.heapify(heap)
    state.deadlines = heap
    state.pending_buckets = pending
