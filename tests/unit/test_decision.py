"""The ordered decision (SPEC 6), HARD/SOFT budgets (seed Phase 8.3–8.4) and paper fills (SPEC 7)."""

from __future__ import annotations

from typing import Any

import pytest

from models.decision import attempt_id
from tests.factories import BUDGETED, T0, USD, Driver, global_change, shadow, trade, user_change

IMMEDIATE = {"aggregationWindowMs": 0}
# r = B/E = 100% of the leader's notional (E = B), min $1, rMax 100%: targets equal the leader notional.
ONE_TO_ONE: dict[str, Any] = {
    **BUDGETED,
    "budgetUsdcMicros": 10 * USD,
    "budgetRMaxBps": 10_000,
    "minTradeNotionalMicros": 1 * USD,
    "maxTradeBankrollBps": 10_000,
}


def desk(
    sizing: dict[str, Any] | None = None, guardrails: dict[str, Any] | None = None, **system: Any
) -> Driver:
    """A partition where every trade is decided at once, with a $10 budget and E_u = $10 for u1."""
    sections: dict[str, Any] = {"sizing": sizing if sizing is not None else ONE_TO_ONE}
    if guardrails is not None:
        sections["guardrails"] = guardrails
    sections["system"] = {**IMMEDIATE, **system}
    return Driver(global_change(**sections), shadow("u1", exposure=10 * USD))


def decide(driver: Driver, **trade_args: Any) -> dict[str, Any]:
    (attempt,) = driver.feed(trade(at=T0, **trade_args))
    assert isinstance(attempt, dict)
    return dict(attempt)


# --- Phase 8.3: HARD enforcement ---------------------------------------------------------------------


def test_hard_budget_skips_when_headroom_is_exhausted() -> None:
    driver = desk()
    first = decide(driver, notional=10 * USD)  # fills $10 = the whole budget
    assert first["decision"] == "EXECUTE"
    assert first["budget"]["headroomMicros"] == 10 * USD
    second = decide(driver, notional=2 * USD)
    assert second["decision"] == "SKIP"
    assert second["reasonCodes"] == ["BUDGET_HARD_CAP_EXCEEDED"]
    assert second["budget"] == {
        "currentExposureMicros": 10 * USD,
        "headroomMicros": 0,
        "capped": False,
        "reducing": False,
        "reservedMicros": 0,
    }
    assert second["targetNotionalMicros"] == 2 * USD  # the clamped, pre-cap target


def test_hard_budget_caps_target_to_headroom() -> None:
    driver = desk()
    decide(driver, notional=7 * USD)
    capped = decide(driver, notional=5 * USD)  # headroom $3 < target $5
    assert capped["decision"] == "EXECUTE"
    assert capped["targetNotionalMicros"] == 3 * USD
    assert capped["targetShareMicros"] == 6 * USD  # $3 at 0.50
    assert capped["budget"]["capped"] is True
    assert capped["budget"]["headroomMicros"] == 3 * USD
    assert driver.state.leaders["u1"].exposure_micros == 10 * USD


def test_hard_budget_skips_when_headroom_is_below_the_trade_minimum() -> None:
    driver = desk()
    decide(driver, notional=9_500_000)
    attempt = decide(driver, notional=5 * USD)  # headroom $0.50 < min $1
    assert attempt["reasonCodes"] == ["BUDGET_HARD_CAP_EXCEEDED"]
    assert attempt["budget"]["capped"] is False
    assert attempt["targetNotionalMicros"] == 5 * USD


def test_headroom_exactly_the_trade_minimum_is_allowed() -> None:
    driver = desk()
    decide(driver, notional=9 * USD)
    attempt = decide(driver, notional=5 * USD)  # headroom $1 = min $1
    assert attempt["decision"] == "EXECUTE"
    assert attempt["targetNotionalMicros"] == 1 * USD


def test_soft_enforcement_sizes_with_r_u_but_never_caps() -> None:
    driver = desk({**ONE_TO_ONE, "budgetEnforcement": "soft"})
    decide(driver, notional=10 * USD)
    attempt = decide(driver, notional=5 * USD)
    assert attempt["decision"] == "EXECUTE"
    assert attempt["targetNotionalMicros"] == 5 * USD
    assert attempt["budget"]["headroomMicros"] is None
    assert attempt["sizing"]["budgetEnforcement"] == "soft"


def test_a_burst_never_overshoots_the_hard_budget() -> None:
    # Given a burst of trades in one aggregation window... and in separate groups decided back to back
    driver = desk()
    for n in range(30):
        driver.feed(trade(at=T0 + n, notional=3 * USD, asset=f"a{n % 3}"))
    executed = [a for a in driver.attempts if a["decision"] == "EXECUTE"]
    assert sum(a["targetNotionalMicros"] for a in executed) <= 10 * USD
    for a in executed:
        assert a["budget"]["currentExposureMicros"] + a["targetNotionalMicros"] <= 10 * USD


# --- Phase 8.4: reducing bypass ----------------------------------------------------------------------


def test_sell_is_reducing_and_bypasses_the_budget_cap() -> None:
    driver = desk()
    decide(driver, notional=10 * USD)  # we hold 20 shares at 0.50, budget exhausted
    sell = decide(driver, side="SELL", notional=4 * USD)
    assert sell["decision"] == "EXECUTE"
    assert sell["budget"]["reducing"] is True
    assert sell["targetNotionalMicros"] == 4 * USD
    assert driver.state.leaders["u1"].held_share_micros["a1"] == 12 * USD


def test_sell_is_capped_at_the_held_position_and_never_shorts() -> None:
    driver = desk()
    decide(driver, notional=2 * USD)  # hold 4 shares
    sell = decide(driver, side="SELL", notional=9 * USD)
    assert sell["decision"] == "EXECUTE"
    assert sell["targetShareMicros"] == 4 * USD
    assert sell["targetNotionalMicros"] == 2 * USD  # recomputed from the capped shares
    assert driver.state.leaders["u1"].held_share_micros["a1"] == 0


def test_capped_sell_executes_even_below_the_trade_minimum() -> None:
    driver = desk({**ONE_TO_ONE, "budgetUsdcMicros": 100 * USD})
    decide(driver, notional=1 * USD)  # hold 2 shares ($1), min is $1
    driver.feed(
        global_change(sizing={**ONE_TO_ONE, "budgetUsdcMicros": 100 * USD, "minTradeNotionalMicros": 3 * USD})
    )
    sell = decide(driver, side="SELL", notional=5 * USD)
    assert sell["decision"] == "EXECUTE"
    assert sell["targetNotionalMicros"] == 1 * USD


def test_sell_without_a_position_is_skipped() -> None:
    driver = desk()
    sell = decide(driver, side="SELL", notional=4 * USD)
    assert sell["reasonCodes"] == ["NOT_ENOUGH_POSITION_TO_SELL"]
    assert sell["targetNotionalMicros"] == 4 * USD  # shows the clamped target
    assert sell["budget"]["reducing"] is True


def test_reducing_is_judged_per_leader() -> None:
    # u2 holds the asset, u1 does not: u1's SELL cannot reduce u2's position
    driver = desk()
    driver.feed(shadow("u2", exposure=10 * USD))
    decide(driver, leader="u2", notional=4 * USD)
    sell = decide(driver, leader="u1", side="SELL", notional=4 * USD)
    assert sell["reasonCodes"] == ["NOT_ENOUGH_POSITION_TO_SELL"]


# --- the decision order ---------------------------------------------------------------------------


def test_engine_pause_comes_first() -> None:
    driver = desk(copyEngineEnabled=False)
    driver.feed(user_change("u1", leader={"enabled": False}))
    attempt = decide(driver, notional=4 * USD)
    assert attempt["reasonCodes"] == ["ENGINE_PAUSED"]
    assert (attempt["rawTargetMicros"], attempt["targetNotionalMicros"], attempt["targetShareMicros"]) == (
        0,
        0,
        0,
    )


def test_disabled_leader_is_skipped_before_the_min_leader_filter() -> None:
    driver = desk({**ONE_TO_ONE, "minLeaderTradeNotionalMicros": 50 * USD})
    driver.feed(user_change("u1", leader={"enabled": False}))
    assert decide(driver, notional=4 * USD)["reasonCodes"] == ["USER_DISABLED"]
    assert decide(driver, leader="u2", notional=4 * USD)["reasonCodes"] == ["LEADER_TRADE_BELOW_MIN_NOTIONAL"]


def test_min_leader_filter_skips_with_zero_target_in_any_mode() -> None:
    driver = desk({"minLeaderTradeNotionalMicros": 50 * USD})  # fixed rate
    attempt = decide(driver, notional=49 * USD)
    assert attempt["reasonCodes"] == ["LEADER_TRADE_BELOW_MIN_NOTIONAL"]
    assert attempt["targetNotionalMicros"] == 0
    assert attempt["sizing"]["clampedToMin"] is False
    assert decide(driver, notional=50 * USD)["decision"] == "EXECUTE"


def test_buy_cost_per_share_guardrail() -> None:
    driver = desk(guardrails={"maxBuyCostPerShareMicros": 900_000})
    assert decide(driver, notional=2 * USD, price=899_999)["decision"] == "EXECUTE"
    attempt = decide(driver, notional=2 * USD, price=900_000)
    assert attempt["reasonCodes"] == ["BUY_COST_PER_SHARE_TOO_HIGH"]
    # a SELL is not a buy
    assert decide(driver, side="SELL", notional=1 * USD, price=950_000)["decision"] == "EXECUTE"


def test_per_leader_exposure_cap_of_equity() -> None:
    # equity $10,000 (initial bankroll), cap 0.1% = $10; fixed rate 100% with min $1
    sizing = {"copyPctNotionalBps": 10_000, "minTradeNotionalMicros": 1 * USD, "maxTradeBankrollBps": 10_000}
    driver = desk(sizing, guardrails={"maxExposurePerUserBps": 10})
    assert decide(driver, notional=6 * USD)["decision"] == "EXECUTE"
    attempt = decide(driver, notional=5 * USD)  # 6 + 5 > 10
    assert attempt["reasonCodes"] == ["RISK_CAP_USER"]
    assert decide(driver, notional=4 * USD)["decision"] == "EXECUTE"  # 6 + 4 = 10 is allowed


def test_hard_cap_is_checked_before_the_exposure_cap() -> None:
    driver = desk(guardrails={"maxExposurePerUserBps": 1})  # $1 cap of $10k equity
    decide(driver, notional=10 * USD)  # exceeds... the exposure cap: skipped
    assert driver.attempts[-1]["reasonCodes"] == ["RISK_CAP_USER"]


# --- paper fills, marks, exposure -------------------------------------------------------------------


def test_execute_fills_at_the_reference_price_and_updates_exposure() -> None:
    driver = desk()
    attempt = decide(driver, notional=4 * USD, price=400_000)
    assert attempt["targetShareMicros"] == 10 * USD
    leader = driver.state.leaders["u1"]
    assert leader.held_share_micros["a1"] == 10 * USD
    assert leader.exposure_micros == 4 * USD
    # the leader trades the asset at 0.60: our holding is marked there before the next decision
    nxt = decide(driver, notional=1 * USD, price=600_000, asset="a2")
    assert nxt["budget"]["currentExposureMicros"] == 4 * USD
    # (a2: $1 at 0.60 = 1.666666 shares, worth $0.999999)
    marked = decide(driver, asset="a1", notional=600_000, price=600_000)
    assert marked["budget"]["currentExposureMicros"] == 6 * USD + 999_999


def test_attempt_carries_every_contract_field() -> None:
    from models.events import CopyAttempt

    driver = desk()
    attempt = decide(driver, notional=4 * USD)
    model = CopyAttempt.model_validate(attempt)
    assert model.attempt_id == attempt_id("u1", attempt["groupKey"])
    assert attempt["configVersion"] == driver.state.config.version
    assert attempt["bufferedTradeCount"] == len(attempt["tradeIds"]) == 1
    assert attempt["sourceType"] == "AGGREGATOR"


@pytest.mark.parametrize("enforcement", ["hard", "soft"])
def test_kill_switch_off_means_fixed_rate_and_no_budget(enforcement: str) -> None:
    sizing = {**ONE_TO_ONE, "budgetedDynamicEnabled": False, "budgetEnforcement": enforcement}
    driver = desk(sizing)
    attempt = decide(driver, notional=40 * USD)
    assert attempt["sizing"]["budgetedDynamicActive"] is False
    assert attempt["rawTargetMicros"] == 400_000  # 1% of $40
    assert attempt["targetNotionalMicros"] == 1 * USD
    assert attempt["budget"]["headroomMicros"] is None
