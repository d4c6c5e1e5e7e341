"""Small-trade buffering (SPEC 4.3, 4.4, 5.1, 12.3, 12.7, 12.10).

Buffering defaults: notionalThresholdMicros 250,000, flushMinNotionalMicros 500,000,
minExecNotionalMicros 100,000, maxBufferMs 2,500, quietFlushMs 600, sameSideOnly.
Sizing defaults: fixed rate 1% (a 10 USD leader trade is a 100,000 copy notional), min trade 5 USD.
A buffering section replaces the stored GLOBAL buffering document, so every change repeats enabled.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from models.events import ConfigChange, CopyAttemptWire, Output
from tests.factories import (
    BUDGETED,
    T0,
    USD,
    Driver,
    attempts_of,
    global_change,
    shadow,
    tick,
    trade,
)

T0_ISO = "1970-01-01T00:16:40.000Z"


def buffering(**keys: Any) -> ConfigChange:
    """A GLOBAL change that turns buffering on, with the given buffering keys."""
    return global_change(buffering={"enabled": True, **keys})


def only(outputs: list[Output]) -> CopyAttemptWire:
    """The single copy attempt in `outputs` (fails when there is not exactly one output)."""
    assert len(outputs) == 1, outputs
    attempts = attempts_of(outputs)
    assert len(attempts) == 1, outputs
    return attempts[0]


def pending(driver: Driver, leader: str = "u1") -> dict[tuple[str, str], list[str]]:
    """The pending buckets of `leader`: bucket key -> trade ids."""
    return {key: list(b.trade_ids) for key, b in driver.state.leaders[leader].buckets.items()}


# --- classification (SPEC 4.3, 5.1) --------------------------------------------------------------------


def test_trade_with_raw_copy_below_threshold_is_buffered() -> None:
    driver = Driver(buffering())

    # 1% of 24.99 USD = 249,900 < 250,000
    out = driver.feed(trade(trade_id="s", at=T0, notional=24_990_000))

    assert out == []
    assert pending(driver) == {("a1", "BUY"): ["s"]}


def test_trade_with_raw_copy_at_threshold_is_an_immediate_group_keyed_by_detect_time() -> None:
    driver = Driver(buffering())

    # 1% of 25 USD = 250,000 = threshold → large
    a = only(driver.feed(trade(trade_id="l", at=T0 + 123, notional=25 * USD, price=500_000)))

    assert a["sourceType"] == "IMMEDIATE"
    assert a["groupKey"] == "u1:a1:BUY:1970-01-01T00:16:40.123Z"
    assert (a["tradeIds"], a["decidedAtMs"]) == (["l"], T0 + 123)
    assert (a["theirNotionalMicros"], a["theirReferencePriceMicros"]) == (25 * USD, 500_000)
    assert a["rawTargetMicros"] == 250_000
    assert pending(driver) == {}


def test_late_large_trade_is_keyed_by_its_detect_time_and_decided_at_the_clock() -> None:
    driver = Driver(buffering(), tick(T0 + 500))

    a = only(driver.feed(trade(at=T0 + 7, notional=30 * USD)))

    assert a["groupKey"] == "u1:a1:BUY:1970-01-01T00:16:40.007Z"
    assert a["decidedAtMs"] == T0 + 500


@pytest.mark.parametrize(
    ("notional", "large"),
    [(2_490_000, False), (2_500_000, True)],  # 10% → 249,000 / 250,000
)
def test_classification_uses_the_fixed_copy_rate(notional: int, large: bool) -> None:
    driver = Driver(global_change(sizing={"copyPctNotionalBps": 1_000}), buffering())

    out = attempts_of(driver.feed(trade(at=T0, notional=notional)))

    assert [a["sourceType"] for a in out] == (["IMMEDIATE"] if large else [])
    assert bool(pending(driver)) is not large


def budgeted_buffering() -> ConfigChange:
    # B = 500 USD, rMax = 1%: with E = 100,000 USD, raw = N × 500 / 100,000 = N / 200
    return global_change(
        sizing={**BUDGETED, "budgetUsdcMicros": 500 * USD, "budgetRMaxBps": 100},
        buffering={"enabled": True},
    )


def test_budgeted_classification_uses_the_leader_exposure_rate() -> None:
    # given E_u = 100,000 USD: a 49.99 USD trade copies floor(49,990,000 × 500 / 100,000) = 249,950
    driver = Driver(budgeted_buffering(), shadow(exposure=100_000 * USD, at=T0))

    small = driver.feed(trade(trade_id="s", at=T0, notional=49_990_000))
    # and a 50 USD trade copies 250,000 → large
    large = only(driver.feed(trade(trade_id="l", at=T0 + 1, notional=50 * USD, asset="a2")))

    assert small == []
    assert pending(driver) == {("a1", "BUY"): ["s"]}
    assert (large["sourceType"], large["rawTargetMicros"]) == ("IMMEDIATE", 250_000)


def test_budgeted_classification_without_leader_exposure_uses_r_max() -> None:
    # given no E_u: raw = rMax = 1% of 49.99 USD = 499,900 ≥ threshold → large
    driver = Driver(budgeted_buffering())

    a = only(driver.feed(trade(at=T0, notional=49_990_000)))

    assert (a["sourceType"], a["rawTargetMicros"]) == ("IMMEDIATE", 499_900)


def test_large_trade_joins_a_pending_bucket_and_flushes_it_at_once() -> None:
    # given a small BUY (100,000 at 0.5) pending since T0
    driver = Driver(buffering(), trade(trade_id="s", at=T0, notional=10 * USD, price=500_000))

    # when a large BUY (300,000 at 0.6) arrives
    a = only(driver.feed(trade(trade_id="l", at=T0 + 100, notional=30 * USD, price=600_000)))

    # then one BUFFER attempt holds both; ref = floor((100,000×500,000 + 300,000×600,000) / 400,000)
    assert a["sourceType"] == "BUFFER"
    assert a["tradeIds"] == ["s", "l"]
    assert a["bufferedTradeCount"] == 2
    assert a["groupKey"] == f"u1:a1:BUY:{T0_ISO}:buffer"
    assert a["rawTargetMicros"] == 400_000
    assert a["theirReferencePriceMicros"] == 575_000
    assert a["theirNotionalMicros"] == 40 * USD
    assert a["decidedAtMs"] == T0 + 100
    assert a["decision"] == "EXECUTE"
    assert pending(driver) == {}


# --- flush triggers (SPEC 4.3, 12.3, 12.7) -----------------------------------------------------------


def test_threshold_flush_when_net_reaches_flush_min_on_append() -> None:
    # given copies of 200,000 at 0.5 and 240,000 at 0.4 (net 440,000 < 500,000)
    driver = Driver(buffering())
    assert driver.feed(trade(trade_id="b1", at=T0, notional=20 * USD, price=500_000)) == []
    assert driver.feed(trade(trade_id="b2", at=T0 + 10, notional=24 * USD, price=400_000)) == []

    # when a copy of 100,000 at 0.8 brings the net to 540,000
    a = only(driver.feed(trade(trade_id="b3", at=T0 + 20, notional=10 * USD, price=800_000)))

    # then the bucket flushes at once; reference after b2 = floor((200,000×500,000 + 240,000×400,000)
    # / 440,000) = 445,454; after b3 = floor((440,000×445,454 + 100,000×800,000) / 540,000) = 511,110
    assert a["sourceType"] == "BUFFER"
    assert a["tradeIds"] == ["b1", "b2", "b3"]
    assert a["rawTargetMicros"] == 540_000
    assert a["theirReferencePriceMicros"] == 511_110
    assert a["theirNotionalMicros"] == 54 * USD
    assert a["groupKey"] == f"u1:a1:BUY:{T0_ISO}:buffer"
    assert a["decidedAtMs"] == T0 + 20
    assert pending(driver) == {}


def test_executed_flush_uses_abs_net_as_raw_target_without_scaling_again() -> None:
    # given a 15 USD trade buffered as a 150,000 copy
    driver = Driver(buffering(), trade(at=T0, notional=15 * USD, price=500_000))

    a = only(driver.finish())

    # then raw = 150,000 (not 1% of it), raised to the 5 USD minimum trade
    assert a["decision"] == "EXECUTE"
    assert a["rawTargetMicros"] == 150_000
    assert a["targetNotionalMicros"] == 5 * USD
    assert a["sizing"]["clampedToMin"] is True
    assert a["targetShareMicros"] == 10 * USD  # 5 USD at 0.5
    assert a["sizing"]["effectiveRateBps"] == 100  # floor(150,000 × 10,000 / 15,000,000)


def test_quiet_flush_after_quiet_period_since_last_update() -> None:
    # given a 150,000 copy (≥ minExec) at T0, updated at T0+400
    driver = Driver(
        buffering(),
        trade(trade_id="q1", at=T0, notional=15 * USD),
        trade(trade_id="q2", at=T0 + 400, notional=5 * USD),
    )

    # then quiet fires 600 ms after the last update, not after the first
    assert driver.feed(tick(T0 + 600)) == []
    assert driver.feed(tick(T0 + 999)) == []
    a = only(driver.feed(tick(T0 + 1_000)))
    assert (a["tradeIds"], a["decidedAtMs"], a["decision"]) == (["q1", "q2"], T0 + 1_000, "EXECUTE")
    assert a["rawTargetMicros"] == 200_000


def test_quiet_flush_waits_for_min_exec_notional() -> None:
    # given a 50,000 copy (below minExec 100,000) at T0
    driver = Driver(buffering(), trade(trade_id="s1", at=T0, notional=5 * USD))

    # then no quiet flush
    assert driver.feed(tick(T0 + 600)) == []
    assert driver.feed(tick(T0 + 900)) == []

    # when a second 50,000 copy at T0+1,000 brings the net to 100,000
    assert driver.feed(trade(trade_id="s2", at=T0 + 1_000, notional=5 * USD)) == []

    # then quiet fires at T0+1,600
    assert driver.feed(tick(T0 + 1_599)) == []
    a = only(driver.feed(tick(T0 + 1_600)))
    assert (a["tradeIds"], a["decision"], a["rawTargetMicros"]) == (["s1", "s2"], "EXECUTE", 100_000)


def test_max_time_flush_below_min_exec_is_a_buffer_skip() -> None:
    # given a 50,000 copy at T0
    driver = Driver(buffering(), trade(trade_id="s", at=T0 + 10, notional=5 * USD, price=400_000))

    # when its age reaches maxBufferMs
    assert driver.feed(tick(T0 + 2_509)) == []
    a = only(driver.feed(tick(T0 + 2_510)))

    # then one BUFFER SKIP with raw = abs(net) and target 0
    assert a["sourceType"] == "BUFFER"
    assert a["decision"] == "SKIP"
    assert a["reasonCodes"] == ["BUFFER_FLUSH_BELOW_MIN_EXEC"]
    assert a["groupKey"] == "u1:a1:BUY:1970-01-01T00:16:40.010Z:buffer"
    assert a["rawTargetMicros"] == 50_000
    assert a["targetNotionalMicros"] == 0
    assert a["targetShareMicros"] == 0
    assert a["tradeIds"] == ["s"]
    assert a["theirNotionalMicros"] == 5 * USD
    assert a["theirReferencePriceMicros"] == 400_000
    assert a["decidedAtMs"] == T0 + 2_510
    assert pending(driver) == {}
    assert driver.state.leaders["u1"].held_share_micros.get("a1", 0) == 0


def test_max_time_flush_executes_a_busy_bucket() -> None:
    # given 50,000 copies every 500 ms (quiet never elapses; net stays below flushMin)
    driver = Driver(buffering(), *(trade(at=T0 + i * 500, notional=5 * USD) for i in range(5)))

    # when the bucket is maxBufferMs old
    assert driver.feed(tick(T0 + 2_499)) == []
    a = only(driver.feed(tick(T0 + 2_500)))

    # then it executes with everything buffered so far
    assert (a["decision"], a["rawTargetMicros"], len(a["tradeIds"])) == ("EXECUTE", 250_000, 5)
    assert a["decidedAtMs"] == T0 + 2_500


def test_due_bucket_is_flushed_before_the_trade_that_moved_the_clock() -> None:
    driver = Driver(buffering(), trade(trade_id="old", at=T0, notional=15 * USD))

    a = only(driver.feed(trade(trade_id="new", at=T0 + 700, notional=15 * USD)))

    assert (a["tradeIds"], a["decidedAtMs"]) == (["old"], T0 + 700)
    assert pending(driver) == {("a1", "BUY"): ["new"]}
    assert driver.state.leaders["u1"].buckets["a1", "BUY"].first_seen_ms == T0 + 700


def test_bucket_first_seen_is_the_clock_not_the_detect_time() -> None:
    driver = Driver(buffering(), tick(T0 + 500))

    driver.feed(trade(at=T0 + 100, notional=5 * USD))
    a = only(driver.finish())

    assert a["groupKey"] == "u1:a1:BUY:1970-01-01T00:16:40.500Z:buffer"
    assert a["decidedAtMs"] == T0 + 3_000


def test_buffer_key_used_twice_gets_a_suffix() -> None:
    # given a bucket flushed at T0 by a large trade, and a new bucket first seen at T0
    driver = Driver(
        buffering(),
        trade(trade_id="a", at=T0, notional=20 * USD),
        trade(trade_id="b", at=T0, notional=40 * USD),
        trade(trade_id="c", at=T0, notional=20 * USD),
    )

    driver.finish()

    assert [(a["groupKey"], a["tradeIds"]) for a in driver.attempts] == [
        (f"u1:a1:BUY:{T0_ISO}:buffer", ["a", "b"]),
        (f"u1:a1:BUY:{T0_ISO}:buffer~2", ["c"]),
    ]


def test_late_immediate_trade_after_the_dedup_window_still_gets_an_unused_group_key() -> None:
    # given an IMMEDIATE group keyed T0, then the clock 70 s later (dedupWindowMs = 60,000)
    driver = Driver(
        global_change(system={"dedupWindowMs": 60_000}),
        buffering(),
        trade(trade_id="a", at=T0, notional=50 * USD),
        tick(T0 + 70_000),
    )

    # when another large trade detected at T0 arrives
    late = only(driver.feed(trade(trade_id="b", at=T0, notional=50 * USD)))

    # then its key and attemptId differ from the first one's
    assert late["groupKey"] == "u1:a1:BUY:1970-01-01T00:16:40.000Z~late1"  # the ~n counts were forgotten
    assert len({a["attemptId"] for a in driver.attempts}) == 2


def test_reference_price_of_an_empty_weight_is_the_trade_price() -> None:
    # given a zero-notional trade at 0.3 (copy 0): the denominator is 0, so ref = 0.3
    driver = Driver(buffering(), trade(trade_id="z", at=T0, notional=0, price=300_000))
    assert driver.state.leaders["u1"].buckets["a1", "BUY"].reference_price_micros == 300_000

    # when a 100,000 copy at 0.5 follows: floor((0 × 300,000 + 100,000 × 500,000) / 100,000)
    driver.feed(trade(trade_id="t", at=T0 + 1, notional=10 * USD, price=500_000))

    a = only(driver.finish())
    assert a["theirReferencePriceMicros"] == 500_000
    assert a["tradeIds"] == ["z", "t"]


def test_finish_flushes_buckets_when_buffering_was_turned_off_without_a_tick() -> None:
    driver = Driver(buffering(), trade(trade_id="b", at=T0, notional=5 * USD))
    driver.feed(global_change(buffering={"enabled": False}))

    a = only(driver.finish())

    assert (a["tradeIds"], a["sourceType"]) == (["b"], "BUFFER")
    assert pending(driver) == {}


# --- netting (SPEC 4.3) -------------------------------------------------------------------------------


def test_same_side_only_opposite_trade_flushes_the_pending_bucket_first() -> None:
    # given a pending BUY bucket
    driver = Driver(buffering(), trade(trade_id="b", at=T0, notional=10 * USD))

    # when a small SELL arrives
    a = only(driver.feed(trade(trade_id="s", at=T0 + 100, notional=10 * USD, side="SELL")))

    # then the BUY bucket flushed; the SELL waits in its own bucket
    assert (a["side"], a["tradeIds"], a["sourceType"]) == ("BUY", ["b"], "BUFFER")
    assert a["decidedAtMs"] == T0 + 100
    assert pending(driver) == {("a1", "SELL"): ["s"]}


def test_same_side_only_opposite_large_trade_comes_after_the_flushed_bucket() -> None:
    driver = Driver(buffering(), trade(trade_id="b", at=T0, notional=10 * USD))

    out = attempts_of(driver.feed(trade(trade_id="s", at=T0 + 100, notional=40 * USD, side="SELL")))

    assert [(a["sourceType"], a["side"], a["tradeIds"]) for a in out] == [
        ("BUFFER", "BUY", ["b"]),
        ("IMMEDIATE", "SELL", ["s"]),
    ]
    # the BUY filled first (10 shares at 0.5), so the SELL has something to sell
    assert out[1]["decision"] == "EXECUTE"


def test_same_side_only_keeps_other_assets_buckets() -> None:
    driver = Driver(buffering(), trade(trade_id="b", at=T0, notional=10 * USD, asset="a1"))

    out = driver.feed(trade(trade_id="s", at=T0 + 100, notional=10 * USD, side="SELL", asset="a2"))

    assert out == []
    assert pending(driver) == {("a1", "BUY"): ["b"], ("a2", "SELL"): ["s"]}


def test_net_buy_sell_nets_buys_and_sells_of_one_asset_in_one_bucket() -> None:
    # given +200,000 at 0.5 and −100,000 at 0.6 in one bucket (net +100,000)
    driver = Driver(
        buffering(nettingMode="netBuySell"),
        trade(trade_id="b", at=T0, notional=20 * USD, price=500_000),
        trade(trade_id="s", at=T0 + 100, notional=10 * USD, price=600_000, side="SELL"),
    )

    # when quiet elapses after the last update
    assert driver.feed(tick(T0 + 699)) == []
    a = only(driver.feed(tick(T0 + 700)))

    # then one BUY flush: ref = floor((200,000×500,000 + 100,000×600,000) / 300,000) = 533,333
    assert a["side"] == "BUY"
    assert a["tradeIds"] == ["b", "s"]
    assert a["rawTargetMicros"] == 100_000
    assert a["theirNotionalMicros"] == 30 * USD  # gross leader notional
    assert a["theirReferencePriceMicros"] == 533_333
    assert a["groupKey"] == f"u1:a1:BUY:{T0_ISO}:buffer"


def test_net_buy_sell_flush_with_negative_net_is_a_sell() -> None:
    # given +100,000 at 0.5 then −240,000 at 0.7: net −140,000
    driver = Driver(
        buffering(nettingMode="netBuySell"),
        trade(trade_id="b", at=T0, notional=10 * USD, price=500_000),
        trade(trade_id="s", at=T0 + 1, notional=24 * USD, price=700_000, side="SELL"),
    )

    a = only(driver.finish())

    # ref = floor((100,000×500,000 + 240,000×700,000) / 340,000) = 641,176
    assert a["side"] == "SELL"
    assert a["groupKey"] == f"u1:a1:SELL:{T0_ISO}:buffer"
    assert a["rawTargetMicros"] == 140_000
    assert a["theirReferencePriceMicros"] == 641_176
    assert a["budget"]["reducing"] is True


def test_net_buy_sell_zero_net_is_a_buy_side_skip() -> None:
    driver = Driver(
        buffering(nettingMode="netBuySell"),
        trade(trade_id="b", at=T0, notional=10 * USD),
        trade(trade_id="s", at=T0 + 1, notional=10 * USD, side="SELL"),
    )

    a = only(driver.finish())

    assert (a["side"], a["decision"], a["reasonCodes"]) == ("BUY", "SKIP", ["BUFFER_FLUSH_BELOW_MIN_EXEC"])
    assert a["rawTargetMicros"] == 0
    assert a["tradeIds"] == ["b", "s"]


def test_net_buy_sell_large_opposite_trade_joins_and_flushes_the_bucket() -> None:
    driver = Driver(buffering(nettingMode="netBuySell"), trade(trade_id="b", at=T0, notional=10 * USD))

    a = only(driver.feed(trade(trade_id="s", at=T0 + 5, notional=40 * USD, side="SELL")))

    # net = 100,000 − 400,000 = −300,000
    assert (a["sourceType"], a["side"], a["tradeIds"], a["rawTargetMicros"]) == (
        "BUFFER",
        "SELL",
        ["b", "s"],
        300_000,
    )


# --- min-leader filter (SPEC 4.3, 6.3, 11.3) ----------------------------------------------------------


def test_trade_below_min_leader_notional_is_skipped_immediately_and_not_buffered() -> None:
    driver = Driver(global_change(sizing={"minLeaderTradeNotionalMicros": 10 * USD}), buffering())

    a = only(driver.feed(trade(trade_id="tiny", at=T0 + 5, notional=9_999_999)))

    assert a["sourceType"] == "IMMEDIATE"
    assert (a["decision"], a["reasonCodes"]) == ("SKIP", ["LEADER_TRADE_BELOW_MIN_NOTIONAL"])
    assert a["groupKey"] == "u1:a1:BUY:1970-01-01T00:16:40.005Z"
    assert (a["rawTargetMicros"], a["targetNotionalMicros"], a["targetShareMicros"]) == (0, 0, 0)
    assert a["tradeIds"] == ["tiny"]
    assert pending(driver) == {}
    assert driver.finish() == []


def test_trade_at_min_leader_notional_is_buffered() -> None:
    driver = Driver(global_change(sizing={"minLeaderTradeNotionalMicros": 10 * USD}), buffering())

    assert driver.feed(trade(trade_id="ok", at=T0, notional=10 * USD)) == []
    assert pending(driver) == {("a1", "BUY"): ["ok"]}


def test_buffer_flush_is_not_subject_to_the_min_leader_check() -> None:
    # given a bucket with 15 USD of leader notional, then minLeaderTradeNotional raised to 50 USD
    driver = Driver(buffering(), trade(at=T0, notional=15 * USD))
    driver.feed(global_change(sizing={"minLeaderTradeNotionalMicros": 50 * USD}))

    a = only(driver.feed(tick(T0 + 600)))

    assert (a["sourceType"], a["decision"], a["reasonCodes"]) == ("BUFFER", "EXECUTE", [])


# --- turning buffering off (SPEC 12.3) -----------------------------------------------------------------


def test_turning_buffering_off_flushes_pending_buckets_at_the_next_tick() -> None:
    # given two pending buckets (quiet deadline T0+600)
    driver = Driver(
        buffering(),
        trade(trade_id="b1", at=T0, notional=10 * USD, asset="a1"),
        trade(trade_id="b2", at=T0 + 1, notional=10 * USD, asset="a2"),
    )

    # when buffering is turned off, then a trade arrives (aggregated now)
    assert attempts_of(driver.feed(global_change(buffering={"enabled": False}))) == []
    assert driver.feed(trade(trade_id="w", at=T0 + 100, notional=10 * USD)) == []
    assert set(pending(driver)) == {("a1", "BUY"), ("a2", "BUY")}

    # then the next tick flushes both, in creation order; the window stays open
    out = attempts_of(driver.feed(tick(T0 + 200)))
    assert [(a["tradeIds"], a["sourceType"], a["decidedAtMs"]) for a in out] == [
        (["b1"], "BUFFER", T0 + 200),
        (["b2"], "BUFFER", T0 + 200),
    ]
    assert pending(driver) == {}
    last = only(driver.finish())
    assert (last["tradeIds"], last["sourceType"]) == (["w"], "AGGREGATOR")


# --- config in force (SPEC 12.10) ----------------------------------------------------------------------


def test_classification_uses_the_threshold_in_force_when_the_trade_arrives() -> None:
    # given a 200,000 copy buffered under threshold 250,000
    driver = Driver(buffering(), trade(trade_id="t1", at=T0, notional=20 * USD))

    # when the threshold drops to 150,000
    assert attempts_of(driver.feed(buffering(notionalThresholdMicros=150_000))) == []
    assert pending(driver) == {("a1", "BUY"): ["t1"]}  # not reclassified

    # then the next 200,000 copy is large: it joins and flushes the bucket
    a = only(driver.feed(trade(trade_id="t2", at=T0 + 100, notional=20 * USD)))
    assert (a["sourceType"], a["tradeIds"], a["rawTargetMicros"]) == ("BUFFER", ["t1", "t2"], 400_000)


def test_bucket_keeps_the_copy_notional_sized_when_the_trade_arrived() -> None:
    # given a 20 USD trade buffered at 1% (200,000)
    driver = Driver(buffering(), trade(at=T0, notional=20 * USD))

    # when the copy rate doubles before the flush
    driver.feed(global_change(sizing={"copyPctNotionalBps": 200}))

    # then the flush carries 200,000, not 400,000
    a = only(driver.feed(tick(T0 + 600)))
    assert a["rawTargetMicros"] == 200_000


def test_flush_uses_min_exec_in_force_at_the_flush_raised() -> None:
    # given a 150,000 copy (above minExec 100,000: quiet deadline T0+600)
    driver = Driver(buffering(), trade(at=T0, notional=15 * USD))

    # when minExec rises to 200,000
    driver.feed(buffering(minExecNotionalMicros=200_000))

    # then no quiet flush; at maxTime the flush is below minExec
    assert driver.feed(tick(T0 + 600)) == []
    a = only(driver.feed(tick(T0 + 2_500)))
    assert (a["decision"], a["reasonCodes"], a["rawTargetMicros"]) == (
        "SKIP",
        ["BUFFER_FLUSH_BELOW_MIN_EXEC"],
        150_000,
    )


def test_flush_uses_min_exec_in_force_at_the_flush_lowered() -> None:
    # given an 80,000 copy (below minExec 100,000: no quiet flush)
    driver = Driver(buffering(), trade(at=T0, notional=8 * USD))

    # when minExec drops to 50,000
    driver.feed(buffering(minExecNotionalMicros=50_000))

    # then quiet applies and the flush executes
    a = only(driver.feed(tick(T0 + 600)))
    assert (a["decision"], a["rawTargetMicros"]) == ("EXECUTE", 80_000)


def test_flush_uses_max_buffer_ms_in_force_at_the_flush() -> None:
    driver = Driver(buffering(), trade(at=T0, notional=5 * USD))

    driver.feed(buffering(maxBufferMs=1_000))

    assert driver.feed(tick(T0 + 999)) == []
    assert only(driver.feed(tick(T0 + 1_000)))["decidedAtMs"] == T0 + 1_000


# --- conservation (SPEC 4.4) ---------------------------------------------------------------------------


def test_every_accepted_trade_is_in_exactly_one_attempt_with_buffering() -> None:
    # given small, large, opposite-side, filtered, repeated and late trades of two leaders
    driver = Driver(
        global_change(sizing={"minLeaderTradeNotionalMicros": 2 * USD}),
        buffering(),
        trade("u1", trade_id="s1", at=T0, notional=10 * USD),
        trade("u1", trade_id="s2", at=T0 + 10, notional=20 * USD),
        trade("u1", trade_id="tiny", at=T0 + 20, notional=1 * USD),  # filtered
        trade("u1", trade_id="sell", at=T0 + 30, notional=5 * USD, side="SELL"),  # flushes BUY bucket
        trade("u1", trade_id="s1", at=T0 + 40, notional=10 * USD),  # duplicate
        trade("u2", trade_id="s1", at=T0 + 50, notional=10 * USD),
        trade("u2", trade_id="big", at=T0 + 60, notional=90 * USD),  # joins u2's bucket
        trade("u1", trade_id="x1", at=T0 + 70, notional=30 * USD, asset="a2"),  # large, immediate
        tick(T0 + 800),
        trade("u1", trade_id="late", at=T0 + 5, notional=5 * USD, asset="a3"),
        trade("u2", trade_id="s3", at=T0 + 900, notional=5 * USD),
    )

    driver.finish()

    counts = Counter((a["followedUserId"], t) for a in driver.attempts for t in a["tradeIds"])
    accepted = [("u1", t) for t in ("s1", "s2", "tiny", "sell", "x1", "late")]
    accepted += [("u2", t) for t in ("s1", "big", "s3")]
    assert counts == Counter(accepted)
    assert all(a["bufferedTradeCount"] == len(a["tradeIds"]) for a in driver.attempts)
    assert len({a["attemptId"] for a in driver.attempts}) == len(driver.attempts)
    assert pending(driver, "u1") == pending(driver, "u2") == {}


def test_a_bucket_whose_deadline_moved_later_is_decided_after_what_falls_due_before_it() -> None:
    # Given a bucket due at +100 ms, then a config change that moves its deadline to +2,500 ms
    # (buffering off again) and a trade that opens an aggregation window ending at +250 ms
    driver = Driver(
        global_change(buffering={"enabled": True, "quietFlushMs": 50, "maxBufferMs": 100}),
        trade(trade_id="small", at=T0, notional=0),
        global_change(buffering={}),
        trade(trade_id="windowed", at=T0, notional=0),
    )
    # When the clock jumps past both
    driver.feed(tick(T0 + 2_500))
    # Then the window (due at +250) is decided before the bucket (due at +2,500 now), as a restart would
    assert [a["tradeIds"] for a in driver.attempts] == [["windowed"], ["small"]]
