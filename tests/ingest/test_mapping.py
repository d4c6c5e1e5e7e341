"""The Polymarket -> copybot mapping of SPEC 14: every field, exact decimals, stable ids."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from streams.ingest.mapping import (
    BadRow,
    Occurrences,
    canonical,
    leader_trade,
    parse_activity,
    parse_position,
    resolutions,
    shadow_snapshot,
    to_decimal,
    to_micros,
    trade_id,
)

WALLET = "0x56687bf447db6ffa42ffe2204a05edaa20f55839"


def row(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "proxyWallet": WALLET,
        "timestamp": 1764590400,
        "conditionId": "0x" + "ab" * 32,
        "type": "TRADE",
        "size": Decimal("125.5"),
        "usdcSize": Decimal("52.71"),
        "transactionHash": "0x" + "cd" * 32,
        "price": Decimal("0.42"),
        "asset": "71321045679252212594626385532706912750332728571942532289631379312455583992563",
        "side": "BUY",
        "outcomeIndex": 0,
        "outcome": "Yes",
        "title": "Will it rain?",
        "slug": "rain",
        "eventSlug": "rain",
    }
    base.update(overrides)
    return base


def test_every_field_of_a_trade_row_maps_to_the_leader_trade() -> None:
    parsed = parse_activity(row(), WALLET)
    trade = leader_trade(parsed, "alice", trade_id(parsed.digest, 0), detect_time_ms=1764590412345)
    assert trade.model_dump(by_alias=True) == {
        "kind": "leaderTrade",
        "tradeId": f"pm-{parsed.digest}-0",
        "followedUserId": "alice",
        "assetId": row()["asset"],
        "marketId": "0x" + "ab" * 32,
        "side": "BUY",
        "priceMicros": 420_000,
        "shareMicros": 125_500_000,
        "notionalMicros": 52_710_000,
        "detectTimeMs": 1764590412345,
        "eventTimeMs": 1764590400_000,
    }


def test_numbers_as_strings_give_the_same_trade_and_the_same_id() -> None:
    as_numbers = parse_activity(row(), WALLET)
    as_strings = parse_activity(
        row(size="125.50", price="0.420", usdcSize="52.71", timestamp="1764590400"), WALLET
    )
    assert as_strings == as_numbers or as_strings.digest == as_numbers.digest
    assert as_strings.digest == as_numbers.digest
    assert leader_trade(as_strings, "a", "t", 1) == leader_trade(as_numbers, "a", "t", 1)


def test_decimals_are_exact_where_floats_would_drift() -> None:
    # 0.1 + 0.2 style values: the JSON text is what counts, not its nearest float
    body = json.loads('{"size": 0.3, "price": 0.000001, "usdcSize": 2.675}', parse_float=Decimal)
    parsed = parse_activity(row(**body), WALLET)
    trade = leader_trade(parsed, "a", "t", 1)
    assert (trade.share_micros, trade.price_micros, trade.notional_micros) == (300_000, 1, 2_675_000)
    assert to_micros(Decimal("0.0000005")) == 0  # half to even
    assert to_micros(Decimal("0.0000015")) == 2
    assert to_decimal(0.1, "x") == Decimal("0.1")  # a float (if any) is read by its shortest text


def test_price_is_clamped_to_one_micro_and_one_usdc() -> None:
    tiny = leader_trade(parse_activity(row(price="0.0000001"), WALLET), "a", "t", 1)
    whole = leader_trade(parse_activity(row(price=1), WALLET), "a", "t", 1)
    assert (tiny.price_micros, whole.price_micros) == (1, 1_000_000)


def test_notional_without_usdc_size_is_floor_of_shares_times_price() -> None:
    parsed = parse_activity(row(usdcSize=None, size="3.333333", price="0.333333"), WALLET)
    trade = leader_trade(parsed, "a", "t", 1)
    assert trade.notional_micros == 3_333_333 * 333_333 // 1_000_000


def test_side_and_asset_are_taken_as_given_never_inferred_from_the_outcome() -> None:
    sell_of_no = parse_activity(row(side="SELL", outcome="No", outcomeIndex=1, asset="123"), WALLET)
    trade = leader_trade(sell_of_no, "a", "t", 1)
    assert (trade.side, trade.asset_id) == ("SELL", "123")
    with pytest.raises(BadRow, match="side"):
        parse_activity(row(side="buy"), WALLET)


def test_a_token_id_sent_as_a_json_integer_keeps_every_digit() -> None:
    body = json.loads(
        '{"asset": 71321045679252212594626385532706912750332728571942532289631379312455583992563}'
    )
    assert parse_activity(row(**body), WALLET).asset == row()["asset"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"size": "abc"}, "size"),
        ({"size": 0}, "size"),
        ({"price": "1.5"}, "price"),
        ({"price": None}, "price"),
        ({"usdcSize": "-1"}, "usdcSize"),
        ({"timestamp": 1764590400123}, "milliseconds"),
        ({"timestamp": "1764590400.5"}, "whole number"),
        ({"asset": ""}, "asset"),
        ({"transactionHash": None}, "transactionHash"),
        ({"type": "REDEEM"}, "type"),
        ({"proxyWallet": "0x" + "11" * 20}, "proxyWallet"),
        ({"size": True}, "size"),
    ],
)
def test_a_malformed_row_is_refused_with_the_field_named(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadRow, match=reason):
        parse_activity(row(**overrides), WALLET)


def test_a_row_that_maps_outside_the_contract_is_refused() -> None:
    huge = parse_activity(row(size="1e20"), WALLET)
    with pytest.raises(BadRow, match="shareMicros"):
        leader_trade(huge, "a", "t", 1)


def test_trade_ids_are_stable_and_count_identical_rows() -> None:
    digest = parse_activity(row(), WALLET).digest
    other = parse_activity(row(size="125.6"), WALLET).digest
    occurrences = Occurrences()
    ids = [trade_id(d, occurrences.next(d)) for d in (digest, other, digest, digest)]
    assert ids == [f"pm-{digest}-0", f"pm-{other}-0", f"pm-{digest}-1", f"pm-{digest}-2"]
    assert parse_activity(row(transactionHash=row()["transactionHash"].upper()), WALLET).digest == digest
    assert canonical(Decimal("1.2500")) == canonical(Decimal("1.25")) == "1.25"
    assert canonical(Decimal("1E+2")) == "100"


def test_shadow_snapshot_sums_current_value_exactly() -> None:
    holdings = [parse_position({"asset": "a", "currentValue": v}) for v in ("0.1", Decimal("0.2"), 7)]
    snapshot = shadow_snapshot("alice", holdings, 1_000)
    assert snapshot.model_dump(by_alias=True) == {
        "kind": "portfolioSnapshot",
        "portfolioScope": "SHADOW_USER",
        "followedUserId": "alice",
        "bucketTimeMs": 1_000,
        "exposureMicros": 7_300_000,
        "equityMicros": None,
        "cashMicros": None,
    }
    with pytest.raises(BadRow, match="currentValue"):
        parse_position({"asset": "a", "currentValue": "-1"})


def market(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "conditionId": "0xc1",
        "clobTokenIds": '["111", "222"]',
        "outcomes": '["Yes", "No"]',
        "outcomePrices": '["1", "0"]',
        "closed": True,
        "umaResolutionStatus": "resolved",
        "closedTime": "2026-11-30 12:00:00+00",
    }
    base.update(overrides)
    return base


def test_a_resolved_market_pays_the_winner_one_usdc_and_the_loser_nothing() -> None:
    assert [e.model_dump(by_alias=True) for e in resolutions(market(), fallback_ms=5)] == [
        {"kind": "marketResolved", "assetId": "111", "marketId": "0xc1", "payoutMicros": 1_000_000,
         "resolvedAtMs": 1796040000000},
        {"kind": "marketResolved", "assetId": "222", "marketId": "0xc1", "payoutMicros": 0,
         "resolvedAtMs": 1796040000000},
    ]  # fmt: skip


def test_a_fifty_fifty_resolution_pays_half_and_prices_may_be_lists() -> None:
    events = resolutions(market(outcomePrices=["0.5", "0.5"], clobTokenIds=["1", "2"], closedTime=None), 5)
    assert [(e.asset_id, e.payout_micros, e.resolved_at_ms) for e in events] == [
        ("1", 500_000, 5),
        ("2", 500_000, 5),
    ]


def test_a_market_that_is_closed_but_not_resolved_publishes_nothing() -> None:
    assert resolutions(market(umaResolutionStatus="proposed", outcomePrices='["0.9995", "0.0005"]'), 5) == []
    assert resolutions(market(closed=False), 5) == []


def test_resolution_prices_that_are_not_a_settlement_are_refused() -> None:
    with pytest.raises(BadRow, match="settlement"):
        resolutions(market(outcomePrices='["0.7", "0.3"]'), 5)
    with pytest.raises(BadRow, match="tokens"):
        resolutions(market(clobTokenIds='["1"]'), 5)
