"""``copybot replay`` with the venue loop's inputs (SPEC 13, 10): every output kind on stdout in the order it
is produced, ignored execution reports on stderr with the other diagnostics, PnL in ``--summary``."""

from __future__ import annotations

import orjson
from pydantic import BaseModel

from models.events import CopyAttempt, LeaderBook, OrderExpired, OrderUpdated, PositionSettled
from tests.cli import copybot
from tests.factories import T0, USD, global_change, report, resolution, tick, trade
from tests.test_replay_cli import lines


def tape(*events: BaseModel) -> bytes:
    """JSON lines of `events` as a producer writes them (sections left out stay out)."""
    return b"".join(e.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n" for e in events)


def attempt_id_of(stdout: bytes, trade_id: str) -> str:
    for row in lines(stdout):
        if row["kind"] == "copyAttempt" and trade_id in row["tradeIds"]:  # type: ignore[operator]
            return str(row["attemptId"])
    raise AssertionError(f"no attempt for {trade_id}")


def test_replay_writes_every_output_kind_in_order_and_ignored_reports_to_stderr() -> None:
    # given reports mode, a paper fill, an order, a resolution and reports (one for an unknown attempt)
    config = global_change(system={"aggregationWindowMs": 0})
    reports_mode = global_change(
        system={"aggregationWindowMs": 0, "fillModel": "reports", "orderTimeoutMs": 1_000}
    )
    first = [config, trade(at=T0, trade_id="p1"), reports_mode, trade(at=T0 + 1, asset="a2", trade_id="o1")]
    probe = copybot("replay", "-", stdin=tape(*first))
    order_id = attempt_id_of(probe.stdout, "o1")
    events = [
        *first,
        report(order_id, "PARTIAL", 4 * USD, 2 * USD, report_id="r1"),
        report("nope", report_id="r2"),
        resolution("a1", USD),
        tick(T0 + 2_000),
    ]
    result = copybot("replay", "-", stdin=tape(*events))
    assert result.returncode == 0, result.stderr.decode()

    out = lines(result.stdout)
    assert [o["kind"] for o in out] == [
        "copyAttempt",
        "copyAttempt",
        "orderUpdated",  # the order o1 opened
        "orderUpdated",  # r1 applied
        "positionSettled",
        "orderExpired",
        "orderUpdated",  # o1 expired
        "leaderBook",
    ]
    CopyAttempt.model_validate(out[0])
    orders = [OrderUpdated.model_validate(out[i]) for i in (2, 3, 6)]
    assert [(o.attempt_id, o.revision, o.status, o.filled_share_micros) for o in orders] == [
        (order_id, 1, "OPEN", 0),
        (order_id, 2, "OPEN", 4 * USD),
        (order_id, 3, "EXPIRED", 4 * USD),
    ]
    settled = PositionSettled.model_validate(out[4])
    assert (settled.asset_id, settled.realized_pnl_micros) == ("a1", 5 * USD)
    expired = OrderExpired.model_validate(out[5])
    assert (expired.attempt_id, expired.filled_share_micros, expired.expired_at_ms) == (
        order_id,
        4 * USD,
        T0 + 2_000,
    )
    book = LeaderBook.model_validate(out[7])
    assert book.as_of_ms == T0 + 2_000
    assert book.realized_pnl_micros == 5 * USD
    assert [(p["assetId"], p["shareMicros"]) for p in book.positions] == [("a2", 4 * USD)]
    assert lines(result.stderr) == [
        {"kind": "executionReportIgnored", "reportId": "r2", "attemptId": "nope", "reason": "unknown attempt"}
    ]


def test_replay_summary_shows_pnl_open_orders_and_reserved_budget() -> None:
    events = [
        global_change(system={"aggregationWindowMs": 0, "fillModel": "reports"}),
        trade(at=T0),
    ]
    result = copybot("replay", "-", "--summary", stdin=tape(*events))
    assert result.returncode == 0
    text = result.stderr.decode()
    header = next(line for line in text.splitlines() if line.startswith("leader"))
    for column in ("realized", "unrealized", "orders", "reserved"):
        assert column in header
    row = next(line for line in text.splitlines() if line.startswith("u1"))
    assert "$5.00" in row  # the open order's reservation
    assert " 1 " in row  # one open order
    assert orjson.loads(result.stdout.splitlines()[0])["budget"]["reservedMicros"] == 0


def test_a_bad_venue_event_is_a_dead_letter_keyed_as_the_spec_says() -> None:
    bad_resolution = (
        b'{"kind":"marketResolved","assetId":"a1","marketId":null,"payoutMicros":2000000,"resolvedAtMs":0}'
    )
    bad_report = (
        b'{"kind":"executionReport","reportId":"r","attemptId":"x","followedUserId":"u7","status":"DONE",'
        b'"filledShareMicros":0,"filledNotionalMicros":0,"reportedAtMs":0}'
    )
    result = copybot("replay", "-", stdin=bad_resolution + b"\n" + bad_report + b"\n")
    letters = lines(result.stderr)
    assert [(d["sourceTopic"], d["key"], d["offset"]) for d in letters] == [
        ("copybot.market-events", "a1", 0),
        ("copybot.executions", "u7", 1),
    ]
    assert result.stdout == b""
