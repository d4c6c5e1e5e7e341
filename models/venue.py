"""The venue loop (SPEC 13.2, 13.3): market resolutions, orders and their execution reports, timeouts.

Resolutions and reports never move the clock. Orders exist only for EXECUTEs decided in reports mode;
once they exist they reserve, take reports and time out whatever the fill model in force.

Every change of an order's state is output as an ``orderUpdated`` (its whole state after the change, with a
revision), so readers store the order as the core decided it instead of re-deriving the rules (an opened
order's update follows its attempt, an expiry's follows its ``orderExpired``).
"""

from __future__ import annotations

import heapq
import uuid

from models.book import buy_fill, release, reserve, sell_fill, shadow_part
from models.events import (
    CopyAttemptWire,
    ExecutionReport,
    ExecutionReportIgnored,
    MarketResolved,
    OrderExpired,
    OrderUpdatedWire,
    Output,
    PositionSettled,
)
from models.state import ATTEMPT_SKIP, ORDER, LeaderState, Order, PartitionState
from models.units import MICROS, notional

SETTLEMENT_NAMESPACE = uuid.NAMESPACE_URL


def settlement_id(leader_id: str, asset_id: str) -> str:
    """uuid5(NAMESPACE_URL, "SETTLE|{followedUserId}|{assetId}") (SPEC 13.5, 13.8.8)."""
    return str(uuid.uuid5(SETTLEMENT_NAMESPACE, f"SETTLE|{leader_id}|{asset_id}"))


# --- orders -------------------------------------------------------------------------------------------


def open_order(state: PartitionState, leader: LeaderState, attempt: CopyAttemptWire) -> Order:
    """An EXECUTE in reports mode opens an order (no holdings change) and queues its timeout."""
    _forget_old_orders(state, leader)
    state.next_seq += 1
    order = Order(
        seq=state.next_seq,
        attempt_id=attempt["attemptId"],
        asset_id=attempt["assetId"],
        side=attempt["side"],
        target_share_micros=attempt["targetShareMicros"],
        target_notional_micros=attempt["targetNotionalMicros"],
        opened_at_ms=state.clock_ms,
        reference_price_micros=attempt["theirReferencePriceMicros"],
    )
    leader.orders[order.attempt_id] = order
    reserve(leader, order)
    leader.book_changed = True
    schedule_order(state, leader, order)
    state.order_updates.append(order_update(state, leader, order))
    return order


def order_update(state: PartitionState, leader: LeaderState, order: Order) -> OrderUpdatedWire:
    """The order's state as of the clock: the wire dict of ``OrderUpdated``, field for field in its order."""
    return OrderUpdatedWire(
        {
            "kind": "orderUpdated",
            "followedUserId": leader.leader_id,
            "attemptId": order.attempt_id,
            "revision": order.revision,
            "assetId": order.asset_id,
            "side": order.side,
            "status": order.status,
            "closeReason": order.close_reason,
            "targetShareMicros": order.target_share_micros,
            "targetNotionalMicros": order.target_notional_micros,
            "referencePriceMicros": order.reference_price_micros,
            "filledShareMicros": order.filled_share_micros,
            "filledNotionalMicros": order.filled_notional_micros,
            "reservedMicros": order.reserved(),
            "lastReportId": order.last_report_id,
            "openedAtMs": order.opened_at_ms,
            "updatedAtMs": state.clock_ms,
            "closedAtMs": order.closed_at_ms,
            "configVersion": state.config.version,
        }
    )


def place_order_updates(state: PartitionState, out: list[Output]) -> None:
    """Put the orderUpdated of each order opened by this event right after the attempt that opened it."""
    pending = state.order_updates
    if (
        len(pending) == 1
        and out
        and type(out[-1]) is dict
        and out[-1]["attemptId"] == pending[0].wire["attemptId"]
    ):
        out.append(pending.pop())  # the common case: one order, opened by the last output
        return
    updates = {u.wire["attemptId"]: u for u in pending}
    pending.clear()
    placed: list[Output] = []
    for output in out:
        placed.append(output)
        if isinstance(output, dict):
            update = updates.pop(output["attemptId"], None)
            if update is not None:
                placed.append(update)
    placed.extend(updates.values())  # never lost, even if an attempt was emitted elsewhere
    out[:] = placed


def _close(state: PartitionState, order: Order, status: str, reason: str) -> None:
    order.open = False
    order.status = status
    order.close_reason = reason
    order.closed_at_ms = state.clock_ms


def order_deadline(state: PartitionState, order: Order) -> int:
    """openedAtMs + the system.orderTimeoutMs in force now (SPEC 13.8.5)."""
    return order.opened_at_ms + state.config.global_effective.order_timeout_ms


def schedule_order(state: PartitionState, leader: LeaderState, order: Order) -> None:
    """Queue the order's timeout unless an entry at or before it is already queued."""
    deadline = order_deadline(state, order)
    if order.scheduled_ms is None or deadline < order.scheduled_ms:
        order.scheduled_ms = deadline
        heapq.heappush(state.deadlines, (deadline, order.seq, ORDER, leader.leader_id, order.attempt_id))


def reschedule_orders(state: PartitionState) -> None:
    """The timeout may have changed: queue open orders whose deadline moved earlier."""
    for leader in state.leaders.values():
        for order in leader.orders.values():
            if order.open:
                schedule_order(state, leader, order)


def expire(
    state: PartitionState, leader: LeaderState, order: Order, reason: str = "TIMEOUT"
) -> tuple[OrderExpired, OrderUpdatedWire]:
    """Close an open order as EXPIRED, releasing its reservation: its orderExpired and orderUpdated."""
    release(leader, order)
    _close(state, order, "EXPIRED", reason)
    order.revision += 1
    leader.book_changed = True
    expired = OrderExpired(
        followed_user_id=leader.leader_id,
        attempt_id=order.attempt_id,
        asset_id=order.asset_id,
        side=order.side,
        target_share_micros=order.target_share_micros,
        filled_share_micros=order.filled_share_micros,
        filled_notional_micros=order.filled_notional_micros,
        expired_at_ms=state.clock_ms,
        config_version=state.config.version,
    )
    return expired, order_update(state, leader, order)


def _remembered(state: PartitionState, order: Order) -> bool:
    """Orders are remembered until closed **and** the clock is past openedAtMs + dedupWindowMs."""
    return order.open or state.clock_ms <= order.opened_at_ms + state.config.global_effective.dedup_window_ms


def _forget_old_orders(state: PartitionState, leader: LeaderState) -> None:
    """Forget closed orders past the dedup window, oldest first (an open order stops the sweep)."""
    orders = leader.orders
    while orders:
        oldest = orders[next(iter(orders))]
        if _remembered(state, oldest):
            return
        del orders[oldest.attempt_id]


def _find_order(state: PartitionState, leader: LeaderState | None, attempt_id: str) -> Order | None:
    if leader is None:
        return None
    order = leader.orders.get(attempt_id)
    if order is not None and not _remembered(state, order):
        del leader.orders[attempt_id]
        return None
    return order


# --- market resolution (SPEC 13.2) -----------------------------------------------------------------------


def on_resolution(state: PartitionState, event: MarketResolved, out: list[Output]) -> None:
    """Settle every leader's position in the asset, empty the shadow books, expire its open orders."""
    asset = event.asset_id
    if asset in state.resolved:
        return  # the first resolution stands, silently
    payout = event.payout_micros
    state.resolved[asset] = payout
    for leader_id in sorted(state.leaders):
        leader = state.leaders[leader_id]
        if leader.shadow_share_micros.get(asset):
            leader.shadow_share_micros[asset] = 0
            shadow_part(leader, asset)
        held = leader.held_share_micros.get(asset, 0)
        if held > 0:
            out.append(_settle(state, leader, event, held))
    open_orders = sorted(
        (order.seq, leader, order)
        for leader in state.leaders.values()
        for order in leader.orders.values()
        if order.open and order.asset_id == asset
    )
    for _, leader, order in open_orders:
        out.extend(expire(state, leader, order, "MARKET_RESOLVED"))


def _settle(state: PartitionState, leader: LeaderState, event: MarketResolved, held: int) -> PositionSettled:
    cost = leader.cost_basis_micros.get(event.asset_id, 0)
    proceeds = notional(held, event.payout_micros)
    sell_fill(leader, event.asset_id, held, proceeds, 0)  # all h shares, for the proceeds (SPEC 13.6)
    leader.mark_price_micros[event.asset_id] = event.payout_micros
    shadow_part(leader, event.asset_id)
    return PositionSettled(
        followed_user_id=leader.leader_id,
        settlement_id=settlement_id(leader.leader_id, event.asset_id),
        asset_id=event.asset_id,
        market_id=event.market_id,
        share_micros=held,
        payout_micros=event.payout_micros,
        proceeds_micros=proceeds,
        cost_basis_micros=cost,
        realized_pnl_micros=proceeds - cost,
        settled_at_ms=state.clock_ms,
        config_version=state.config.version,
    )


# --- execution reports (SPEC 13.3, 13.8.4) -------------------------------------------------------------


def on_report(state: PartitionState, report: ExecutionReport, out: list[Output]) -> None:
    """Apply a report to its order, or say once why it changed nothing."""
    leader = state.leaders.get(report.followed_user_id)
    order = _find_order(state, leader, report.attempt_id)
    if order is None or leader is None:
        reason = _stray_reason(state, leader, report)
        if reason is not None:
            out.append(_ignored(report, reason))
        return
    if report.report_id in order.report_ids:
        return  # each (attemptId, reportId) pair is processed once
    order.report_ids.add(report.report_id)
    if order.asset_id in state.resolved:
        out.append(_ignored(report, "market resolved"))
        return
    d_shares = report.filled_share_micros - order.filled_share_micros
    d_notional = report.filled_notional_micros - order.filled_notional_micros
    if d_shares < 0 or d_notional < 0:
        out.append(_ignored(report, "stale report"))
        return
    release(leader, order)
    order.filled_share_micros += d_shares
    order.filled_notional_micros += d_notional
    if d_shares or d_notional:
        price = d_notional * MICROS // d_shares if d_shares > 0 else 0
        if order.side == "BUY":
            buy_fill(leader, order.asset_id, d_shares, d_notional, price)
        else:
            sell_fill(leader, order.asset_id, d_shares, d_notional, price)
    if report.status != "PARTIAL" and order.open:
        _close(state, order, report.status, "REPORT")  # FILLED, REJECTED, CANCELLED; closed stays closed
    order.last_report_id = report.report_id
    order.revision += 1
    reserve(leader, order)
    leader.book_changed = True
    out.append(order_update(state, leader, order))


def _stray_reason(state: PartitionState, leader: LeaderState | None, report: ExecutionReport) -> str | None:
    """Why a report without an order of its leader is ignored; None when the pair was seen already."""
    pair = (report.attempt_id, report.report_id)
    window = state.config.global_effective.dedup_window_ms
    seen, order = state.stray_reports, state.stray_order
    while order and state.clock_ms - order[0][0] > window:
        _, old = order.popleft()
        if seen.get(old) is not None and state.clock_ms - seen[old] > window:
            del seen[old]
    if pair in seen:
        return None
    seen[pair] = state.clock_ms
    order.append((state.clock_ms, pair))
    others = [x for x in state.leaders.values() if x is not leader]
    if any(_find_order(state, x, report.attempt_id) is not None for x in others):
        return "attempt belongs to another leader"
    if state.config.global_effective.fill_model == "paper":
        return "fillModel is paper"
    code = None if leader is None else leader.attempt_memory.get(report.attempt_id)
    if code is not None:
        if code == ATTEMPT_SKIP:
            return "attempt was a SKIP"
        return "attempt has no order (decided in paper mode)"
    if any(report.attempt_id in x.attempt_memory for x in others):
        return "attempt belongs to another leader"
    return "unknown attempt"


def _ignored(report: ExecutionReport, reason: str) -> ExecutionReportIgnored:
    return ExecutionReportIgnored(report_id=report.report_id, attempt_id=report.attempt_id, reason=reason)
