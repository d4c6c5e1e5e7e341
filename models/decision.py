"""Deciding a group (SPEC 6) and filling it on paper (SPEC 7) or opening its order (SPEC 13.3).

The checks run in a fixed order and the first failing one decides, with one reason code. In paper mode
an EXECUTE fills at once at the reference price, so the next group of the leader sees the new exposure;
in reports mode it opens an order whose reservation counts against the budget until it is filled.
"""

from __future__ import annotations

import hashlib
import uuid

from models.book import buy_fill, exposure_for_sizing, sell_fill
from models.config import EffectiveConfig
from models.events import CopyAttemptWire, Side, SourceType
from models.sizing import (
    LeaderExposure,
    clamp_target,
    copy_rate,
    effective_rate_bps,
    raw_target,
)
from models.state import ATTEMPT_PAPER, ATTEMPT_SKIP, LeaderState, PartitionState
from models.units import apply_bps, iso_ms, notional, shares_for
from models.venue import open_order

ENGINE_PAUSED = "ENGINE_PAUSED"
USER_DISABLED = "USER_DISABLED"
LEADER_TRADE_BELOW_MIN_NOTIONAL = "LEADER_TRADE_BELOW_MIN_NOTIONAL"
NOT_ENOUGH_POSITION_TO_SELL = "NOT_ENOUGH_POSITION_TO_SELL"
BUY_COST_PER_SHARE_TOO_HIGH = "BUY_COST_PER_SHARE_TOO_HIGH"
BUDGET_HARD_CAP_EXCEEDED = "BUDGET_HARD_CAP_EXCEEDED"
RISK_CAP_USER = "RISK_CAP_USER"
BUFFER_FLUSH_BELOW_MIN_EXEC = "BUFFER_FLUSH_BELOW_MIN_EXEC"
MARKET_RESOLVED = "MARKET_RESOLVED"

ATTEMPT_NAMESPACE = uuid.NAMESPACE_URL
"""attemptId = uuid5(NAMESPACE_URL, "EXEC_GLOBAL|{followedUserId}|{groupKey}")."""


_NAME_PREFIX = ATTEMPT_NAMESPACE.bytes + b"EXEC_GLOBAL|"


def attempt_id(leader_id: str, group_key: str) -> str:
    """The deterministic id of the attempt for `group_key`: every consumer's idempotency key.

    Equal to ``str(uuid.uuid5(ATTEMPT_NAMESPACE, name))``, formatted straight from the SHA-1 hex digest.
    """
    h = hashlib.sha1(_NAME_PREFIX + f"{leader_id}|{group_key}".encode()).hexdigest()
    # version 5 in the 13th hex digit; the RFC 4122 variant (10xx) in the 17th
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {digit: "89ab"[int(digit, 16) % 4] for digit in "0123456789abcdef"}


class Group:
    """Leader trades to be decided together (an aggregation window, one trade, or a buffer flush).

    A plain class with slots, like :class:`Checked`: compiled, mypyc builds it in a few instructions,
    where a NamedTuple's or a dataclass's constructor is interpreted Python (once per attempt)."""

    __slots__ = (
        "asset_id",
        "buffered_copy_micros",
        "key_time_ms",
        "market_id",
        "reference_price_micros",
        "side",
        "source_type",
        "their_notional_micros",
        "trade_ids",
    )

    def __init__(
        self,
        source_type: SourceType,
        key_time_ms: int,
        asset_id: str,
        market_id: str | None,
        side: Side,
        trade_ids: list[str],
        their_notional_micros: int,
        reference_price_micros: int,
        buffered_copy_micros: int = 0,
    ) -> None:
        self.source_type: SourceType = source_type
        self.key_time_ms = key_time_ms
        """The time shown in the groupKey: window start, detect time, or a bucket's first-seen time."""
        self.asset_id = asset_id
        self.market_id = market_id
        self.side: Side = side
        self.trade_ids = trade_ids
        """In arrival order; owned by the group (it becomes the attempt's tradeIds)."""
        self.their_notional_micros = their_notional_micros
        self.reference_price_micros = reference_price_micros
        self.buffered_copy_micros = buffered_copy_micros
        """BUFFER only: abs(net copy notional), an already-scaled raw target."""


def unique_group_key(leader: LeaderState, group: Group, clock_ms: int, dedup_window_ms: int) -> str:
    """The group's key, ``{u}:{asset}:{side}:{ISO}[:buffer]``, made unique for the leader.

    A key already used gets ``~2``, ``~3``, …. Used keys are remembered while the time in them is within
    the dedup window of the clock, so memory stays bounded; a group whose key time is older than what
    is remembered (a trade more than a dedup window late) gets ``~late{n}`` from a per-leader counter,
    which can never repeat.
    """
    base = f"{leader.leader_id}:{group.asset_id}:{group.side}:{iso_ms(group.key_time_ms)}"
    if group.source_type == "BUFFER":
        base += ":buffer"
    floor = clock_ms - dedup_window_ms
    if floor > leader.group_key_floor_ms:
        leader.group_key_floor_ms = floor
        times = leader.used_key_times
        while times and times[0][0] < floor:
            forgotten = times.popleft()[1]
            del leader.used_group_keys[forgotten]
            if leader.journal is not None:
                leader.journal.group_keys.add(forgotten)
    if group.key_time_ms < leader.group_key_floor_ms:
        leader.late_groups += 1
        return f"{base}~late{leader.late_groups}"
    count = leader.used_group_keys.get(base, 0) + 1
    leader.used_group_keys[base] = count
    if leader.journal is not None:
        leader.journal.group_keys.add(base)
    if count == 1:
        leader.used_key_times.append((group.key_time_ms, base))
        return base
    return f"{base}~{count}"


class Checked:
    """The outcome of the ordered checks (SPEC 6) with the sized target (SPEC 5)."""

    __slots__ = (
        "by_bankroll",
        "capped",
        "raw",
        "reason",
        "shares",
        "target",
        "to_max",
        "to_min",
        "to_r_max",
        "to_r_min",
    )

    def __init__(
        self,
        reason: str | None,
        raw: int,
        target: int,
        shares: int,
        to_r_min: bool = False,
        to_r_max: bool = False,
        to_min: bool = False,
        to_max: bool = False,
        by_bankroll: bool = False,
        capped: bool = False,
    ) -> None:
        self.reason = reason
        """The failing check's reason code; None for EXECUTE."""
        self.raw = raw
        self.target = target
        self.shares = shares
        self.to_r_min = to_r_min
        self.to_r_max = to_r_max
        self.to_min = to_min
        self.to_max = to_max
        self.by_bankroll = by_bankroll
        self.capped = capped


def check_and_size(
    cfg: EffectiveConfig,
    group: Group,
    *,
    exposure_used: int,
    current_micros: int,
    held_share_micros: int,
    equity_micros: int,
    below_min_exec: bool,
    resolved: bool,
) -> Checked:
    """Run the ordered checks of SPEC 6 on `group`, sizing its target on the way (the first failing
    check decides). `current_micros` is our exposure attributed to the leader plus its BUY
    reservations, `held_share_micros` the shares a SELL may sell (held minus SELL reservations)."""
    n = group.their_notional_micros
    if below_min_exec:
        return Checked(BUFFER_FLUSH_BELOW_MIN_EXEC, group.buffered_copy_micros, 0, 0)
    if not cfg.copy_engine_enabled:
        return Checked(ENGINE_PAUSED, 0, 0, 0)
    if not cfg.leader_enabled:
        return Checked(USER_DISABLED, 0, 0, 0)
    if resolved:  # nothing is ever bought into (or sold out of) a settled market (SPEC 13.2.3)
        return Checked(MARKET_RESOLVED, 0, 0, 0)
    if (
        group.source_type != "BUFFER"
        and cfg.min_leader_trade_notional_micros > 0
        and n < cfg.min_leader_trade_notional_micros
    ):
        return Checked(LEADER_TRADE_BELOW_MIN_NOTIONAL, 0, 0, 0)
    if group.source_type == "BUFFER":
        raw, to_r_min, to_r_max = group.buffered_copy_micros, False, False
    else:
        raw, to_r_min, to_r_max = raw_target(cfg, n, exposure_used)
    target, to_min, to_max, by_bankroll = clamp_target(cfg, raw, equity_micros)
    ref = group.reference_price_micros
    shares = shares_for(target, ref)
    reason: str | None = None
    capped = False
    is_sell = group.side == "SELL"
    if is_sell:
        if held_share_micros <= 0:
            reason = NOT_ENOUGH_POSITION_TO_SELL
        elif shares > held_share_micros:  # the venue cannot short: sell at most what we hold for u
            shares = held_share_micros
            target = notional(shares, ref)
    elif cfg.max_buy_cost_per_share_micros is not None and ref >= cfg.max_buy_cost_per_share_micros:
        reason = BUY_COST_PER_SHARE_TOO_HIGH
    if reason is None and cfg.hard_budget and not is_sell:
        headroom = cfg.budget_usdc_micros - current_micros
        if headroom <= 0:
            reason = BUDGET_HARD_CAP_EXCEEDED
        elif target > headroom:
            if headroom < cfg.min_trade_notional_micros:
                reason = BUDGET_HARD_CAP_EXCEEDED
            else:
                target, capped = headroom, True
                shares = shares_for(target, ref)
    if (
        reason is None
        and not is_sell
        and equity_micros > 0
        and current_micros + target > apply_bps(equity_micros, cfg.max_exposure_per_user_bps)
    ):
        reason = RISK_CAP_USER
    return Checked(reason, raw, target, shares, to_r_min, to_r_max, to_min, to_max, by_bankroll, capped)


def fill_on_paper(leader: LeaderState, group: Group, checked: Checked) -> None:
    """An EXECUTE fills at once, in full, at the reference price (SPEC 7); the cost basis follows."""
    # A zero reference price (a notional-0 trade) is no price: the mark stays (set_holding).
    if group.side == "SELL":
        sell_fill(leader, group.asset_id, checked.shares, checked.target, group.reference_price_micros)
    else:
        buy_fill(leader, group.asset_id, checked.shares, checked.target, group.reference_price_micros)


def remember_attempt(leader: LeaderState, attempt_id: str, code: int, clock_ms: int, window_ms: int) -> None:
    """Remember an attempt that opened no order (a SKIP, or a paper EXECUTE) for one dedup window, so a
    report for it can say why it was ignored (SPEC 13.8.4)."""
    memory, order = leader.attempt_memory, leader.attempt_order
    while order and clock_ms - order[0][0] > window_ms:
        leader.attempts_forgotten_through_ms, forgotten = order.popleft()
        del memory[forgotten]
        if leader.journal is not None:
            leader.journal.attempts.add(forgotten)
    memory[attempt_id] = code
    order.append((clock_ms, attempt_id))
    if leader.journal is not None:
        leader.journal.attempts.add(attempt_id)


def attempt_wire(
    state: PartitionState,
    leader: LeaderState,
    cfg: EffectiveConfig,
    group: Group,
    checked: Checked,
    exposure: LeaderExposure,
    current_micros: int,
    reserved_micros: int,
    equity_micros: int,
) -> CopyAttemptWire:
    """The attempt's wire dict (SPEC 3 ``copyAttempt``); claims the group's unique key."""
    clock = state.clock_ms
    group_key = unique_group_key(leader, group, clock, cfg.dedup_window_ms)
    reason = checked.reason
    n = group.their_notional_micros
    return {
        "kind": "copyAttempt",
        "attemptId": attempt_id(leader.leader_id, group_key),
        "followedUserId": leader.leader_id,
        "groupKey": group_key,
        "assetId": group.asset_id,
        "marketId": group.market_id,
        "side": group.side,
        "sourceType": group.source_type,
        "tradeIds": group.trade_ids,
        "bufferedTradeCount": len(group.trade_ids),
        "decision": "EXECUTE" if reason is None else "SKIP",
        "reasonCodes": [] if reason is None else [reason],
        "theirNotionalMicros": n,
        "theirReferencePriceMicros": group.reference_price_micros,
        "rawTargetMicros": checked.raw,
        "targetNotionalMicros": checked.target,
        "targetShareMicros": checked.shares,
        "decidedAtMs": clock,
        "sizing": {
            "sizingMode": cfg.sizing_mode,
            "budgetedDynamicEnabled": cfg.budgeted_dynamic_enabled,
            "budgetedDynamicActive": cfg.budgeted_dynamic_active,
            "budgetEnforcement": cfg.budget_enforcement,
            "budgetUsdcMicros": cfg.budget_usdc_micros,
            "leaderExposureMicros": exposure[0],
            "leaderExposureStatus": exposure[2],
            "rU": copy_rate(cfg, exposure[1]),
            "effectiveRateBps": effective_rate_bps(checked.raw, n),
            "clampedToRMin": checked.to_r_min,
            "clampedToRMax": checked.to_r_max,
            "clampedToMin": checked.to_min,
            "clampedToMax": checked.to_max,
            "clampedByBankroll": checked.by_bankroll,
            "equityMicros": equity_micros,
        },
        "budget": {
            "currentExposureMicros": current_micros,
            "headroomMicros": cfg.budget_usdc_micros - current_micros if cfg.hard_budget else None,
            "capped": checked.capped,
            "reducing": group.side == "SELL",
            "reservedMicros": reserved_micros,
        },
        "configVersion": state.config.version,
    }


def decide(
    state: PartitionState,
    leader: LeaderState,
    cfg: EffectiveConfig,
    group: Group,
    *,
    below_min_exec: bool = False,
) -> CopyAttemptWire:
    """Decide `group` now (at the partition clock), fill it on paper or open its order, and return
    the attempt.

    `below_min_exec` marks a buffer flush whose net is below buffering.minExecNotionalMicros: it is
    recorded as a SKIP at the flush, before the ordered checks.
    """
    equity = state.equity_micros()
    exposure = exposure_for_sizing(leader, state.clock_ms, cfg)
    reserved = leader.reserved_buy_micros
    current = leader.exposure_micros + reserved  # what is in flight counts (SPEC 13.3.2)
    held = leader.held_share_micros.get(group.asset_id, 0)
    if leader.reserved_sell_share_micros:
        held -= leader.reserved_sell_share_micros.get(group.asset_id, 0)
    checked = check_and_size(
        cfg,
        group,
        exposure_used=exposure[1],
        current_micros=current,
        held_share_micros=held,
        equity_micros=equity,
        below_min_exec=below_min_exec,
        resolved=bool(state.resolved) and group.asset_id in state.resolved,
    )
    attempt = attempt_wire(state, leader, cfg, group, checked, exposure, current, reserved, equity)
    if checked.reason is not None:
        remember_attempt(leader, attempt["attemptId"], ATTEMPT_SKIP, state.clock_ms, cfg.dedup_window_ms)
    elif cfg.fill_model == "paper":
        fill_on_paper(leader, group, checked)
        remember_attempt(leader, attempt["attemptId"], ATTEMPT_PAPER, state.clock_ms, cfg.dedup_window_ms)
    else:
        open_order(state, leader, attempt)
    return attempt
