"""The orderUpdated output (not in the SPEC; docs/decisions.md, "The read side of the venue loop"): every
change of an order's state (SPEC 13.3) leaves the core as the order's whole state after it, so readers store
what the core decided instead of re-deriving the order rules."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings

from models.engine import InputEvent, finish, process
from models.events import OrderExpired, OrderUpdated, OrderUpdatedWire, Output
from models.state import PartitionState
from streams.serde import encode
from tests.factories import T0, USD, Driver, global_change, report, resolution, tick, trade
from tests.unit.test_venue_properties import venue_tapes

TARGET = 5 * USD  # a default trade (100 USD at 0.5) copies the 5 USD minimum: 10 shares
SHARES = 10 * USD


def reports_mode(**keys: Any) -> InputEvent:
    return global_change(system={"aggregationWindowMs": 0, "fillModel": "reports", **keys})


def updates(outputs: list[Output]) -> list[dict[str, Any]]:
    return [o.wire for o in outputs if isinstance(o, OrderUpdatedWire)]


def kinds(outputs: list[Output]) -> list[str]:
    return [o["kind"] if isinstance(o, dict) else o.kind for o in outputs]


def opened() -> tuple[Driver, str]:
    driver = Driver(reports_mode(orderTimeoutMs=1_000), trade(at=T0), orders=True)
    return driver, driver.attempts[0]["attemptId"]


def test_an_execute_in_reports_mode_is_followed_by_its_open_order() -> None:
    driver, attempt_id = opened()
    assert kinds(driver.outputs) == ["copyAttempt", "orderUpdated"]
    attempt = driver.attempts[0]
    (update,) = updates(driver.outputs)
    assert update == {
        "kind": "orderUpdated",
        "followedUserId": "u1",
        "attemptId": attempt_id,
        "revision": 1,
        "assetId": "a1",
        "side": "BUY",
        "status": "OPEN",
        "closeReason": None,
        "targetShareMicros": SHARES,
        "targetNotionalMicros": TARGET,
        "referencePriceMicros": attempt["theirReferencePriceMicros"],
        "filledShareMicros": 0,
        "filledNotionalMicros": 0,
        "reservedMicros": TARGET,
        "lastReportId": None,
        "openedAtMs": T0,
        "updatedAtMs": T0,
        "closedAtMs": None,
        "configVersion": driver.state.config.version,
    }
    # the wire dict is exactly the model's JSON, field for field in its order
    wrapped = next(o for o in driver.outputs if isinstance(o, OrderUpdatedWire))
    assert encode(wrapped) == encode(OrderUpdated.model_validate(update))


def test_paper_fills_and_skips_open_no_order() -> None:
    paper = Driver(global_change(system={"aggregationWindowMs": 0}), trade(at=T0), orders=True)
    assert kinds(paper.outputs) == ["copyAttempt"]
    skip = Driver(reports_mode(), trade(at=T0, side="SELL"), orders=True)  # nothing held
    assert [a["decision"] for a in skip.attempts] == ["SKIP"]
    assert updates(skip.outputs) == []


def test_each_applied_report_outputs_the_order_after_it() -> None:
    driver, attempt_id = opened()
    (partial,) = updates(driver.feed(report(attempt_id, "PARTIAL", 4 * USD, 2 * USD, report_id="r1")))
    assert (partial["revision"], partial["status"], partial["closeReason"]) == (2, "OPEN", None)
    assert (partial["filledShareMicros"], partial["filledNotionalMicros"]) == (4 * USD, 2 * USD)
    assert partial["reservedMicros"] == TARGET - 2 * USD
    assert partial["lastReportId"] == "r1"
    (filled,) = updates(driver.feed(report(attempt_id, "FILLED", SHARES, 5_100_000, report_id="r2")))
    assert (filled["revision"], filled["status"], filled["closeReason"]) == (3, "FILLED", "REPORT")
    assert (filled["reservedMicros"], filled["closedAtMs"], filled["lastReportId"]) == (0, T0, "r2")


def test_a_sell_order_reserves_shares() -> None:
    driver, attempt_id = opened()
    driver.feed(report(attempt_id, "FILLED", SHARES, TARGET))
    out = driver.feed(trade(at=T0 + 1, side="SELL", trade_id="s1"))
    (sell,) = updates(out)
    assert (sell["side"], sell["reservedMicros"]) == ("SELL", sell["targetShareMicros"])


def test_reports_that_change_nothing_output_nothing() -> None:
    driver, attempt_id = opened()
    driver.feed(report(attempt_id, "PARTIAL", 4 * USD, 2 * USD, report_id="r1"))
    assert (
        updates(driver.feed(report(attempt_id, "PARTIAL", 4 * USD, 2 * USD, report_id="r1"))) == []
    )  # repeat
    assert updates(driver.feed(report(attempt_id, "FILLED", 3 * USD, 3 * USD, report_id="r2"))) == []  # stale
    assert updates(driver.feed(report("unknown", report_id="r3"))) == []


def test_a_report_after_the_close_applies_its_fills_and_keeps_the_closing_status() -> None:
    driver, attempt_id = opened()
    driver.feed(report(attempt_id, "REJECTED", report_id="r1"))
    (late,) = updates(driver.feed(report(attempt_id, "FILLED", 1 * USD, 1 * USD, report_id="r2")))
    assert (late["revision"], late["status"], late["closeReason"]) == (3, "REJECTED", "REPORT")
    assert (late["filledShareMicros"], late["reservedMicros"], late["lastReportId"]) == (1 * USD, 0, "r2")


def test_a_timeout_outputs_the_expiry_then_the_expired_order() -> None:
    driver, attempt_id = opened()
    out = driver.feed(tick(T0 + 1_000))
    assert kinds(out) == ["orderExpired", "orderUpdated"]
    expired, update = out[0], updates(out)[0]
    assert isinstance(expired, OrderExpired)
    assert (update["attemptId"], update["status"], update["closeReason"]) == (
        attempt_id,
        "EXPIRED",
        "TIMEOUT",
    )
    assert (update["revision"], update["closedAtMs"], update["updatedAtMs"]) == (2, T0 + 1_000, T0 + 1_000)
    assert update["reservedMicros"] == 0


def test_a_resolution_expires_the_open_orders_of_its_market() -> None:
    driver, attempt_id = opened()
    out = driver.feed(resolution("a1", USD))
    assert kinds(out) == ["orderExpired", "orderUpdated"]
    (update,) = updates(out)
    assert (update["status"], update["closeReason"], update["revision"]) == ("EXPIRED", "MARKET_RESOLVED", 2)
    # a report for its resolved market changes nothing, so outputs no order
    assert updates(driver.feed(report(attempt_id, "FILLED", SHARES, TARGET))) == []


def test_an_order_opened_at_the_end_of_input_is_output_after_its_attempt() -> None:
    config = global_change(
        system={"aggregationWindowMs": 0, "fillModel": "reports"},
        buffering={"enabled": True, "minExecNotionalMicros": 0},
    )
    driver = Driver(config, trade(at=T0, notional=5 * USD), orders=True)
    driver.feed(global_change(buffering={"enabled": False, "minExecNotionalMicros": 0}))
    assert driver.attempts == []  # still buffered
    out = driver.finish()
    assert kinds(out) == ["copyAttempt", "orderUpdated"]
    assert updates(out)[0]["attemptId"] == driver.attempts[0]["attemptId"]


# --- over random tapes: the updates are the core's orders ------------------------------------------------


def _run(events: list[InputEvent]) -> tuple[PartitionState, list[Output]]:
    state = PartitionState()
    outputs = [o for e in events for o in process(state, e)]
    return state, outputs + finish(state)


@settings(max_examples=200, deadline=None)
@given(venue_tapes())
def test_the_latest_update_of_every_order_is_the_cores_order(events: list[InputEvent]) -> None:
    state, outputs = _run(events)
    latest: dict[str, dict[str, Any]] = {}
    for i, o in enumerate(outputs):
        if isinstance(o, OrderUpdatedWire):
            OrderUpdated.model_validate(o.wire)
            aid = o.wire["attemptId"]
            # revisions count the changes: 1 when opened, then one more per output
            assert o.wire["revision"] == latest.get(aid, {"revision": 0})["revision"] + 1
            if o.wire["revision"] == 1:  # right after the attempt that opened it
                before = outputs[i - 1]
                assert isinstance(before, dict)
                assert before["attemptId"] == aid
                assert before["decision"] == "EXECUTE"
            latest[aid] = o.wire
        elif isinstance(o, OrderExpired):  # followed by the expired order
            after = outputs[i + 1]
            assert isinstance(after, OrderUpdatedWire)
            assert (after.wire["attemptId"], after.wire["status"]) == (o.attempt_id, "EXPIRED")
    for leader_id, leader in state.leaders.items():
        for aid, order in leader.orders.items():
            wire = latest[aid]
            assert wire["followedUserId"] == leader_id
            assert (wire["status"] == "OPEN") == order.open
            assert (wire["filledShareMicros"], wire["filledNotionalMicros"]) == (
                order.filled_share_micros,
                order.filled_notional_micros,
            )
            assert wire["reservedMicros"] == order.reserved()
        open_buys = [
            w
            for w in latest.values()
            if w["followedUserId"] == leader_id and w["side"] == "BUY" and w["status"] == "OPEN"
        ]
        # what a reader storing the latest updates sums is the core's reservation (SPEC 13.3 point 2)
        assert sum(w["reservedMicros"] for w in open_buys) == leader.reserved_buy_micros
