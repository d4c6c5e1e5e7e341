"""Sizing (SPEC 5) and the seed's Phase 8 test plan: fixed-rate regression, dynamic rate math, clamps."""

from __future__ import annotations

from typing import Any

import pytest

from models.config import ConfigStore, EffectiveConfig, merge_effective
from models.sizing import clamp_target, copy_rate, effective_rate_bps, raw_target
from tests.factories import BUDGETED, T0, USD, Driver, equity, global_change, shadow, trade

IMMEDIATE = {"aggregationWindowMs": 0}


def cfg(**sizing: Any) -> EffectiveConfig:
    return merge_effective({"sizing": sizing}, None)


def decide_trade(
    sizing: dict[str, Any], *events: Any, notional: int = 100 * USD, at: int = T0
) -> dict[str, Any]:
    """Decide one BUY trade of `notional` at `at` after `events`, each trade its own group (W = 0)."""
    driver = Driver(global_change(sizing=sizing, system=IMMEDIATE), *events)
    (attempt,) = driver.feed(trade(notional=notional, at=at))
    assert isinstance(attempt, dict)
    return dict(attempt)


# --- Phase 8.1: fixed-rate regression ------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizing", "label"),
    [
        ({}, "defaults"),
        ({"budgetedDynamicEnabled": True}, "kill switch on, mode fixedRate"),
        ({"sizingMode": "budgetedDynamic", "budgetUsdcMicros": 40 * USD}, "mode set but kill switch off"),
    ],
)
def test_fixed_rate_is_unchanged_unless_budgeted_dynamic_is_active(
    sizing: dict[str, Any], label: str
) -> None:
    # Given a $100 leader trade with default sizing (1%, min $5, max $250, 75 bps of $10k equity)
    attempt = decide_trade(sizing, shadow(exposure=100_000 * USD))
    # Then raw is 1% = $1, raised to the $5 minimum, exactly as before the feature
    assert attempt["rawTargetMicros"] == 1_000_000, label
    assert attempt["targetNotionalMicros"] == 5_000_000
    assert attempt["sizing"]["clampedToMin"] is True
    assert attempt["sizing"]["budgetedDynamicActive"] is False
    assert attempt["sizing"]["rU"] == 0.01
    assert attempt["decision"] == "EXECUTE"


def test_fixed_rate_bankroll_clamp_caps_a_large_trade() -> None:
    # Given equity $1,000 and a $5,000 leader trade: raw $50, bankroll max 0.75% = $7.50
    attempt = decide_trade({}, equity(1_000 * USD), notional=5_000 * USD)
    assert attempt["rawTargetMicros"] == 50_000_000
    assert attempt["targetNotionalMicros"] == 7_500_000
    assert attempt["sizing"]["clampedByBankroll"] is True


# --- Phase 8.2: dynamic rate math ------------------------------------------------------------------


def test_whale_budget_over_exposure_gives_four_bps() -> None:
    # Given B = $40 and E = $100,000: r_u = 0.0004 (4 bps); N = $1,000 → raw = $0.40
    c = cfg(**BUDGETED, budgetUsdcMicros=40 * USD)
    raw, to_r_min, to_r_max = raw_target(c, 1_000 * USD, 100_000 * USD)
    assert raw == 400_000
    assert not to_r_min
    assert not to_r_max
    assert effective_rate_bps(raw, 1_000 * USD) == 4
    assert copy_rate(c, 100_000 * USD) == pytest.approx(0.0004)


def test_whale_raw_target_is_then_raised_to_the_trade_minimum() -> None:
    attempt = decide_trade(
        {**BUDGETED, "budgetUsdcMicros": 40 * USD}, shadow(exposure=100_000 * USD), notional=1_000 * USD
    )
    assert attempt["rawTargetMicros"] == 400_000
    assert attempt["targetNotionalMicros"] == 5_000_000
    assert attempt["sizing"]["effectiveRateBps"] == 4
    assert attempt["sizing"]["leaderExposureStatus"] == "fresh"


def test_zero_leader_exposure_uses_r_max() -> None:
    c = cfg(**BUDGETED, budgetUsdcMicros=40 * USD, budgetRMaxBps=150)
    assert raw_target(c, 1_000 * USD, 0) == (15 * USD, False, True)  # r_max: 1.5% of $1,000
    assert copy_rate(c, 0) == 0.015


def test_missing_leader_exposure_sizes_at_r_max_and_says_so() -> None:
    attempt = decide_trade({**BUDGETED, "budgetUsdcMicros": 40 * USD}, notional=1_000 * USD)
    assert attempt["sizing"]["leaderExposureStatus"] == "missing"
    assert attempt["sizing"]["leaderExposureMicros"] is None
    assert attempt["rawTargetMicros"] == 10 * USD  # default r_max 100 bps
    assert attempt["sizing"]["clampedToRMax"] is True


def test_stale_leader_exposure_counts_as_missing_but_is_shown() -> None:
    # Given a snapshot older than leaderExposureMaxAgeMs at decision time
    snap = shadow(exposure=100_000 * USD, at=T0)
    budgeted = {**BUDGETED, "budgetUsdcMicros": 40 * USD}
    attempt = decide_trade(budgeted, snap, notional=1_000 * USD, at=T0 + 3_600_001)
    assert attempt["sizing"]["leaderExposureStatus"] == "stale"
    assert attempt["sizing"]["leaderExposureMicros"] == 100_000 * USD
    assert attempt["rawTargetMicros"] == 10 * USD
    # exactly at the limit it is still fresh
    attempt = decide_trade(budgeted, snap, notional=1_000 * USD, at=T0 + 3_600_000)
    assert attempt["sizing"]["leaderExposureStatus"] == "fresh"
    assert attempt["rawTargetMicros"] == 400_000


def test_r_min_bounds_the_raw_target_from_below() -> None:
    c = cfg(**BUDGETED, budgetUsdcMicros=40 * USD, budgetRMinBps=10)
    assert raw_target(c, 1_000 * USD, 100_000 * USD) == (1 * USD, True, False)  # 4 bps < 10 bps
    assert copy_rate(c, 100_000 * USD) == 0.001


def test_r_max_bounds_the_raw_target_from_above() -> None:
    c = cfg(**BUDGETED, budgetUsdcMicros=40 * USD, budgetRMaxBps=100)
    assert raw_target(c, 1_000 * USD, 1_000 * USD) == (10 * USD, False, True)  # B/E = 4% > 1%
    assert copy_rate(c, 1_000 * USD) == 0.01


def test_raw_target_floors_integer_division() -> None:
    c = cfg(**BUDGETED, budgetUsdcMicros=40 * USD)
    raw, _, _ = raw_target(c, 1_000 * USD, 300_000 * USD)
    assert raw == 133_333  # floor(1e9 * 4e7 / 3e11)
    assert effective_rate_bps(raw, 1_000 * USD) == 1


# --- trade clamps (SPEC 5.2) -----------------------------------------------------------------------


def test_clamps_apply_min_then_max_then_bankroll() -> None:
    c = ConfigStore().global_effective
    # (target, clampedToMin, clampedToMax, clampedByBankroll)
    assert clamp_target(c, 1_000_000, 10_000 * USD) == (5 * USD, True, False, False)
    assert clamp_target(c, 900 * USD, 1_000_000 * USD) == (250 * USD, False, True, False)
    # bankroll max 0.75% of $1,000 = $7.50
    assert clamp_target(c, 100 * USD, 1_000 * USD) == (7_500_000, False, False, True)


def test_min_wins_over_a_bankroll_clamp_below_it() -> None:
    c = ConfigStore().global_effective
    # equity $100: bankroll max $0.75 < min $5 → min, flagged clampedToMin and not clampedByBankroll
    assert clamp_target(c, 20 * USD, 100 * USD) == (5 * USD, True, False, False)


def test_no_bankroll_clamp_without_positive_equity() -> None:
    c = ConfigStore().global_effective
    assert clamp_target(c, 20 * USD, 0) == (20 * USD, False, False, False)
    assert clamp_target(c, 20 * USD, -5 * USD) == (20 * USD, False, False, False)


def test_equity_comes_from_newest_whole_exec_global_snapshot_with_equity() -> None:
    # newest by bucketTime wins; a null equity is ignored; ties go to the later arrival
    attempt = decide_trade(
        {},
        equity(2_000 * USD, at=T0 - 10),
        equity(3_000 * USD, at=T0 - 20),
        equity(None, at=T0),
        equity(4_000 * USD, at=T0 - 10),
    )
    assert attempt["sizing"]["equityMicros"] == 4_000 * USD


def test_equity_falls_back_to_initial_bankroll() -> None:
    driver = Driver(global_change(system={**IMMEDIATE, "initialBankrollMicros": 200 * USD}))
    (attempt,) = driver.feed(trade(notional=100 * USD))
    assert isinstance(attempt, dict)
    assert attempt["sizing"]["equityMicros"] == 200 * USD
