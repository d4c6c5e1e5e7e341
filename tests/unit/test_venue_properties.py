"""Invariants of the venue loop over random tapes with resolutions and execution reports (SPEC 13.7).

Tapes are drawn interactively: the generator runs the core as it draws, so reports name real attempts
(with cumulative fills that grow, repeat, go stale or overfill) as well as unknown ones.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from models.engine import InputEvent, finish, process
from models.events import LeaderTrade, Output, PositionSettled
from models.state import PartitionState
from models.units import MICROS, notional
from tests.factories import (
    BUDGETED,
    T0,
    USD,
    global_change,
    report,
    resolution,
    restarted_run_changes_nothing,
    shadow,
    tick,
    user_change,
)
from tests.unit import strategies

ASSETS = ("a1", "a2", "a3", "a4", "a5", "a6")

system_keys = st.fixed_dictionaries(
    {"fillModel": st.sampled_from(["paper", "reports", "reports"])},
    optional={
        "aggregationWindowMs": st.sampled_from([0, 100, 250, 1_000]),
        "orderTimeoutMs": st.sampled_from([1_000, 2_000, 60_000]),
        "bookIntervalMs": st.sampled_from([0, 500, 1_000]),
        "dedupWindowMs": st.sampled_from([60_000, 86_400_000]),
        "initialBankrollMicros": st.integers(0, 10_000 * USD),
    },
)
sizing_changes = strategies.sizing_keys(
    budget_max=100 * USD,
    enforcement=["hard", "hard", "soft"],
    leaderExposureSource=st.sampled_from(["snapshot", "shadowBook", "snapshotElseShadowBook"]),
)
buffering_keys = st.fixed_dictionaries(
    {"enabled": st.booleans()},
    optional={
        "nettingMode": st.sampled_from(["sameSideOnly", "netBuySell"]),
        "notionalThresholdMicros": st.integers(0, 5 * USD),
        "minExecNotionalMicros": st.integers(0, 2 * USD),
    },
)
STEPS = ["trade"] * 6 + ["dup", "tick", "tick", "shadow", "global", "user", "resolve"] + ["report"] * 4


@st.composite
def venue_tapes(draw: st.DrawFn) -> list[InputEvent]:
    """Trades, ticks, snapshots, config changes, resolutions and reports, in a random interleaving."""
    scratch = PartitionState()
    events: list[InputEvent] = []
    attempts: list[dict[str, Any]] = []
    reported: dict[str, tuple[int, int]] = {}
    sent: list[LeaderTrade] = []
    clock = T0

    def feed(event: InputEvent) -> None:
        events.append(event)
        attempts.extend(dict(o) for o in process(scratch, event) if isinstance(o, dict))

    feed(global_change(sizing=draw(sizing_changes), system=draw(system_keys)))
    for _ in range(draw(st.integers(1, 70))):
        what = draw(st.sampled_from(STEPS))
        if what == "trade" or (what == "dup" and not sent):
            clock += draw(st.integers(0, 600))
            t = strategies.draw_trade(draw, clock, ASSETS)
            sent.append(t)
            feed(t)
        elif what == "dup":
            feed(draw(st.sampled_from(sent)))
        elif what == "tick":
            clock += draw(st.integers(0, 3_000))
            feed(tick(clock))
        elif what == "shadow":
            feed(shadow(draw(st.sampled_from(strategies.LEADERS)), draw(st.integers(0, 500 * USD)), at=clock))
        elif what == "global":
            sections: dict[str, Any] = {"sizing": {**draw(sizing_changes)}}
            if draw(st.booleans()):
                sections["system"] = draw(system_keys)
            if draw(st.booleans()):
                sections["buffering"] = draw(buffering_keys)
            if draw(st.booleans()):
                sections["sizing"].update(BUDGETED)
            feed(global_change(**sections))
        elif what == "user":
            feed(user_change(draw(st.sampled_from(strategies.LEADERS)), sizing=draw(sizing_changes)))
        elif what == "resolve":
            feed(resolution(draw(st.sampled_from(ASSETS)), draw(st.sampled_from([0, MICROS, 370_000]))))
        else:
            feed(_draw_report(draw, attempts, reported))
    return events


def _draw_report(
    draw: st.DrawFn, attempts: list[dict[str, Any]], reported: dict[str, tuple[int, int]]
) -> InputEvent:
    if not attempts or draw(st.integers(0, 9)) == 0:
        return report(f"unknown-{draw(st.integers(0, 3))}", leader=draw(st.sampled_from(strategies.LEADERS)))
    executed = [a for a in attempts[-30:] if a["decision"] == "EXECUTE"]
    prefer_executed = bool(executed) and draw(st.integers(0, 4)) > 0
    a = draw(st.sampled_from(executed if prefer_executed else attempts[-12:]))
    aid = a["attemptId"]
    shares, paid = reported.get(aid, (0, 0))
    mode = draw(st.sampled_from(["grow", "grow", "grow", "same", "stale", "over"]))
    if mode == "grow":
        extra = draw(st.integers(0, max(0, a["targetShareMicros"] - shares)))
        shares += extra
        paid += notional(extra, draw(st.integers(1, MICROS)))
    elif mode == "stale":
        shares = max(0, shares - draw(st.integers(1, USD)))
    elif mode == "over":
        shares += a["targetShareMicros"] + draw(st.integers(0, 5 * USD))
        paid += draw(st.integers(0, 10 * USD))
    reported[aid] = (max(shares, reported.get(aid, (0, 0))[0]), max(paid, reported.get(aid, (0, 0))[1]))
    leader = a["followedUserId"] if draw(st.integers(0, 9)) else draw(st.sampled_from(strategies.LEADERS))
    return report(
        aid,
        draw(st.sampled_from(["PARTIAL", "PARTIAL", "FILLED", "REJECTED", "CANCELLED"])),
        shares,
        paid,
        leader=leader,
        report_id=f"r{draw(st.integers(0, 5))}",
    )


class Ledger:
    """Cash paid and received per leader, counted from the outside (outputs and order fills)."""

    def __init__(self) -> None:
        self.paid: Counter[str] = Counter()
        self.received: Counter[str] = Counter()

    def observe(
        self, state: PartitionState, before: dict[str, tuple[str, str, int]], out: list[Output]
    ) -> None:
        for o in out:
            if isinstance(o, dict) and o["decision"] == "EXECUTE":
                leader = state.leaders[o["followedUserId"]]
                if o["attemptId"] not in leader.orders:  # filled on paper
                    side = self.paid if o["side"] == "BUY" else self.received
                    side[o["followedUserId"]] += o["targetNotionalMicros"]
            elif isinstance(o, PositionSettled):
                self.received[o.followed_user_id] += o.proceeds_micros
        for leader_id, leader in state.leaders.items():
            for aid, order in leader.orders.items():
                _, _, was = before.get(aid, (leader_id, order.side, 0))
                delta = order.filled_notional_micros - was
                if delta:
                    (self.paid if order.side == "BUY" else self.received)[leader_id] += delta


def order_fills(state: PartitionState) -> dict[str, tuple[str, str, int]]:
    return {
        aid: (leader_id, order.side, order.filled_notional_micros)
        for leader_id, leader in state.leaders.items()
        for aid, order in leader.orders.items()
    }


def check_books(state: PartitionState, ledger: Ledger) -> None:
    for leader_id, leader in state.leaders.items():
        assert all(h >= 0 for h in leader.held_share_micros.values()), "a holding went negative"
        assert leader.exposure_micros == sum(
            notional(h, leader.mark_price_micros.get(a, 0)) for a, h in leader.held_share_micros.items()
        )
        assert leader.shadow_exposure_micros == sum(
            notional(s, leader.mark_price_micros.get(a, 0)) for a, s in leader.shadow_share_micros.items()
        ), "the running E_shadow differs from its sum"
        open_orders = [o for o in leader.orders.values() if o.open]
        assert leader.reserved_buy_micros == sum(o.reserved() for o in open_orders if o.side == "BUY")
        sells = Counter[str]()
        for o in open_orders:
            if o.side == "SELL" and o.reserved():
                sells[o.asset_id] += o.reserved()
        assert leader.reserved_sell_share_micros == dict(sells)
        # SPEC 13.7: a resolved asset's shares leave every leader's exposure, and nothing brings them back
        assert all(leader.held_share_micros.get(asset, 0) == 0 for asset in state.resolved)
        cost = sum(leader.cost_basis_micros.values())
        unrealized = leader.exposure_micros - cost
        # SPEC 13.7: Σ realized + unrealized = (value now) − (cash paid in) + (cash received), exactly
        value = leader.exposure_micros
        assert (
            leader.realized_pnl_micros + unrealized
            == value - ledger.paid[leader_id] + ledger.received[leader_id]
        )


def run_checked(events: list[InputEvent]) -> tuple[PartitionState, list[Output]]:
    state, ledger, outputs = PartitionState(), Ledger(), []
    for event in [*events, None]:
        before = order_fills(state)
        out = finish(state) if event is None else process(state, event)
        ledger.observe(state, before, out)
        check_books(state, ledger)
        outputs.extend(out)
    return state, outputs


@strategies.PROPERTY_SETTINGS
@given(venue_tapes())
def test_conservation_holds_with_resolutions_and_reports(events: list[InputEvent]) -> None:
    _, outputs = run_checked(events)
    strategies.assert_conservation(events, [o for o in outputs if isinstance(o, dict)])


@strategies.PROPERTY_SETTINGS
@given(venue_tapes())
def test_hard_with_reservations_is_never_overshot(events: list[InputEvent]) -> None:
    _, outputs = run_checked(events)
    for a in (o for o in outputs if isinstance(o, dict)):
        sizing, budget = a["sizing"], a["budget"]
        assert 0 <= budget["reservedMicros"] <= budget["currentExposureMicros"]
        if strategies.hard_budget_binds(a):
            # currentExposure already includes the reservations: exposure + reserved + target ≤ B_u
            assert budget["currentExposureMicros"] + a["targetNotionalMicros"] <= sizing["budgetUsdcMicros"]


@strategies.PROPERTY_SETTINGS
@given(venue_tapes())
def test_holdings_never_go_negative_and_the_pnl_identity_holds_after_every_event(
    events: list[InputEvent],
) -> None:
    run_checked(events)  # checks after every event


@strategies.PROPERTY_SETTINGS
@given(venue_tapes(), st.integers(0, 80))
def test_a_restored_partition_continues_exactly_as_an_uninterrupted_one(
    events: list[InputEvent], cut: int
) -> None:
    restarted_run_changes_nothing(events, cut)
