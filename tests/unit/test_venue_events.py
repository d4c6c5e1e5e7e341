"""The venue loop's wire contract (SPEC 13.2, 13.3, 13.5): strict decoding of marketResolved and
executionReport, the shape of the new outputs, and dead-letter keys."""

from __future__ import annotations

from typing import Any

import pytest

from models.events import (
    BOOK_EVENT_KINDS,
    ExecutionReport,
    ExecutionReportIgnored,
    LeaderBook,
    MarketResolved,
    OrderExpired,
    OrderUpdatedWire,
    PositionSettled,
)
from streams.serde import decode_event, encode, key_for_raw, topic_for_raw
from tests.unit.test_events import BAD_ID, BAD_INT, MISSING, decode_error, encoded, field_cases

RESOLVED: dict[str, Any] = {
    "kind": "marketResolved",
    "assetId": "a1",
    "marketId": "m1",
    "payoutMicros": 1_000_000,
    "resolvedAtMs": 5,
}
REPORT: dict[str, Any] = {
    "kind": "executionReport",
    "reportId": "r1",
    "attemptId": "att-1",
    "followedUserId": "u1",
    "status": "PARTIAL",
    "filledShareMicros": 10,
    "filledNotionalMicros": 5,
    "reportedAtMs": 7,
}


def test_a_market_resolution_decodes_with_every_field() -> None:
    event = decode_event(encoded(RESOLVED))
    assert event == MarketResolved(
        kind="marketResolved", asset_id="a1", market_id="m1", payout_micros=1_000_000, resolved_at_ms=5
    )


@pytest.mark.parametrize("changes", [{"marketId": None}, {"payoutMicros": 0}, {"payoutMicros": 123_456}])
def test_a_market_resolution_at_the_edges_of_the_contract_decodes(changes: dict[str, Any]) -> None:
    assert isinstance(decode_event(encoded(RESOLVED, **changes)), MarketResolved)


@pytest.mark.parametrize("status", ["PARTIAL", "FILLED", "REJECTED", "CANCELLED"])
def test_an_execution_report_decodes_with_each_status(status: str) -> None:
    event = decode_event(encoded(REPORT, status=status, filledShareMicros=0, filledNotionalMicros=0))
    assert isinstance(event, ExecutionReport)
    assert event.status == status
    assert (event.report_id, event.attempt_id, event.followed_user_id) == ("r1", "att-1", "u1")


RESOLVED_BAD: dict[str, list[Any]] = {
    "assetId": [*BAD_ID, MISSING],
    "marketId": ["", 5, MISSING],
    "payoutMicros": [*BAD_INT, -1, 1_000_001, MISSING],
    "resolvedAtMs": [*BAD_INT, -1, MISSING],
}
REPORT_BAD: dict[str, list[Any]] = {
    "reportId": [*BAD_ID, MISSING],
    "attemptId": [*BAD_ID, MISSING],
    "followedUserId": [*BAD_ID, MISSING],
    "status": ["filled", "EXPIRED", "", 1, None, MISSING],
    "filledShareMicros": [*BAD_INT, -1, 2**63, MISSING],
    "filledNotionalMicros": [*BAD_INT, -1, 2**63, MISSING],
    "reportedAtMs": [*BAD_INT, -1, MISSING],
}


@pytest.mark.parametrize(
    ("base", "name", "value"), field_cases(RESOLVED, RESOLVED_BAD) + field_cases(REPORT, REPORT_BAD)
)
def test_a_bad_field_of_a_venue_event_is_a_decode_error_naming_the_field(
    base: dict[str, Any], name: str, value: Any
) -> None:
    assert name in decode_error(encoded(base, **{name: value}))


@pytest.mark.parametrize("base", [RESOLVED, REPORT], ids=lambda b: b["kind"])
@pytest.mark.parametrize("extra", ["unexpected", "asset_id", "report_id", "PayoutMicros"])
def test_an_unknown_field_of_a_venue_event_is_a_decode_error(base: dict[str, Any], extra: str) -> None:
    assert extra in decode_error(encoded(base, **{extra: 1}))


def test_snake_case_names_are_not_accepted_for_venue_events() -> None:
    raw = dict(RESOLVED)
    raw["payout_micros"] = raw.pop("payoutMicros")
    assert "payoutMicros" in decode_error(encoded(raw))


def test_dead_letters_of_resolutions_are_keyed_by_asset_and_of_reports_by_leader() -> None:
    # SPEC 13.8.8
    assert key_for_raw(encoded(RESOLVED, payoutMicros="bad")) == "a1"
    assert key_for_raw(encoded(REPORT, status="bad")) == "u1"
    assert topic_for_raw(encoded(RESOLVED), "replay") == "copybot.market-events"
    assert topic_for_raw(encoded(REPORT), "replay") == "copybot.executions"


def test_the_new_outputs_have_the_spec_field_names() -> None:
    settled = PositionSettled(
        followed_user_id="u1",
        settlement_id="s",
        asset_id="a1",
        market_id=None,
        share_micros=1,
        payout_micros=2,
        proceeds_micros=3,
        cost_basis_micros=4,
        realized_pnl_micros=-1,
        settled_at_ms=5,
        config_version=None,
    )
    expired = OrderExpired(
        followed_user_id="u1",
        attempt_id="x",
        asset_id="a1",
        side="BUY",
        target_share_micros=1,
        filled_share_micros=0,
        filled_notional_micros=0,
        expired_at_ms=9,
        config_version="c1",
    )
    book = LeaderBook(
        followed_user_id="u1",
        as_of_ms=1,
        exposure_micros=0,
        reserved_micros=0,
        cost_basis_micros=0,
        realized_pnl_micros=0,
        unrealized_pnl_micros=0,
        leader_exposure_micros=None,
        leader_exposure_status="derived",
        positions=[],
        config_version=None,
    )
    ignored = ExecutionReportIgnored(report_id="r", attempt_id="a", reason="stale report")
    assert set(PositionSettled.model_validate_json(encode(settled)).model_dump(by_alias=True)) == {
        "kind",
        "followedUserId",
        "settlementId",
        "assetId",
        "marketId",
        "shareMicros",
        "payoutMicros",
        "proceedsMicros",
        "costBasisMicros",
        "realizedPnlMicros",
        "settledAtMs",
        "configVersion",
    }
    assert set(expired.model_dump(by_alias=True)) == {
        "kind",
        "followedUserId",
        "attemptId",
        "assetId",
        "side",
        "targetShareMicros",
        "filledShareMicros",
        "filledNotionalMicros",
        "expiredAtMs",
        "configVersion",
    }
    assert set(book.model_dump(by_alias=True)) == {
        "kind",
        "followedUserId",
        "asOfMs",
        "exposureMicros",
        "reservedMicros",
        "costBasisMicros",
        "realizedPnlMicros",
        "unrealizedPnlMicros",
        "leaderExposureMicros",
        "leaderExposureStatus",
        "positions",
        "configVersion",
    }
    assert set(ignored.model_dump(by_alias=True)) == {"kind", "reportId", "attemptId", "reason"}
    assert {settled.kind, expired.kind, book.kind, OrderUpdatedWire.kind} == BOOK_EVENT_KINDS
