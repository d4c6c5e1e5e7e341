"""From trades to groups with buffering disabled (SPEC 4.1, 4.2, 4.4, 7, 12.3, 12.5, 12.6).

Default config unless a test says otherwise: aggregationWindowMs = 250, fixed rate 1%,
minTradeNotionalMicros = 5 USD, equity 10,000 USD. T0 = 1,000,000 ms is a multiple of 250,
so [T0, T0 + 250) is one aligned window.
"""

from __future__ import annotations

import uuid
from collections import Counter

from models.events import CopyAttemptWire, Output
from tests.factories import T0, USD, Driver, attempts_of, equity, global_change, shadow, tick, trade

T0_ISO = "1970-01-01T00:16:40.000Z"
W = 250


def only(outputs: list[Output]) -> CopyAttemptWire:
    """The single copy attempt in `outputs` (fails when there is not exactly one output)."""
    assert len(outputs) == 1, outputs
    attempts = attempts_of(outputs)
    assert len(attempts) == 1, outputs
    return attempts[0]


def expected_attempt_id(leader: str, group_key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"EXEC_GLOBAL|{leader}|{group_key}"))


# --- dedup (SPEC 4.1) -------------------------------------------------------------------------------


def test_repeated_trade_id_for_the_same_leader_is_ignored_entirely() -> None:
    # given a trade x at price 0.5 in an open window
    driver = Driver(trade(trade_id="x", at=T0, price=500_000))

    # when x arrives again, later and at another price
    out = driver.feed(trade(trade_id="x", at=T0 + 1_000, price=700_000))

    # then nothing comes out, the clock did not move (the window is still open) and the mark is unchanged
    assert out == []
    assert driver.state.clock_ms == T0
    assert driver.state.leaders["u1"].mark_price_micros["a1"] == 500_000
    driver.finish()
    assert [a["tradeIds"] for a in driver.attempts] == [["x"]]


def test_repeated_trade_id_does_not_change_our_exposure() -> None:
    # given we hold 10 shares of a1 marked at 0.5 (a 100 USD trade → 1 USD raised to 5 USD at 0.5)
    driver = Driver(trade(trade_id="x", at=T0, price=500_000), tick(T0 + W))
    assert driver.state.leaders["u1"].exposure_micros == 5 * USD

    # when x is repeated at price 0.9
    out = driver.feed(trade(trade_id="x", at=T0 + W + 1, price=900_000))

    # then our exposure is not revalued
    assert out == []
    assert driver.state.leaders["u1"].exposure_micros == 5 * USD


def test_same_trade_id_for_another_leader_is_not_a_duplicate() -> None:
    driver = Driver(trade("u1", trade_id="x", at=T0), trade("u2", trade_id="x", at=T0 + 1))

    driver.finish()

    assert sorted((a["followedUserId"], a["tradeIds"][0]) for a in driver.attempts) == [
        ("u1", "x"),
        ("u2", "x"),
    ]


def test_trade_id_is_still_a_duplicate_exactly_at_the_dedup_window() -> None:
    # given dedupWindowMs = 60,000 and x accepted at T0
    driver = Driver(global_change(system={"dedupWindowMs": 60_000}), trade(trade_id="x", at=T0))

    # when the clock is exactly 60,000 ms later
    driver.feed(tick(T0 + 60_000))
    out = driver.feed(trade(trade_id="x", at=T0 + 60_000))

    # then x is still within the window: ignored
    assert out == []
    assert driver.state.clock_ms == T0 + 60_000
    driver.finish()
    assert [a["tradeIds"] for a in driver.attempts] == [["x"]]


def test_trade_id_seen_more_than_dedup_window_ago_is_accepted_again() -> None:
    driver = Driver(global_change(system={"dedupWindowMs": 60_000}), trade(trade_id="x", at=T0))

    driver.feed(tick(T0 + 60_001))
    driver.feed(trade(trade_id="x", at=T0 + 60_001))
    driver.finish()

    assert [(a["tradeIds"], a["decidedAtMs"]) for a in driver.attempts] == [
        (["x"], T0 + 60_001),  # the first window, closed by the tick
        (["x"], T0 + 60_250),  # the repeat, accepted into window [T0+60,000, T0+60,250)
    ]


def test_repeat_is_judged_against_the_clock_before_it_arrives() -> None:
    # Ambiguity (SPEC 4.1): a repeat whose own detectTimeMs is past the dedup window is judged against
    # the clock before it arrives (duplicates must not move the clock), so it is still a duplicate.
    driver = Driver(global_change(system={"dedupWindowMs": 60_000}), trade(trade_id="x", at=T0))

    out = driver.feed(trade(trade_id="x", at=T0 + 120_000))

    assert out == []
    assert driver.state.clock_ms == T0


# --- aggregation windows (SPEC 4.2, 12.6) --------------------------------------------------------------


def test_trades_of_one_leader_asset_and_side_in_one_window_form_one_aggregator_group() -> None:
    # given three BUYs of a1 inside [T0, T0+250), the second on another market id
    driver = Driver(
        trade(trade_id="t1", at=T0, notional=100 * USD, price=500_000, market="m1"),  # 200 shares
        trade(trade_id="t2", at=T0 + 100, notional=30 * USD, price=600_000, market="m2"),  # 50 shares
        trade(trade_id="t3", at=T0 + 249, notional=7 * USD, price=700_000, shares=11_000_003),
    )

    # when the clock reaches the window end
    a = only(driver.feed(tick(T0 + W)))

    # then one group with the summed notional and the floored VWAP
    # Σnotional = 137,000,000; Σshares = 261,000,003; floor(137e6 × 1e6 / 261,000,003) = 524,904
    assert a["sourceType"] == "AGGREGATOR"
    assert a["tradeIds"] == ["t1", "t2", "t3"]
    assert a["bufferedTradeCount"] == 3
    assert a["theirNotionalMicros"] == 137_000_000
    assert a["theirReferencePriceMicros"] == 524_904
    assert a["marketId"] == "m1"
    assert a["assetId"] == "a1"
    assert a["side"] == "BUY"
    assert a["groupKey"] == f"u1:a1:BUY:{T0_ISO}"
    assert a["decidedAtMs"] == T0 + W
    # fixed rate 1% of 137 USD = 1,370,000 (before the min-trade clamp)
    assert a["rawTargetMicros"] == 1_370_000


def test_windows_are_aligned_to_multiples_of_the_width() -> None:
    # given W = 300: T0 = 1,000,000 lies in [999,900, 1,000,200)
    driver = Driver(
        global_change(system={"aggregationWindowMs": 300}),
        trade(trade_id="t1", at=T0),
        trade(trade_id="t2", at=T0 + 199),
    )

    # when a trade arrives at T0+200, the aligned end
    a = only(driver.feed(trade(trade_id="t3", at=T0 + 200)))

    # then the aligned window closed with both trades, keyed by its start
    assert a["tradeIds"] == ["t1", "t2"]
    assert a["groupKey"] == "u1:a1:BUY:1970-01-01T00:16:39.900Z"
    assert a["decidedAtMs"] == T0 + 200
    assert only(driver.finish())["groupKey"] == "u1:a1:BUY:1970-01-01T00:16:40.200Z"


def test_window_stays_open_until_the_clock_reaches_its_end() -> None:
    driver = Driver(trade(at=T0 + 10))

    assert driver.feed(tick(T0 + W - 1)) == []
    a = only(driver.feed(tick(T0 + W)))

    assert a["decidedAtMs"] == T0 + W


def test_trade_at_the_window_end_closes_it_and_opens_the_next_window() -> None:
    driver = Driver(trade(trade_id="t1", at=T0))

    a = only(driver.feed(trade(trade_id="t2", at=T0 + W)))

    assert (a["tradeIds"], a["decidedAtMs"]) == (["t1"], T0 + W)
    last = only(driver.finish())
    assert last["tradeIds"] == ["t2"]
    assert last["groupKey"] == "u1:a1:BUY:1970-01-01T00:16:40.250Z"
    assert last["decidedAtMs"] == T0 + 2 * W


def test_other_asset_side_leader_or_window_makes_another_group() -> None:
    # given trades that differ from the first in exactly one of asset, side, leader, window
    driver = Driver(
        trade("u1", trade_id="base", at=T0, asset="a1", side="BUY"),
        trade("u1", trade_id="asset", at=T0 + 1, asset="a2", side="BUY"),
        trade("u1", trade_id="side", at=T0 + 2, asset="a1", side="SELL"),
        trade("u2", trade_id="leader", at=T0 + 3, asset="a1", side="BUY"),
    )

    # when a trade of the next window arrives
    out = attempts_of(driver.feed(trade("u1", trade_id="window", at=T0 + W, asset="a1", side="BUY")))
    out += attempts_of(driver.finish())

    # then five groups; the four due at T0+250 in creation order, before the next window
    assert [(a["followedUserId"], a["groupKey"], a["tradeIds"]) for a in out] == [
        ("u1", f"u1:a1:BUY:{T0_ISO}", ["base"]),
        ("u1", f"u1:a2:BUY:{T0_ISO}", ["asset"]),
        ("u1", f"u1:a1:SELL:{T0_ISO}", ["side"]),
        ("u2", f"u2:a1:BUY:{T0_ISO}", ["leader"]),
        ("u1", "u1:a1:BUY:1970-01-01T00:16:40.250Z", ["window"]),
    ]
    assert [a["decidedAtMs"] for a in out] == [T0 + W] * 4 + [T0 + 2 * W]


def test_due_windows_are_decided_in_deadline_order_not_creation_order() -> None:
    # given a 1,000 ms window opened first, then a 250 ms window (the width changed in between)
    driver = Driver(
        global_change(system={"aggregationWindowMs": 1_000}),
        trade(trade_id="wide", at=T0, asset="a1"),
        global_change(system={"aggregationWindowMs": 250}),
        trade(trade_id="narrow", at=T0 + 10, asset="a2"),
    )

    # when one tick passes both ends
    out = attempts_of(driver.feed(tick(T0 + 5_000)))

    # then the window that ended first is decided first; both at the new clock
    assert [a["tradeIds"] for a in out] == [["narrow"], ["wide"]]
    assert [a["decidedAtMs"] for a in out] == [T0 + 5_000, T0 + 5_000]


def test_due_windows_are_decided_before_the_event_that_moved_the_clock() -> None:
    # given an open window for a1, then W = 0 (so the next trade is decided as soon as it is processed)
    driver = Driver(
        trade(trade_id="windowed", at=T0, asset="a1"),
        global_change(system={"aggregationWindowMs": 0}),
    )

    # when a trade past the window end arrives
    out = attempts_of(driver.feed(trade(trade_id="own", at=T0 + 300, asset="a2")))

    # then the window comes out first, then the trade's own group, both at the new clock
    assert [a["tradeIds"] for a in out] == [["windowed"], ["own"]]
    assert [a["decidedAtMs"] for a in out] == [T0 + 300, T0 + 300]


def test_late_trade_for_a_closed_window_is_its_own_group_decided_at_once() -> None:
    # given the window [T0, T0+250) was decided at T0+300
    driver = Driver(trade(trade_id="on-time", at=T0))
    first = only(driver.feed(tick(T0 + 300)))
    assert first["groupKey"] == f"u1:a1:BUY:{T0_ISO}"

    # when two trades for that window arrive late
    late = only(driver.feed(trade(trade_id="late-1", at=T0 + 100)))
    later = only(driver.feed(trade(trade_id="late-2", at=T0 + 200)))

    # then each is decided at once at the current clock, with a suffixed key
    assert (late["tradeIds"], late["groupKey"], late["decidedAtMs"]) == (
        ["late-1"],
        f"u1:a1:BUY:{T0_ISO}~2",
        T0 + 300,
    )
    assert (later["tradeIds"], later["groupKey"]) == (["late-2"], f"u1:a1:BUY:{T0_ISO}~3")
    assert late["sourceType"] == later["sourceType"] == "AGGREGATOR"
    assert driver.state.clock_ms == T0 + 300


def test_trade_for_a_window_ending_exactly_at_the_clock_is_decided_at_once() -> None:
    # given the clock is exactly at the end of window [T0, T0+250)
    driver = Driver(tick(T0 + W))

    # when a trade for that window arrives
    a = only(driver.feed(trade(trade_id="edge", at=T0 + 249)))

    # then the window is already closed: decided at once
    assert (a["tradeIds"], a["decidedAtMs"], a["groupKey"]) == (["edge"], T0 + W, f"u1:a1:BUY:{T0_ISO}")
    assert driver.state.leaders["u1"].windows == {}


def test_late_trade_group_key_is_its_window_start() -> None:
    # a late trade for a window that never had a group keeps the plain window-start key
    driver = Driver(tick(T0 + 300))

    a = only(driver.feed(trade(trade_id="late", at=T0 + 100, asset="a2")))

    assert a["groupKey"] == f"u1:a2:BUY:{T0_ISO}"
    assert a["decidedAtMs"] == T0 + 300


def test_group_keys_are_unique_per_leader_only() -> None:
    # given u1 used the key of window T0 twice, u2 uses the same window
    driver = Driver(trade("u1", at=T0), trade("u2", at=T0), tick(T0 + 300), trade("u1", at=T0 + 1))

    driver.finish()

    assert sorted((a["followedUserId"], a["groupKey"]) for a in driver.attempts) == [
        ("u1", f"u1:a1:BUY:{T0_ISO}"),
        ("u1", f"u1:a1:BUY:{T0_ISO}~2"),
        ("u2", f"u2:a1:BUY:{T0_ISO}"),
    ]


def test_late_trade_after_the_dedup_window_still_gets_an_unused_group_key() -> None:
    # given the window T0 was decided, and the clock is 70 s later (dedupWindowMs = 60,000)
    driver = Driver(
        global_change(system={"dedupWindowMs": 60_000}),
        trade(trade_id="a", at=T0),
        tick(T0 + 300),
        tick(T0 + 70_000),
    )

    # when a new trade for that window arrives late
    late = only(driver.feed(trade(trade_id="b", at=T0 + 100)))

    # then it still gets a key (and attemptId) of its own
    assert late["groupKey"] == f"u1:a1:BUY:{T0_ISO}~late1"  # the ~n counts were forgotten
    assert len({a["attemptId"] for a in driver.attempts}) == 2


def test_attempt_id_is_uuid5_of_leader_and_group_key_and_all_are_distinct() -> None:
    driver = Driver(
        trade("u1", at=T0),
        trade("u2", at=T0),
        trade("u1", at=T0, asset="a2"),
        tick(T0 + 300),
        trade("u1", at=T0 + 1),  # late: key ~2
        trade("u1", at=T0 + 2),  # late: key ~3
    )
    driver.finish()

    attempts = driver.attempts
    assert len(attempts) == 5
    for a in attempts:
        assert a["attemptId"] == expected_attempt_id(a["followedUserId"], a["groupKey"])
    assert len({a["attemptId"] for a in attempts}) == 5
    assert attempts[-1]["attemptId"] == expected_attempt_id("u1", f"u1:a1:BUY:{T0_ISO}~3")


def test_zero_window_makes_every_trade_its_own_group_keyed_by_detect_time() -> None:
    driver = Driver(global_change(system={"aggregationWindowMs": 0}))

    a = only(driver.feed(trade(trade_id="t1", at=T0 + 123, notional=30 * USD, price=600_000)))
    b = only(driver.feed(trade(trade_id="t2", at=T0 + 123)))

    assert a["groupKey"] == "u1:a1:BUY:1970-01-01T00:16:40.123Z"
    assert (a["tradeIds"], a["decidedAtMs"], a["sourceType"]) == (["t1"], T0 + 123, "AGGREGATOR")
    assert (a["theirNotionalMicros"], a["theirReferencePriceMicros"]) == (30 * USD, 600_000)
    assert b["groupKey"] == "u1:a1:BUY:1970-01-01T00:16:40.123Z~2"


def test_zero_window_late_trade_is_keyed_by_its_detect_time_and_decided_at_the_clock() -> None:
    driver = Driver(global_change(system={"aggregationWindowMs": 0}), tick(T0 + 500))

    a = only(driver.feed(trade(at=T0 + 7)))

    assert a["groupKey"] == "u1:a1:BUY:1970-01-01T00:16:40.007Z"
    assert a["decidedAtMs"] == T0 + 500


def test_widening_the_window_leaves_an_open_window_ending_where_it_did() -> None:
    # given a window [T0, T0+250) is open
    driver = Driver(trade(at=T0))

    # when W becomes 1,000
    driver.feed(global_change(system={"aggregationWindowMs": 1_000}))

    # then it still closes at T0+250
    assert driver.feed(tick(T0 + W - 1)) == []
    assert only(driver.feed(tick(T0 + W)))["decidedAtMs"] == T0 + W


def test_narrowing_the_window_leaves_an_open_window_ending_where_it_did() -> None:
    driver = Driver(global_change(system={"aggregationWindowMs": 1_000}), trade(trade_id="t1", at=T0))

    driver.feed(global_change(system={"aggregationWindowMs": 250}))

    assert driver.feed(tick(T0 + 999)) == []
    a = only(driver.feed(tick(T0 + 1_000)))
    assert (a["tradeIds"], a["groupKey"]) == (["t1"], f"u1:a1:BUY:{T0_ISO}")


def test_trade_after_a_width_change_opens_a_window_of_the_new_width_beside_the_old_one() -> None:
    # Ambiguity (SPEC 12.3): the code opens a second window [T0, T0+250) for the same leader, asset
    # and side next to the still-open [T0, T0+1,000); both share a base key, so the later gets ~2.
    driver = Driver(
        global_change(system={"aggregationWindowMs": 1_000}),
        trade(trade_id="old", at=T0),
        global_change(system={"aggregationWindowMs": 250}),
        trade(trade_id="new", at=T0 + 10),
    )

    out = attempts_of(driver.feed(tick(T0 + 1_000)))

    assert [(a["tradeIds"], a["groupKey"]) for a in out] == [
        (["new"], f"u1:a1:BUY:{T0_ISO}"),
        (["old"], f"u1:a1:BUY:{T0_ISO}~2"),
    ]


def test_snapshots_and_config_changes_do_not_move_the_clock() -> None:
    driver = Driver(trade(at=T0))

    out = driver.feed(
        shadow(at=T0 + 10_000),
        equity(20_000 * USD, at=T0 + 10_000),
        global_change(sizing={"copyPctNotionalBps": 200}),
    )

    assert attempts_of(out) == []
    assert driver.state.clock_ms == T0
    assert only(driver.feed(tick(T0 + W)))["decidedAtMs"] == T0 + W


def test_finish_decides_every_open_window_at_the_last_window_end() -> None:
    driver = Driver(
        trade("u1", trade_id="a", at=T0),
        trade("u2", trade_id="b", at=T0 + 100),
        trade("u1", trade_id="c", at=T0 + 300, asset="a2"),
    )
    assert [a["tradeIds"] for a in driver.attempts] == [["a"], ["b"]]  # window T0 closed by c

    out = attempts_of(driver.finish())

    assert [(a["tradeIds"], a["decidedAtMs"]) for a in out] == [(["c"], T0 + 500)]
    assert driver.state.leaders["u1"].windows == {}


def test_every_accepted_trade_is_in_exactly_one_attempt() -> None:
    # given on-time, late, repeated and multi-leader trades
    driver = Driver(
        trade("u1", trade_id="t1", at=T0),
        trade("u1", trade_id="t2", at=T0 + 10, side="SELL"),
        trade("u2", trade_id="t1", at=T0 + 20),
        trade("u1", trade_id="t1", at=T0 + 30),  # duplicate
        trade("u1", trade_id="t3", at=T0 + 400, asset="a2"),
        trade("u1", trade_id="t4", at=T0 + 50),  # late
        tick(T0 + 450),
        trade("u2", trade_id="t5", at=T0 + 700),
    )

    driver.finish()

    counts = Counter((a["followedUserId"], t) for a in driver.attempts for t in a["tradeIds"])
    assert counts == Counter(
        {("u1", "t1"): 1, ("u1", "t2"): 1, ("u1", "t3"): 1, ("u1", "t4"): 1, ("u2", "t1"): 1, ("u2", "t5"): 1}
    )
    assert all(a["bufferedTradeCount"] == len(a["tradeIds"]) for a in driver.attempts)


# --- marks (SPEC 7, 12.5) ------------------------------------------------------------------------------


def test_mark_moves_when_a_trade_arrives_before_its_group_is_decided() -> None:
    # given we hold 10 shares of a1 (a 5 USD fill at 0.5): exposure 5 USD
    driver = Driver(trade(at=T0, price=500_000), tick(T0 + W))
    assert driver.state.leaders["u1"].exposure_micros == 5 * USD

    # when the leader trades a1 at 0.8 (its window is still open)
    out = driver.feed(trade(at=T0 + 300, price=800_000))

    # then our exposure is revalued at once: 10 shares × 0.8
    assert out == []
    assert driver.state.leaders["u1"].exposure_micros == 8 * USD
    a = only(driver.feed(tick(T0 + 2 * W)))
    assert a["budget"]["currentExposureMicros"] == 8 * USD


def test_window_closed_by_a_trade_is_decided_before_that_trade_moves_the_mark() -> None:
    # given 10 shares of a1 and an open window with a trade at 0.6 (mark now 0.6: exposure 6 USD)
    driver = Driver(trade(at=T0, price=500_000), tick(T0 + W), trade(at=T0 + 300, price=600_000))

    # when a trade at 0.9 arrives at the window end
    a = only(driver.feed(trade(at=T0 + 2 * W, price=900_000)))

    # then the window saw the 0.6 mark; the fill (5 USD at 0.6 = 8,333,333 shares) was marked at 0.6,
    # and only then the new trade marked all 18,333,333 shares at 0.9
    assert a["budget"]["currentExposureMicros"] == 6 * USD
    assert a["decision"] == "EXECUTE"
    assert a["targetShareMicros"] == 8_333_333
    assert driver.state.leaders["u1"].exposure_micros == 16_499_999  # floor(18,333,333 × 0.9)
