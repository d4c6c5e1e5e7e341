"""The wire contract (SPEC 3, 12.1, 12.2): strict decoding of input events, and bad input changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from models.events import ConfigChange, LeaderTrade, PortfolioSnapshot, Tick
from streams import serde
from streams.serde import DecodeError, decode_event
from tests.factories import BUDGETED, T0, USD, Driver, equity, global_change, shadow, tick, trade, user_change

MISSING = object()
"""Marks a field to leave out of an event."""

TRADE: dict[str, Any] = {
    "kind": "leaderTrade",
    "tradeId": "t1",
    "followedUserId": "u1",
    "assetId": "a1",
    "marketId": "m1",
    "side": "BUY",
    "priceMicros": 500_000,
    "shareMicros": 200 * USD,
    "notionalMicros": 100 * USD,
    "detectTimeMs": T0,
    "eventTimeMs": T0 - 5,
}
SHADOW: dict[str, Any] = {
    "kind": "portfolioSnapshot",
    "portfolioScope": "SHADOW_USER",
    "followedUserId": "u1",
    "bucketTimeMs": T0,
    "exposureMicros": 1_000 * USD,
    "equityMicros": None,
    "cashMicros": None,
}
EXEC_WHOLE: dict[str, Any] = {
    **SHADOW,
    "portfolioScope": "EXEC_GLOBAL",
    "followedUserId": None,
    "equityMicros": 5_000 * USD,
    "cashMicros": 4_000 * USD,
}
CONFIG_GLOBAL: dict[str, Any] = {
    "kind": "configChange",
    "changeId": "c1",
    "scope": "GLOBAL",
    "followedUserId": None,
    "changedAtMs": T0,
    "sizing": {"copyPctNotionalBps": 200},
}
CONFIG_USER: dict[str, Any] = {
    **CONFIG_GLOBAL,
    "scope": "USER",
    "followedUserId": "u1",
    "sizing": {"copyPctNotionalBps": 300},
    "leader": {"label": "Whale"},
}
TICK: dict[str, Any] = {"kind": "tick", "nowMs": T0}


def encoded(base: dict[str, Any], **changes: Any) -> bytes:
    """`base` with `changes` applied (MISSING removes a field), as JSON bytes."""
    obj = {**base, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not MISSING}).encode()


def decode_error(raw: bytes) -> str:
    with pytest.raises(DecodeError) as caught:
        decode_event(raw)
    return str(caught.value)


# --- valid events --------------------------------------------------------------------------------------


def test_a_leader_trade_decodes_with_every_field() -> None:
    event = decode_event(encoded(TRADE))

    assert isinstance(event, LeaderTrade)
    assert (event.trade_id, event.followed_user_id, event.asset_id, event.market_id) == (
        "t1",
        "u1",
        "a1",
        "m1",
    )
    assert (event.side, event.price_micros, event.share_micros) == ("BUY", 500_000, 200 * USD)
    assert (event.notional_micros, event.detect_time_ms, event.event_time_ms) == (100 * USD, T0, T0 - 5)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"eventTimeMs": MISSING}, id="eventTimeMs-absent"),
        pytest.param({"marketId": None}, id="marketId-null"),
        pytest.param({"side": "SELL"}, id="SELL"),
        pytest.param({"priceMicros": 1}, id="price-min"),
        pytest.param({"priceMicros": 1_000_000}, id="price-max"),
        pytest.param({"shareMicros": 1}, id="shares-min"),
        pytest.param({"notionalMicros": 0}, id="notional-zero"),
        pytest.param({"detectTimeMs": 0, "eventTimeMs": 0}, id="times-zero"),
    ],
)
def test_a_leader_trade_at_the_edges_of_the_contract_decodes(changes: dict[str, Any]) -> None:
    event = decode_event(encoded(TRADE, **changes))

    assert isinstance(event, LeaderTrade)
    expected = {**TRADE, **changes}
    assert event.market_id == expected["marketId"]
    assert event.price_micros == expected["priceMicros"]
    assert event.event_time_ms == (None if expected["eventTimeMs"] is MISSING else expected["eventTimeMs"])


def test_a_leader_trade_without_event_time_has_none() -> None:
    event = decode_event(encoded(TRADE, eventTimeMs=MISSING))

    assert isinstance(event, LeaderTrade)
    assert event.event_time_ms is None


@pytest.mark.parametrize(
    "base",
    [
        pytest.param(SHADOW, id="shadow-user"),
        pytest.param(EXEC_WHOLE, id="exec-global-whole"),
        pytest.param({**EXEC_WHOLE, "followedUserId": "u1"}, id="exec-global-slice"),
        pytest.param({**EXEC_WHOLE, "equityMicros": -5, "cashMicros": -7}, id="negative-equity-and-cash"),
        pytest.param({**SHADOW, "exposureMicros": 0, "bucketTimeMs": 0}, id="zeros"),
    ],
)
def test_a_portfolio_snapshot_decodes(base: dict[str, Any]) -> None:
    event = decode_event(encoded(base))

    assert isinstance(event, PortfolioSnapshot)
    assert event.portfolio_scope == base["portfolioScope"]
    assert event.followed_user_id == base["followedUserId"]
    assert (event.exposure_micros, event.equity_micros, event.cash_micros) == (
        base["exposureMicros"],
        base["equityMicros"],
        base["cashMicros"],
    )


@pytest.mark.parametrize("base", [CONFIG_GLOBAL, CONFIG_USER], ids=["GLOBAL", "USER"])
def test_a_config_change_decodes_with_its_sections(base: dict[str, Any]) -> None:
    event = decode_event(encoded(base))

    assert isinstance(event, ConfigChange)
    assert (event.change_id, event.scope, event.followed_user_id) == (
        "c1",
        base["scope"],
        base["followedUserId"],
    )
    assert event.sections() == {k: base[k] for k in ("sizing", "leader") if k in base}


def test_a_config_change_without_sections_decodes() -> None:
    event = decode_event(encoded(CONFIG_GLOBAL, sizing=MISSING))

    assert isinstance(event, ConfigChange)
    assert event.sections() == {}


def test_a_tick_decodes() -> None:
    assert decode_event(encoded(TICK)) == Tick(kind="tick", now_ms=T0)


def test_decoding_accepts_text_as_well_as_bytes() -> None:
    assert decode_event(encoded(TICK).decode()) == Tick(kind="tick", now_ms=T0)


# --- not an event at all -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"{'kind': 'tick'}", b'{"kind":"tick","nowMs":1', b"\xff\xfe", b"nul"]
)
def test_malformed_json_is_a_decode_error(raw: bytes) -> None:
    assert "json" in decode_error(raw).lower()


@pytest.mark.parametrize("raw", [b"[]", b'[{"kind":"tick","nowMs":1}]', b"5", b'"tick"', b"null", b"true"])
def test_json_that_is_not_an_object_is_a_decode_error(raw: bytes) -> None:
    assert "object" in decode_error(raw)


@pytest.mark.parametrize("kind", ["copyAttempt", "LeaderTrade", "trade", "", 5, None])
def test_an_unknown_kind_is_a_decode_error_naming_kind(kind: Any) -> None:
    assert "kind" in decode_error(encoded(TICK, kind=kind))


@pytest.mark.parametrize("base", [TRADE, SHADOW, CONFIG_GLOBAL, TICK], ids=lambda b: b["kind"])
def test_a_missing_kind_is_a_decode_error_naming_kind(base: dict[str, Any]) -> None:
    assert "kind" in decode_error(encoded(base, kind=MISSING))


def test_decode_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nowMs"):
        decode_event(encoded(TICK, nowMs=-1))


# --- strict fields -------------------------------------------------------------------------------------

BAD_INT = [1.0, 1.5, True, False, "5", [5], None]
"""Not a JSON integer (SPEC 12.1: not true, not 1.0)."""
BAD_ID = ["", 5, True, None, ["t1"], {"id": "t1"}]
"""Not a non-empty string (SPEC 12.2)."""


def field_cases(base: dict[str, Any], table: dict[str, list[Any]]) -> list[Any]:
    return [
        pytest.param(base, name, value, id=f"{name}={value!r}"[:60])
        for name, values in table.items()
        for value in values
    ]


TRADE_BAD: dict[str, list[Any]] = {
    "tradeId": [*BAD_ID, MISSING],
    "followedUserId": [*BAD_ID, MISSING],
    "assetId": [*BAD_ID, MISSING],
    "marketId": ["", 5, MISSING],
    "side": ["buy", "HOLD", "", 1, None, MISSING],
    "priceMicros": [*BAD_INT, 500_000.0, 0, -1, 1_000_001, MISSING],
    "shareMicros": [*BAD_INT, 0, -1, MISSING],
    "notionalMicros": [*BAD_INT, -1, -100 * USD, MISSING],
    "detectTimeMs": [*BAD_INT, -1, MISSING],
    "eventTimeMs": [1.0, True, "5", -1],
}
SNAPSHOT_BAD: dict[str, list[Any]] = {
    "portfolioScope": ["shadow_user", "EXEC", "", None, 1, MISSING],
    "followedUserId": ["", 5, MISSING],
    "bucketTimeMs": [*BAD_INT, -1, MISSING],
    "exposureMicros": [*BAD_INT, -1, MISSING],
    "equityMicros": [1.0, True, "5", MISSING],
    "cashMicros": [1.0, True, "5", MISSING],
}
CONFIG_BAD: dict[str, list[Any]] = {
    "changeId": [*BAD_ID, MISSING],
    "scope": ["global", "LEADER", "", None, 1, MISSING],
    "followedUserId": [MISSING],
    "changedAtMs": [*BAD_INT, -1, MISSING],
}
TICK_BAD: dict[str, list[Any]] = {"nowMs": [*BAD_INT, -1, MISSING]}


@pytest.mark.parametrize(
    ("base", "name", "value"),
    field_cases(TRADE, TRADE_BAD)
    + field_cases(SHADOW, SNAPSHOT_BAD)
    + field_cases(EXEC_WHOLE, {"followedUserId": ["", 5]})
    + field_cases(CONFIG_GLOBAL, CONFIG_BAD)
    + field_cases(CONFIG_USER, {"followedUserId": ["", 5, MISSING]})
    + field_cases(TICK, TICK_BAD),
)
def test_a_bad_field_is_a_decode_error_naming_the_field(base: dict[str, Any], name: str, value: Any) -> None:
    # given a valid event with one field broken (wrong type, out of range, empty id, or left out)
    raw = encoded(base, **{name: value})

    # then decoding fails and the reason names the field
    assert name in decode_error(raw)


@pytest.mark.parametrize("base", [TRADE, SHADOW, CONFIG_GLOBAL, CONFIG_USER, TICK], ids=lambda b: b["kind"])
@pytest.mark.parametrize("extra", ["unexpected", "trade_id", "TradeId", "nowMS"])
def test_an_unknown_field_is_a_decode_error_naming_it(base: dict[str, Any], extra: str) -> None:
    assert extra in decode_error(encoded(base, **{extra: 1}))


@pytest.mark.parametrize(
    ("base", "camel", "snake"),
    [
        pytest.param(TRADE, "tradeId", "trade_id", id="leaderTrade.trade_id"),
        pytest.param(SHADOW, "bucketTimeMs", "bucket_time_ms", id="portfolioSnapshot.bucket_time_ms"),
        pytest.param(CONFIG_USER, "followedUserId", "followed_user_id", id="configChange.followed_user_id"),
        pytest.param(TICK, "nowMs", "now_ms", id="tick.now_ms"),
    ],
)
def test_a_snake_case_field_name_is_not_accepted_in_place_of_its_camel_case_name(
    base: dict[str, Any], camel: str, snake: str
) -> None:
    # given a valid event whose field is spelled snake_case instead of camelCase
    raw = encoded(base, **{camel: MISSING, snake: base[camel]})

    # then it is not a valid event, and the reason names the field
    reason = decode_error(raw)
    assert camel in reason or snake in reason


def test_a_price_as_a_float_is_rejected_even_when_integral() -> None:
    reason = decode_error(b'{"kind":"tick","nowMs":1000.0}')

    assert "nowMs" in reason


@pytest.mark.parametrize("value", [2**63, 10**30])
def test_an_integer_beyond_int64_is_a_decode_error(value: int) -> None:
    assert "notionalMicros" in decode_error(encoded(TRADE, notionalMicros=value))


def test_a_shadow_user_snapshot_needs_a_leader() -> None:
    reason = decode_error(encoded(SHADOW, followedUserId=None))

    assert "followedUserId" in reason


def test_a_whole_exec_global_snapshot_may_have_null_equity_and_cash() -> None:
    event = decode_event(encoded(EXEC_WHOLE, equityMicros=None, cashMicros=None))

    assert isinstance(event, PortfolioSnapshot)
    assert event.equity_micros is None


# --- config change envelope vs sections (SPEC 12.1) ----------------------------------------------------


def test_a_global_change_with_a_leader_id_is_a_decode_error() -> None:
    assert "followedUserId" in decode_error(encoded(CONFIG_GLOBAL, followedUserId="u1"))


def test_a_user_change_without_a_leader_id_is_a_decode_error() -> None:
    assert "followedUserId" in decode_error(encoded(CONFIG_USER, followedUserId=None))


@pytest.mark.parametrize("extra", ["sizingg", "settings", "kindOf", "guardRails"])
def test_an_unknown_top_level_field_of_a_config_change_is_a_decode_error(extra: str) -> None:
    assert extra in decode_error(encoded(CONFIG_GLOBAL, **{extra: {}}))


@pytest.mark.parametrize(
    ("base", "sections", "expected"),
    [
        pytest.param(CONFIG_GLOBAL, {"sizing": {"notAKey": 1}}, "sizing.notAKey", id="unknown-key"),
        pytest.param(
            CONFIG_GLOBAL,
            {"sizing": {"copyPctNotionalBps": 1.0}},
            "sizing.copyPctNotionalBps",
            id="float-int",
        ),
        pytest.param(
            CONFIG_GLOBAL, {"sizing": {"copyPctNotionalBps": -1}}, "sizing.copyPctNotionalBps", id="range"
        ),
        pytest.param(CONFIG_GLOBAL, {"sizing": 5}, "sizing", id="section-not-object"),
        pytest.param(CONFIG_GLOBAL, {"leader": {}}, "leader", id="leader-in-GLOBAL"),
        pytest.param(CONFIG_USER, {"buffering": {}}, "buffering", id="buffering-in-USER"),
        pytest.param(CONFIG_USER, {"system": {}}, "system", id="system-in-USER"),
        pytest.param(
            CONFIG_GLOBAL,
            {"sizing": {"budgetRMinBps": 5, "budgetRMaxBps": 4}},
            "sizing.budgetRMinBps",
            id="cross-field",
        ),
        pytest.param(
            CONFIG_GLOBAL,
            {"guardrails": {"maxBuyCostPerShareMicros": None}},
            "guardrails.maxBuyCostPerShareMicros",
            id="null-max-buy-cost",
        ),
    ],
)
def test_a_well_formed_change_with_a_bad_section_decodes_and_is_rejected_by_the_engine(
    base: dict[str, Any], sections: dict[str, Any], expected: str
) -> None:
    # given a change whose envelope is fine but whose sections break a rule
    event = decode_event(encoded(base, **sections))
    assert isinstance(event, ConfigChange)

    # when the engine processes it
    driver = Driver(event)

    # then it is reported as configRejected naming the key, and no config is in force
    (rejection,) = driver.rejections
    assert rejection.change_id == base["changeId"]
    assert any(e.startswith(expected) for e in rejection.errors), rejection.errors
    assert driver.state.config.version is None


# --- snapshots and config changes do not move the clock (SPEC 12.2) ------------------------------------


def test_snapshots_and_config_changes_do_not_move_the_clock() -> None:
    # given a trade waiting in an open window
    driver = Driver(trade("u1", at=T0))

    # when events stamped far later arrive
    late = T0 + 60_000
    driver.feed(
        shadow("u1", at=late),
        equity(5_000 * USD, at=late),
        ConfigChange.model_validate({**CONFIG_GLOBAL, "changedAtMs": late}),
    )

    # then the clock did not move and the window is still open
    assert driver.state.clock_ms == T0
    assert driver.attempts == []


# --- bad input changes nothing -------------------------------------------------------------------------


def scenario(*inserted: Any) -> list[Any]:
    """A fixed run of a few leaders; `inserted` events go in after the first group is decided."""
    return [
        global_change("g1", sizing={"copyPctNotionalBps": 200}),
        user_change("u2", "c-u2", sizing={"copyPctNotionalBps": 50}),
        trade("u1", at=T0, trade_id="t1", notional=100 * USD, price=400_000),
        tick(T0 + 250),
        *inserted,
        trade("u1", at=T0 + 300, trade_id="t2", notional=300 * USD, price=600_000),
        trade("u1", at=T0 + 400, trade_id="t3", side="SELL", notional=50 * USD, price=650_000),
        trade("u2", at=T0 + 450, trade_id="t4", notional=800 * USD, price=300_000),
        tick(T0 + 1_000),
        trade("u1", at=T0 + 1_100, trade_id="t5", notional=20 * USD, price=620_000),
    ]


def attempts_of_run(*inserted: Any) -> list[Any]:
    driver = Driver(*scenario(*inserted))
    driver.finish()
    return list(driver.attempts)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(
            [global_change("bad", sizing={"copyPctNotionalBps": 5_000, "maxTradeBankrollBps": -1})],
            id="rejected-global-change-with-a-good-key",
        ),
        pytest.param(
            [user_change("u1", "bad", sizing={"copyPctNotionalBps": 5_000, "budgetRMinBps": 500})],
            id="rejected-user-change",
        ),
        pytest.param(
            [global_change("bad", system={"copyEngineEnabled": False}, leader={"enabled": False})],
            id="rejected-pause-with-a-forbidden-section",
        ),
        pytest.param(
            [global_change("bad", sizing={**BUDGETED, "copyPctNotionalBps": 5_000})],
            id="rejected-switch-on-without-a-budget",
        ),
    ],
)
def test_a_rejected_config_change_leaves_later_decisions_identical(bad: list[ConfigChange]) -> None:
    # given a reference run and the same run with a rejected change inserted
    reference = attempts_of_run()
    driver = Driver(*scenario(*bad))
    driver.finish()

    # then the change was rejected and every attempt is identical, configVersion included
    assert {r.change_id for r in driver.rejections} == {c.change_id for c in bad}
    assert driver.attempts == reference
    assert len(reference) >= 4


def test_a_duplicate_trade_changes_no_decision_clock_or_mark() -> None:
    # given a run, and the same run with t1 repeated later, at another time and price
    reference = attempts_of_run()
    duplicate = trade("u1", at=T0 + 5_000, trade_id="t1", notional=999 * USD, price=990_000)

    # when the duplicate is processed mid-run
    driver = Driver(*scenario(duplicate))
    driver.finish()

    # then it leaves no trace: same attempts, t1 accounted for exactly once
    assert driver.attempts == reference
    trade_ids = [t for a in driver.attempts for t in a["tradeIds"]]
    assert sorted(trade_ids) == ["t1", "t2", "t3", "t4", "t5"]


def test_a_duplicate_trade_does_not_advance_the_clock() -> None:
    driver = Driver(trade("u1", at=T0, trade_id="t1"))

    out = driver.feed(trade("u1", at=T0 + 10_000, trade_id="t1"))

    assert out == []
    assert driver.state.clock_ms == T0


def test_the_same_trade_id_for_another_leader_is_not_a_duplicate() -> None:
    driver = Driver(trade("u1", at=T0, trade_id="t1"), trade("u2", at=T0, trade_id="t1"))
    driver.finish()

    assert sorted(a["followedUserId"] for a in driver.attempts) == ["u1", "u2"]


def test_a_bad_line_fed_through_decode_never_reaches_the_engine() -> None:
    # given a mix of good and bad raw inputs, decoded as a consumer would
    raws = [encoded(TRADE, tradeId="ok1"), encoded(TRADE, priceMicros=0), encoded(TICK, nowMs=T0 + 250)]
    events: list[Any] = []
    errors: list[str] = []
    for raw in raws:
        try:
            events.append(decode_event(raw))
        except DecodeError as exc:
            errors.append(str(exc))

    # then the bad one is reported and the good ones decide as if it never existed
    assert len(errors) == 1
    assert "priceMicros" in errors[0]
    driver = Driver(*events)
    assert [a["tradeIds"] for a in driver.attempts] == [["ok1"]]


def test_a_tick_decoded_again_is_the_same_frozen_model_and_bad_ticks_still_fail() -> None:
    # decode_event keeps the ticks it decoded lately (a tick comes once per decision partition)
    raw = b'{"kind":"tick","nowMs":1700000000123}'
    first = decode_event(raw)
    assert isinstance(first, Tick)
    assert first.now_ms == 1700000000123
    assert decode_event(raw) is first
    assert decode_event(raw.decode()) == first
    for bad in (b'{"kind":"tick","nowMs":-1}', b'{"kind":"tick","nowMs":1.0}', b'{"kind":"tick"}'):
        for _ in range(2):  # a failure is never remembered as a success
            with pytest.raises(DecodeError, match="nowMs"):
                decode_event(bad)
    # a short input that fails is decoded (and fails) every time
    short = b'{"kind":"configChange"}'
    with pytest.raises(DecodeError):
        decode_event(short)
    assert raw in serde._TICKS
    assert all(isinstance(event, Tick) for event in serde._TICKS.values())
    # bounded: a long run of distinct ticks never keeps more than the limit
    for now in range(serde._TICKS_KEPT + 10):
        decode_event(b'{"kind":"tick","nowMs":%d}' % now)
    assert 0 < len(serde._TICKS) <= serde._TICKS_KEPT
