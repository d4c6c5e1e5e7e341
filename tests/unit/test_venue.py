"""The venue loop (SPEC 13): resolutions, orders and execution reports, the shadow book, cost basis and
PnL, and the leaderBook output. One test (or a few) per numbered rule of 13.2-13.6 and per case of 13.8."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from models.book import shadow_exposure
from models.events import (
    ConfigChange,
    ExecutionReportIgnored,
    LeaderBook,
    LeaderBookWire,
    OrderExpired,
    Output,
    PortfolioSnapshot,
    PositionSettled,
)
from models.state import LeaderState
from streams.serde import encode
from tests.factories import (
    BUDGETED,
    T0,
    USD,
    Driver,
    global_change,
    report,
    resolution,
    shadow,
    tick,
    trade,
    user_change,
)

# A default trade: 100 USD at 0.5 (200 shares) copies 1% = 1 USD, raised to the 5 USD minimum: 10 shares.
TARGET = 5 * USD
SHARES = 10 * USD


def system(**keys: Any) -> ConfigChange:
    """A GLOBAL system section (it replaces the stored one): every group decided at once, plus `keys`."""
    return global_change(system={"aggregationWindowMs": 0, **keys})


PAPER = system
REPORTS = {"fillModel": "reports"}


def kinds(outputs: list[Output]) -> list[str]:
    return [o["kind"] if isinstance(o, dict) else o.kind for o in outputs]


def u(driver: Driver, leader_id: str = "u1") -> LeaderState:
    return driver.state.leaders[leader_id]


def only_attempt(outputs: list[Output]) -> dict[str, Any]:
    (attempt,) = [o for o in outputs if isinstance(o, dict)]
    return dict(attempt)


def ignored(outputs: list[Output]) -> list[str]:
    return [o.reason for o in outputs if isinstance(o, ExecutionReportIgnored)]


# --- 13.2 market resolution -------------------------------------------------------------------------------


def test_a_resolution_settles_the_position_at_the_payout_and_realizes_its_cost() -> None:
    driver = Driver(system(), trade(at=T0))
    assert driver.attempts[0]["decision"] == "EXECUTE"

    (settled,) = driver.feed(resolution("a1", USD, market="m9", at=T0 + 10**9))

    assert isinstance(settled, PositionSettled)
    assert settled.settlement_id == str(uuid.uuid5(uuid.NAMESPACE_URL, "SETTLE|u1|a1"))
    assert (settled.followed_user_id, settled.asset_id, settled.market_id) == ("u1", "a1", "m9")
    assert settled.share_micros == SHARES
    assert settled.payout_micros == USD
    assert settled.proceeds_micros == 10 * USD
    assert settled.cost_basis_micros == TARGET
    assert settled.realized_pnl_micros == 5 * USD
    assert settled.settled_at_ms == T0  # the clock; resolutions never move it
    assert settled.config_version == driver.state.config.version
    leader = u(driver)
    assert leader.held_share_micros["a1"] == 0
    assert leader.exposure_micros == 0
    assert leader.mark_price_micros["a1"] == USD
    assert leader.cost_basis_micros["a1"] == 0
    assert leader.realized_pnl_micros == 5 * USD
    assert driver.state.clock_ms == T0


def test_a_lost_market_realizes_the_whole_cost_as_a_loss() -> None:
    driver = Driver(system(), trade(at=T0))
    (settled,) = driver.feed(resolution("a1", 0))
    assert isinstance(settled, PositionSettled)
    assert (settled.proceeds_micros, settled.realized_pnl_micros) == (0, -TARGET)


def test_a_settlement_frees_the_hard_budget_at_once() -> None:
    # given a HARD budget of 5 USD filled by a1
    budget = global_change(sizing={**BUDGETED, "budgetUsdcMicros": TARGET}, system={"aggregationWindowMs": 0})
    driver = Driver(budget, shadow(exposure=100_000 * USD), trade(at=T0), trade(at=T0 + 1, asset="a2"))
    assert [a["decision"] for a in driver.attempts] == ["EXECUTE", "SKIP"]
    assert driver.attempts[1]["reasonCodes"] == ["BUDGET_HARD_CAP_EXCEEDED"]

    # when a1 resolves, its shares leave the exposure in the same step
    driver.feed(resolution("a1", USD))
    assert u(driver).exposure_micros == 0

    # then the next BUY has the whole budget again
    again = only_attempt(driver.feed(trade(at=T0 + 2, asset="a2")))
    assert again["decision"] == "EXECUTE"
    assert again["budget"]["currentExposureMicros"] == 0
    assert again["budget"]["headroomMicros"] == TARGET


def test_positions_settle_in_leader_id_order_then_open_orders_expire_in_opening_order() -> None:
    # given u1 and u2 holding a1 on paper, then an open order each (u2's first), then back to paper
    driver = Driver(system(), trade("u2", at=T0), trade("u1", at=T0 + 1))
    driver.feed(system(**REPORTS), trade("u2", at=T0 + 2), trade("u1", at=T0 + 3), system())
    order_of = {a["followedUserId"]: a["attemptId"] for a in driver.attempts[2:]}

    out = driver.feed(resolution("a1", 400_000))

    # then every positionSettled first (leader-id order), then every open order on the asset expires in
    # the order the orders were opened, whatever the fill model in force (SPEC 13.8.1)
    assert kinds(out) == ["positionSettled", "positionSettled", "orderExpired", "orderExpired"]
    assert [o.followed_user_id for o in out if isinstance(o, PositionSettled)] == ["u1", "u2"]
    expired = [o for o in out if isinstance(o, OrderExpired)]
    assert [o.attempt_id for o in expired] == [order_of["u2"], order_of["u1"]]
    assert all(o.expired_at_ms == T0 + 3 and o.filled_share_micros == 0 for o in expired)
    assert u(driver, "u1").reserved_buy_micros == u(driver, "u2").reserved_buy_micros == 0


def test_a_later_resolution_of_a_resolved_asset_is_ignored_silently() -> None:
    driver = Driver(system(), trade(at=T0), resolution("a1", USD))
    assert driver.feed(resolution("a1", 0)) == []
    assert driver.state.resolved == {"a1": USD}
    assert u(driver).realized_pnl_micros == 5 * USD


def test_a_trade_of_a_resolved_asset_is_accepted_and_skips_market_resolved() -> None:
    driver = Driver(system(), trade(at=T0), resolution("a1", USD))
    shadow_before = dict(u(driver).shadow_share_micros)

    late = trade(at=T0 + 5, price=300_000, trade_id="late")
    attempt = only_attempt(driver.feed(late))

    assert attempt["decision"] == "SKIP"
    assert attempt["reasonCodes"] == ["MARKET_RESOLVED"]
    assert attempt["tradeIds"] == ["late"]  # conservation
    assert (attempt["rawTargetMicros"], attempt["targetNotionalMicros"], attempt["targetShareMicros"]) == (
        0,
        0,
        0,
    )
    assert not any(v for k, v in attempt["sizing"].items() if k.startswith("clamped"))
    assert driver.state.clock_ms == T0 + 5  # the clock still moves
    assert u(driver).mark_price_micros["a1"] == USD  # the mark does not
    assert u(driver).shadow_share_micros == shadow_before
    assert driver.feed(late) == []  # dedup still applies
    sell = only_attempt(driver.feed(trade(side="SELL", at=T0 + 6)))
    assert sell["reasonCodes"] == ["MARKET_RESOLVED"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (system(copyEngineEnabled=False), "ENGINE_PAUSED"),
        (user_change("u1", leader={"enabled": False}), "USER_DISABLED"),
    ],
)
def test_market_resolved_is_checked_right_after_user_disabled(change: ConfigChange, reason: str) -> None:
    driver = Driver(system(), resolution("a1", USD), change)
    assert only_attempt(driver.feed(trade(at=T0)))["reasonCodes"] == [reason]


def test_a_group_open_when_its_market_resolves_skips_market_resolved() -> None:
    driver = Driver(trade(at=T0))  # a 250 ms window, still open
    assert driver.feed(resolution("a1", USD)) == []
    assert only_attempt(driver.feed(tick(T0 + 250)))["reasonCodes"] == ["MARKET_RESOLVED"]


def test_buffered_trades_of_a_resolved_asset_net_as_usual_and_below_min_exec_keeps_precedence() -> None:
    # 5 USD copies 0.05 USD (< minExec 0.1 USD); 20 USD copies 0.2 USD (small, above minExec)
    driver = Driver(
        global_change(buffering={"enabled": True}),
        resolution("a1", USD),
        resolution("a2", USD),
        trade(at=T0, notional=5 * USD, asset="a1"),
        trade(at=T0, notional=20 * USD, asset="a2"),
    )
    assert driver.attempts == []  # both buffered
    driver.feed(tick(T0 + 3_000))
    reasons = {a["assetId"]: a["reasonCodes"] for a in driver.attempts}
    assert reasons == {"a1": ["BUFFER_FLUSH_BELOW_MIN_EXEC"], "a2": ["MARKET_RESOLVED"]}
    assert all(a["sourceType"] == "BUFFER" for a in driver.attempts)


def test_a_resolution_empties_every_leaders_shadow_book_held_or_not() -> None:
    driver = Driver(trade("u1", at=T0), trade("u2", at=T0, asset="a2"))  # windows open: nothing held
    assert shadow_exposure(u(driver)) == 100 * USD
    driver.feed(resolution("a1", USD))
    assert u(driver).shadow_share_micros["a1"] == 0
    assert shadow_exposure(u(driver)) == 0
    assert shadow_exposure(u(driver, "u2")) == 100 * USD


# --- 13.3 execution reports ------------------------------------------------------------------------------


def test_in_paper_mode_a_report_changes_nothing_and_is_reported_once() -> None:
    driver = Driver(system(), trade(at=T0))
    held = dict(u(driver).held_share_micros)
    r = report(driver.attempts[0]["attemptId"], "FILLED", 3 * USD, USD)
    assert ignored(driver.feed(r)) == ["fillModel is paper"]
    assert driver.feed(r) == []  # each (attemptId, reportId) once
    assert u(driver).held_share_micros == held


def test_an_execute_in_reports_mode_opens_an_order_and_changes_no_holdings() -> None:
    driver = Driver(system(**REPORTS), trade(at=T0))
    attempt = driver.attempts[0]
    assert attempt["decision"] == "EXECUTE"
    leader = u(driver)
    assert leader.held_share_micros.get("a1", 0) == 0
    assert leader.exposure_micros == 0
    order = leader.orders[attempt["attemptId"]]
    assert (order.asset_id, order.side, order.opened_at_ms, order.open) == ("a1", "BUY", T0, True)
    assert (order.target_share_micros, order.target_notional_micros) == (SHARES, TARGET)
    assert (order.filled_share_micros, order.filled_notional_micros) == (0, 0)
    assert leader.reserved_buy_micros == TARGET


def test_open_buy_reservations_count_against_the_hard_budget() -> None:
    budget = global_change(
        sizing={**BUDGETED, "budgetUsdcMicros": 2 * TARGET}, system={"aggregationWindowMs": 0, **REPORTS}
    )
    driver = Driver(
        budget,
        shadow(exposure=100_000 * USD),
        trade(at=T0),
        trade(at=T0 + 1, asset="a2"),
        trade(at=T0 + 2, asset="a3"),
    )
    budgets = [a["budget"] for a in driver.attempts]
    assert [a["decision"] for a in driver.attempts] == ["EXECUTE", "EXECUTE", "SKIP"]
    assert driver.attempts[2]["reasonCodes"] == ["BUDGET_HARD_CAP_EXCEEDED"]
    assert [b["reservedMicros"] for b in budgets] == [0, TARGET, 2 * TARGET]
    assert [b["currentExposureMicros"] for b in budgets] == [0, TARGET, 2 * TARGET]
    assert [b["headroomMicros"] for b in budgets] == [2 * TARGET, TARGET, 0]


def test_open_buy_reservations_count_against_the_risk_cap() -> None:
    # equity 100 USD, 10% risk cap = 10 USD: two 5 USD orders fit, a third does not
    driver = Driver(
        global_change(guardrails={"maxExposurePerUserBps": 1_000}),
        system(**REPORTS, initialBankrollMicros=100 * USD),
        trade(at=T0),
        trade(at=T0 + 1, asset="a2"),
        trade(at=T0 + 2, asset="a3"),
    )
    assert [a["reasonCodes"] for a in driver.attempts] == [[], [], ["RISK_CAP_USER"]]


def test_open_sell_reservations_reduce_the_shares_a_sell_may_sell() -> None:
    driver = Driver(system(), trade(at=T0))  # 10 shares held on paper
    driver.feed(system(**REPORTS))
    sell = only_attempt(driver.feed(trade(side="SELL", at=T0 + 1)))
    assert sell["decision"] == "EXECUTE"
    assert u(driver).reserved_sell_share_micros == {"a1": SHARES}
    blocked = only_attempt(driver.feed(trade(side="SELL", at=T0 + 2)))
    assert blocked["reasonCodes"] == ["NOT_ENOUGH_POSITION_TO_SELL"]
    # when the first sell is rejected, its shares are free again
    driver.feed(report(sell["attemptId"], "REJECTED"))
    assert u(driver).reserved_sell_share_micros == {}
    assert only_attempt(driver.feed(trade(side="SELL", at=T0 + 3)))["decision"] == "EXECUTE"


def test_a_partial_report_fills_at_its_price_and_keeps_the_order_open() -> None:
    driver = Driver(system(**REPORTS), trade(at=T0))
    attempt_id = driver.attempts[0]["attemptId"]

    assert driver.feed(report(attempt_id, "PARTIAL", 4 * USD, 2_400_000)) == []

    leader = u(driver)
    assert leader.held_share_micros["a1"] == 4 * USD
    assert leader.mark_price_micros["a1"] == 600_000  # floor(Δnotional × 10^6 / Δshares)
    assert leader.cost_basis_micros["a1"] == 2_400_000
    assert leader.exposure_micros == 2_400_000
    assert leader.reserved_buy_micros == TARGET - 2_400_000
    assert leader.orders[attempt_id].open
    nxt = only_attempt(driver.feed(trade(at=T0 + 1, asset="a2")))
    assert nxt["budget"]["reservedMicros"] == 2_600_000
    assert nxt["budget"]["currentExposureMicros"] == 2_400_000 + 2_600_000

    # and FILLED applies the rest at the price of the rest, closing the order
    driver.feed(report(attempt_id, "FILLED", SHARES, 5_500_000))
    assert leader.held_share_micros["a1"] == SHARES
    assert leader.mark_price_micros["a1"] == 3_100_000 * USD // (6 * USD)
    assert leader.cost_basis_micros["a1"] == 5_500_000
    assert not leader.orders[attempt_id].open
    assert leader.reserved_buy_micros == TARGET  # only a2's order is left


@pytest.mark.parametrize("status", ["REJECTED", "CANCELLED"])
def test_rejected_and_cancelled_close_the_order_after_applying_their_fills(status: str) -> None:
    driver = Driver(system(**REPORTS), trade(at=T0))
    attempt_id = driver.attempts[0]["attemptId"]
    assert driver.feed(report(attempt_id, status, 2 * USD, USD)) == []
    leader = u(driver)
    assert leader.held_share_micros["a1"] == 2 * USD
    assert not leader.orders[attempt_id].open
    assert leader.reserved_buy_micros == 0


@pytest.mark.parametrize(("shares", "notional"), [(3 * USD, 2_400_000), (4 * USD, 2_000_000)])
def test_a_stale_report_changes_nothing(shares: int, notional: int) -> None:
    driver = Driver(system(**REPORTS), trade(at=T0))
    attempt_id = driver.attempts[0]["attemptId"]
    driver.feed(report(attempt_id, "PARTIAL", 4 * USD, 2_400_000))
    assert ignored(driver.feed(report(attempt_id, "FILLED", shares, notional))) == ["stale report"]
    assert u(driver).held_share_micros["a1"] == 4 * USD
    assert u(driver).orders[attempt_id].open


def test_a_report_without_new_fills_applies_and_may_close_the_order() -> None:
    driver = Driver(system(**REPORTS), trade(at=T0))
    attempt_id = driver.attempts[0]["attemptId"]
    driver.feed(report(attempt_id, "PARTIAL", 4 * USD, 2_400_000))
    assert driver.feed(report(attempt_id, "FILLED", 4 * USD, 2_400_000)) == []
    assert not u(driver).orders[attempt_id].open
    assert u(driver).reserved_buy_micros == 0


def test_a_repeated_report_is_silent_and_applies_once() -> None:
    driver = Driver(system(**REPORTS), trade(at=T0))
    r = report(driver.attempts[0]["attemptId"], "PARTIAL", 4 * USD, 2 * USD)
    driver.feed(r)
    assert driver.feed(r) == []
    assert u(driver).held_share_micros["a1"] == 4 * USD


def test_a_report_for_a_closed_order_still_applies_its_fills() -> None:
    driver = Driver(system(**REPORTS, orderTimeoutMs=1_000), trade(at=T0))
    attempt_id = driver.attempts[0]["attemptId"]
    assert kinds(driver.feed(tick(T0 + 1_000))) == ["orderExpired"]
    assert driver.feed(report(attempt_id, "FILLED", SHARES, TARGET)) == []
    assert u(driver).held_share_micros["a1"] == SHARES
    assert not u(driver).orders[attempt_id].open
    assert u(driver).reserved_buy_micros == 0


def test_a_report_for_a_resolved_market_changes_nothing() -> None:
    driver = Driver(system(**REPORTS), trade(at=T0))
    attempt_id = driver.attempts[0]["attemptId"]
    assert kinds(driver.feed(resolution("a1", USD))) == ["orderExpired"]  # nothing held: no settlement
    assert ignored(driver.feed(report(attempt_id, "FILLED", SHARES, TARGET))) == ["market resolved"]
    assert u(driver).held_share_micros.get("a1", 0) == 0


def test_a_report_for_an_unknown_attempt_says_so_once() -> None:
    driver = Driver(system(**REPORTS), trade(at=T0))
    r = report("no-such-attempt")
    assert ignored(driver.feed(r)) == ["unknown attempt"]
    assert driver.feed(r) == []


def test_a_report_for_a_skip_says_so() -> None:
    driver = Driver(system(**REPORTS), trade(side="SELL", at=T0))  # nothing held: SKIP
    assert ignored(driver.feed(report(driver.attempts[0]["attemptId"]))) == ["attempt was a SKIP"]


def test_a_report_for_an_attempt_decided_in_paper_mode_says_it_has_no_order() -> None:
    driver = Driver(system(), trade(at=T0), system(**REPORTS))
    reasons = ignored(driver.feed(report(driver.attempts[0]["attemptId"])))
    assert reasons == ["attempt has no order (decided in paper mode)"]


@pytest.mark.parametrize("side", ["BUY", "SELL"])  # an order (EXECUTE) or a remembered SKIP of u1
def test_a_report_naming_another_leader_says_so(side: str) -> None:
    driver = Driver(system(**REPORTS), trade("u1", side=side, at=T0), trade("u2", at=T0, asset="a9"))
    r = report(driver.attempts[0]["attemptId"], "FILLED", 1, 1, leader="u2")
    assert ignored(driver.feed(r)) == ["attempt belongs to another leader"]
    assert u(driver, "u2").held_share_micros.get("a1", 0) == 0


def test_an_order_of_another_leader_is_found_even_in_paper_mode() -> None:
    driver = Driver(system(**REPORTS), trade("u1", at=T0), system())
    r = report(driver.attempts[0]["attemptId"], leader="u2")
    assert ignored(driver.feed(r)) == ["attempt belongs to another leader"]
    assert ignored(driver.feed(report("unknown", leader="u2"))) == ["fillModel is paper"]


# --- 13.3.4 / 13.8.5 timeouts ----------------------------------------------------------------------------


def test_an_open_order_expires_when_the_clock_reaches_its_timeout() -> None:
    driver = Driver(system(**REPORTS, orderTimeoutMs=1_000), trade(at=T0))
    attempt_id = driver.attempts[0]["attemptId"]
    driver.feed(report(attempt_id, "PARTIAL", 2 * USD, USD))
    assert driver.feed(tick(T0 + 999)) == []
    (expired,) = driver.feed(tick(T0 + 1_000))
    assert expired == OrderExpired(
        followed_user_id="u1",
        attempt_id=attempt_id,
        asset_id="a1",
        side="BUY",
        target_share_micros=SHARES,
        filled_share_micros=2 * USD,
        filled_notional_micros=USD,
        expired_at_ms=T0 + 1_000,
        config_version=driver.state.config.version,
    )
    assert u(driver).reserved_buy_micros == 0


def test_timeouts_windows_and_buckets_share_one_creation_sequence_for_ties() -> None:
    # an order due at T0+1000, then a window [T0, T0+1000) opened after it: both due at T0+1000
    driver = Driver(system(**REPORTS, orderTimeoutMs=1_000), trade(at=T0))
    driver.feed(
        system(**REPORTS, orderTimeoutMs=1_000, aggregationWindowMs=1_000), trade(at=T0 + 1, asset="a2")
    )
    out = driver.feed(tick(T0 + 5_000))
    assert kinds(out) == ["orderExpired", "copyAttempt"]
    assert only_attempt(out)["decidedAtMs"] == T0 + 5_000


def test_a_timeout_earlier_than_a_window_end_is_decided_first() -> None:
    driver = Driver(system(**REPORTS, orderTimeoutMs=1_000, aggregationWindowMs=60_000), trade(at=T0 + 1))
    driver.feed(system(**REPORTS, orderTimeoutMs=1_000))
    driver.feed(trade(at=T0 + 2, asset="a2"))  # decided at once: an order due at T0+1002
    out = driver.feed(tick(T0 + 60_000))
    assert kinds(out)[:2] == ["orderExpired", "copyAttempt"]  # T0+1002 before the window end T0+60000


def test_a_shorter_timeout_applies_to_orders_already_open() -> None:
    driver = Driver(system(**REPORTS), trade(at=T0))  # default timeout 60 s
    driver.feed(system(**REPORTS, orderTimeoutMs=1_000))
    (expired,) = driver.feed(tick(T0 + 1_500))
    assert isinstance(expired, OrderExpired)
    assert expired.expired_at_ms == T0 + 1_500


def test_a_longer_timeout_applies_to_orders_already_open() -> None:
    driver = Driver(system(**REPORTS, orderTimeoutMs=1_000), trade(at=T0))
    driver.feed(system(**REPORTS, orderTimeoutMs=5_000))
    assert driver.feed(tick(T0 + 1_500)) == []
    assert kinds(driver.feed(tick(T0 + 5_000))) == ["orderExpired"]


def test_open_orders_keep_reserving_taking_reports_and_timing_out_after_a_switch_to_paper() -> None:
    driver = Driver(system(**REPORTS, orderTimeoutMs=1_000), trade(at=T0), system(orderTimeoutMs=1_000))
    attempt_id = driver.attempts[0]["attemptId"]
    paper = only_attempt(driver.feed(trade(at=T0 + 1, asset="a2")))
    assert paper["budget"]["reservedMicros"] == TARGET
    assert u(driver).held_share_micros["a2"] == SHARES  # filled on paper
    driver.feed(report(attempt_id, "PARTIAL", USD, 500_000))
    assert u(driver).held_share_micros["a1"] == USD
    assert kinds(driver.feed(tick(T0 + 1_000))) == ["orderExpired"]


def test_a_closed_order_is_forgotten_after_the_dedup_window_an_open_one_never() -> None:
    driver = Driver(
        system(**REPORTS, dedupWindowMs=60_000, orderTimeoutMs=86_400_000),
        trade(at=T0),
        trade(at=T0, asset="a2"),
    )
    closed, still_open = (a["attemptId"] for a in driver.attempts)
    driver.feed(report(closed, "FILLED", SHARES, TARGET))
    driver.feed(tick(T0 + 60_000))
    assert driver.feed(report(closed, "FILLED", SHARES, TARGET)) == []  # still remembered
    driver.feed(tick(T0 + 60_001))
    assert ignored(driver.feed(report(closed, "FILLED", SHARES, TARGET))) == ["unknown attempt"]
    assert driver.feed(report(still_open, "PARTIAL", USD, 500_000)) == []
    assert u(driver).held_share_micros["a2"] == USD


# --- 13.4 the shadow book --------------------------------------------------------------------------------


def test_the_shadow_book_follows_the_leaders_trades_and_never_goes_below_zero() -> None:
    driver = Driver(trade(at=T0, notional=100 * USD))
    assert u(driver).shadow_share_micros == {"a1": 200 * USD}
    assert shadow_exposure(u(driver)) == 100 * USD
    driver.feed(trade(side="SELL", at=T0 + 1, notional=150 * USD))  # 300 shares sold of 200
    assert u(driver).shadow_share_micros == {"a1": 0}


def test_shadow_book_sizing_uses_the_derived_exposure_including_the_groups_own_trade() -> None:
    sizing = {
        **BUDGETED,
        "budgetUsdcMicros": 50 * USD,
        "budgetRMaxBps": 10_000,
        "leaderExposureSource": "shadowBook",
    }
    attempt = only_attempt(
        Driver(global_change(sizing=sizing, system={"aggregationWindowMs": 0}), trade(at=T0)).outputs
    )
    # E_shadow = 200 shares × 0.5 = 100 USD; raw = N × B / E = 100 × 50 / 100 = 50 USD
    assert attempt["sizing"]["leaderExposureMicros"] == 100 * USD
    assert attempt["sizing"]["leaderExposureStatus"] == "derived"
    assert attempt["rawTargetMicros"] == 50 * USD
    assert attempt["sizing"]["rU"] == 0.5


def test_snapshot_else_shadow_book_falls_back_when_the_snapshot_is_missing_or_stale() -> None:
    cfg = global_change(
        sizing={"leaderExposureSource": "snapshotElseShadowBook"}, system={"aggregationWindowMs": 0}
    )
    driver = Driver(cfg, trade(at=T0))
    missing = driver.attempts[-1]["sizing"]
    assert (missing["leaderExposureStatus"], missing["leaderExposureMicros"]) == ("derived", 100 * USD)
    driver.feed(shadow(exposure=1_000 * USD, at=T0), trade(at=T0 + 1))
    fresh = driver.attempts[-1]["sizing"]
    assert (fresh["leaderExposureStatus"], fresh["leaderExposureMicros"]) == ("fresh", 1_000 * USD)
    driver.feed(trade(at=T0 + 3_600_001 + 1))
    stale = driver.attempts[-1]["sizing"]
    assert (stale["leaderExposureStatus"], stale["leaderExposureMicros"]) == ("derived", 300 * USD)


def test_skipped_trades_move_the_shadow_book_duplicates_do_not() -> None:
    t = trade(at=T0)
    driver = Driver(system(copyEngineEnabled=False), t)
    assert driver.attempts[0]["reasonCodes"] == ["ENGINE_PAUSED"]
    assert u(driver).shadow_share_micros == {"a1": 200 * USD}
    driver.feed(t)
    assert u(driver).shadow_share_micros == {"a1": 200 * USD}


def test_our_fill_prices_move_the_shadow_exposure() -> None:
    driver = Driver(system(**REPORTS), trade(at=T0))
    assert shadow_exposure(u(driver)) == 100 * USD
    driver.feed(report(driver.attempts[0]["attemptId"], "PARTIAL", 4 * USD, 2_400_000))  # marks a1 at 0.6
    assert shadow_exposure(u(driver)) == 120 * USD


# --- 13.5 / 13.8.1-2 leaderBook ---------------------------------------------------------------------------


def books(outputs: list[Output]) -> list[LeaderBook]:
    """The leaderBooks among `outputs`, checked against the wire contract."""
    return [LeaderBook.model_validate(o.wire) for o in outputs if isinstance(o, LeaderBookWire)]


def test_a_book_comes_after_the_due_decisions_and_before_the_event_that_crossed_the_boundary() -> None:
    driver = Driver(trade(at=T0 + 100), books=True)  # window [T0, T0+250) open
    out = driver.feed(trade(at=T0 + 1_005, asset="a2", price=400_000))
    assert kinds(out) == ["copyAttempt", "leaderBook"]
    (book,) = books(out)
    assert book.as_of_ms == T0 + 1_005
    assert book.exposure_micros == TARGET
    assert book.cost_basis_micros == TARGET
    assert (book.realized_pnl_micros, book.unrealized_pnl_micros, book.reserved_micros) == (0, 0, 0)
    assert [
        (p["assetId"], p["shareMicros"], p["markPriceMicros"], p["costBasisMicros"]) for p in book.positions
    ] == [("a1", SHARES, 500_000, TARGET)]
    assert set(book.positions[0]) == {"assetId", "shareMicros", "markPriceMicros", "costBasisMicros"}
    assert (book.leader_exposure_micros, book.leader_exposure_status) == (None, "missing")
    assert u(driver).mark_price_micros.get("a2") == 400_000  # the trade was processed after the book


def test_only_changed_books_are_output_in_leader_id_order() -> None:
    driver = Driver(system(), trade("u2", at=T0), trade("u1", at=T0 + 1), books=True)
    assert [b.followed_user_id for b in books(driver.feed(tick(T0 + 1_000)))] == ["u1", "u2"]
    assert driver.feed(tick(T0 + 2_000)) == []
    driver.feed(trade("u2", at=T0 + 2_001, price=600_000))  # a new mark of a held asset (and a fill)
    assert [b.followed_user_id for b in books(driver.feed(tick(T0 + 3_000)))] == ["u2"]


def test_positions_are_held_assets_sorted_by_asset_with_every_assets_cost_in_the_total() -> None:
    driver = Driver(system(), trade(at=T0, asset="b"), trade(at=T0, asset="a"), books=True)
    driver.feed(system(**REPORTS), trade(at=T0 + 1, asset="c"))
    driver.feed(report(driver.attempts[-1]["attemptId"], "PARTIAL", 0, USD))  # cost without shares
    (book,) = books(driver.feed(tick(T0 + 1_000)))
    assert [p["assetId"] for p in book.positions] == ["a", "b"]
    assert book.cost_basis_micros == 2 * TARGET + USD
    assert book.reserved_micros == TARGET - USD
    assert book.unrealized_pnl_micros == book.exposure_micros - book.cost_basis_micros == -USD


def test_book_interval_zero_outputs_no_books_not_even_at_the_end() -> None:
    driver = Driver(system(bookIntervalMs=0), trade(at=T0), tick(T0 + 10_000), books=True)
    driver.finish()
    assert books(driver.outputs) == []


def test_the_end_of_a_replay_outputs_a_final_book_for_each_changed_leader() -> None:
    driver = Driver(trade(at=T0 + 1), books=True)
    out = driver.finish()
    assert kinds(out) == ["copyAttempt", "leaderBook"]
    assert books(out)[0].as_of_ms == T0 + 250  # the final clock
    assert Driver(system(), tick(T0), books=True).finish() == []  # no leader, no book


def test_the_end_of_a_replay_does_not_force_order_timeouts() -> None:
    driver = Driver(system(**REPORTS), trade(at=T0), books=True)
    out = driver.finish()
    assert kinds(out) == ["leaderBook"]
    assert books(out)[0].reserved_micros == TARGET


def test_a_snapshot_going_stale_changes_the_book_only_through_its_exposure_pair() -> None:
    driver = Driver(system(leaderExposureMaxAgeMs=1_000), shadow(exposure=1_000 * USD, at=T0), books=True)
    (first,) = books(driver.feed(tick(T0 + 1_000)))
    assert (first.leader_exposure_micros, first.leader_exposure_status) == (1_000 * USD, "fresh")
    (stale,) = books(driver.feed(tick(T0 + 2_000)))
    assert (stale.leader_exposure_micros, stale.leader_exposure_status) == (1_000 * USD, "stale")
    assert driver.feed(tick(T0 + 3_000)) == []


def test_only_leaders_with_a_trade_or_a_shadow_snapshot_get_books() -> None:
    exec_slice = PortfolioSnapshot.model_validate(
        {
            "kind": "portfolioSnapshot",
            "portfolioScope": "EXEC_GLOBAL",
            "followedUserId": "u9",
            "bucketTimeMs": T0,
            "exposureMicros": 0,
            "equityMicros": None,
            "cashMicros": None,
        }
    )
    driver = Driver(exec_slice, report("x", leader="u8"), tick(T0 + 5_000), books=True)
    assert books(driver.outputs) == []
    assert "u8" not in driver.state.leaders


def test_orders_opening_and_closing_change_the_book() -> None:
    driver = Driver(system(**REPORTS, orderTimeoutMs=1_000), trade(at=T0), tick(T0 + 500), books=True)
    assert driver.feed(tick(T0 + 999)) == []
    out = driver.feed(tick(T0 + 1_000))
    assert kinds(out) == ["orderExpired", "leaderBook"]
    assert books(out)[0].reserved_micros == 0


# --- 13.6 / 13.8.6 cost basis and PnL ---------------------------------------------------------------------


def test_selling_part_of_a_position_removes_its_share_of_the_cost() -> None:
    driver = Driver(system(), trade(at=T0))  # 10 shares for 5 USD
    sell = only_attempt(driver.feed(trade(side="SELL", at=T0 + 1, price=USD)))  # 5 USD at 1.0: 5 shares
    assert sell["targetShareMicros"] == 5 * USD
    leader = u(driver)
    assert leader.cost_basis_micros["a1"] == TARGET - TARGET * 5 // 10
    assert leader.realized_pnl_micros == TARGET - TARGET * 5 // 10


def test_a_sell_fill_of_more_than_is_held_removes_only_what_is_held() -> None:
    driver = Driver(system(), trade(at=T0), system(**REPORTS))
    sell = only_attempt(driver.feed(trade(side="SELL", at=T0 + 1)))
    driver.feed(report(sell["attemptId"], "FILLED", 15 * USD, 7 * USD))
    leader = u(driver)
    assert leader.held_share_micros["a1"] == 0
    assert leader.cost_basis_micros["a1"] == 0
    assert leader.realized_pnl_micros == 7 * USD - TARGET


def test_a_fill_of_no_shares_with_a_notional_still_moves_cost_or_realized() -> None:
    driver = Driver(system(), trade(at=T0), system(**REPORTS))
    buy = only_attempt(driver.feed(trade(at=T0 + 1, asset="a2")))
    driver.feed(report(buy["attemptId"], "PARTIAL", 0, USD))
    assert u(driver).cost_basis_micros["a2"] == USD
    assert u(driver).held_share_micros.get("a2", 0) == 0
    sell = only_attempt(driver.feed(trade(side="SELL", at=T0 + 2)))
    driver.feed(report(sell["attemptId"], "PARTIAL", 0, 2 * USD))
    assert u(driver).realized_pnl_micros == 2 * USD
    assert u(driver).cost_basis_micros["a1"] == TARGET


def test_realized_plus_unrealized_is_value_minus_cash_paid_plus_cash_received() -> None:
    driver = Driver(system(), trade(at=T0), trade(at=T0, asset="a2", price=250_000))  # pay 5 + 5 USD
    driver.feed(trade(side="SELL", at=T0 + 1, price=USD))  # receive 5 USD for 5 shares of a1
    driver.feed(resolution("a2", 0))  # a2 lost: receive 0
    leader = u(driver)
    paid, received = 10 * USD, 5 * USD
    cost = sum(leader.cost_basis_micros.values())
    unrealized = leader.exposure_micros - cost
    assert leader.realized_pnl_micros + unrealized == leader.exposure_micros - paid + received


# --- codec: every new piece of state is saved; records written before the venue loop still load -----------


def test_a_leader_record_written_before_the_venue_loop_restores_with_empty_venue_state() -> None:
    from models.codec import leader_from_json, leader_to_json

    driver = Driver(system(), trade(at=T0))
    record = leader_to_json(u(driver))
    for key in ("cost", "realized", "shadowBook", "orders", "hasBook", "bookChanged", "lastBook", "attempts"):
        record.pop(key)
    leader = leader_from_json(record)
    assert leader.held_share_micros == {"a1": SHARES}
    assert (leader.orders, leader.cost_basis_micros, leader.realized_pnl_micros) == ({}, {}, 0)
    assert leader.exposure_micros == TARGET


def test_the_core_record_leaves_the_attempt_memory_to_the_memory_records() -> None:
    from models.codec import leader_from_json, leader_to_json

    driver = Driver(system(**REPORTS), trade(at=T0), trade(side="SELL", at=T0 + 1))
    leader = u(driver)
    assert len(leader.attempt_memory) == 1  # the SKIP; the EXECUTE has an order
    core = leader_to_json(leader, with_memory=False)
    assert (core["attempts"], core["seen"], len(core["orders"])) == ([], [], 1)
    full = leader_to_json(leader)
    restored = leader_from_json(full)
    assert restored.attempt_memory == leader.attempt_memory
    assert restored.reserved_buy_micros == TARGET
    assert leader_to_json(restored) == full


def test_a_core_leader_book_is_byte_for_byte_the_leader_book_models_json() -> None:
    # The core builds books as wire dicts (LeaderBookWire): the JSON must be what the model writes,
    # key order included, and a wrapped book must never pass for an attempt (a bare dict).
    driver = Driver(global_change(sizing=BUDGETED), books=True)
    driver.feed(trade(asset="b", at=T0), trade(asset="a", at=T0 + 10), tick(T0 + 1_000))
    driver.finish()
    wrapped = [o for o in driver.outputs if isinstance(o, LeaderBookWire)]
    assert [[p["assetId"] for p in book.wire["positions"]] for book in wrapped] == [["a", "b"]]
    assert all(o["kind"] == "copyAttempt" for o in driver.outputs if isinstance(o, dict))
    for book in wrapped:
        model = LeaderBook.model_validate(book.wire)
        assert encode(book) == model.model_dump_json(by_alias=True).encode()
        assert list(book.wire) == [field.alias for field in LeaderBook.model_fields.values()]
        assert (book.kind, book.followed_user_id) == ("leaderBook", model.followed_user_id)
