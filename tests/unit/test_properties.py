"""Invariants over random tapes (hypothesis): conservation, HARD budget, determinism, no shorts."""

from __future__ import annotations

import io
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from models.engine import InputEvent, finish, process
from models.events import LeaderTrade
from models.state import PartitionState
from models.units import notional
from streams.replay import replay
from streams.serde import encode
from tests.factories import (
    T0,
    USD,
    global_change,
    restarted_run_changes_nothing,
    shadow,
    tick,
    user_change,
)
from tests.unit import strategies

ASSETS = ("a1", "a2", "a3")

sizing_changes = strategies.sizing_keys(
    budget_max=200 * USD,
    enforcement=["hard", "soft"],
    minLeaderTradeNotionalMicros=st.integers(0, 20 * USD),
    copyPctNotionalBps=st.integers(0, 20_000),
)
buffering_changes = st.fixed_dictionaries(
    {},
    optional={
        "enabled": st.booleans(),
        "nettingMode": st.sampled_from(["sameSideOnly", "netBuySell"]),
        "notionalThresholdMicros": st.integers(0, 5 * USD),
        "flushMinNotionalMicros": st.integers(0, 10 * USD),
        "minExecNotionalMicros": st.integers(0, 2 * USD),
        "maxBufferMs": st.integers(100, 3_000),
        "quietFlushMs": st.integers(50, 1_000),
    },
)
system_changes = st.fixed_dictionaries(
    {},
    optional={
        "aggregationWindowMs": st.sampled_from([0, 1, 100, 250, 1_000]),
        "copyEngineEnabled": st.booleans(),
        "initialBankrollMicros": st.integers(0, 10_000 * USD),
    },
)


@st.composite
def tapes(draw: st.DrawFn) -> list[InputEvent]:
    """A random tape: trades (with late arrivals and redeliveries), snapshots, ticks, config changes."""
    events: list[InputEvent] = []
    clock = T0
    sent: list[LeaderTrade] = []
    for _ in range(draw(st.integers(1, 60))):
        what = draw(st.sampled_from(["trade"] * 6 + ["dup", "tick", "shadow", "global", "user"]))
        if what == "trade" or (what == "dup" and not sent):
            clock += draw(st.integers(0, 400))
            t = strategies.draw_trade(draw, clock, ASSETS)
            sent.append(t)
            events.append(t)
        elif what == "dup":
            events.append(draw(st.sampled_from(sent)))
        elif what == "tick":
            clock += draw(st.integers(0, 3_000))
            events.append(tick(clock))
        elif what == "shadow":
            events.append(
                shadow(draw(st.sampled_from(strategies.LEADERS)), draw(st.integers(0, 500 * USD)), at=clock)
            )
        elif what == "global":
            sections: dict[str, Any] = {"sizing": draw(sizing_changes)}
            if draw(st.booleans()):
                sections["buffering"] = draw(buffering_changes)
            if draw(st.booleans()):
                sections["system"] = draw(system_changes)
            events.append(global_change(**sections))
        else:
            events.append(user_change(draw(st.sampled_from(strategies.LEADERS)), sizing=draw(sizing_changes)))
    return events


def _run_checking_holdings(events: list[InputEvent]) -> tuple[PartitionState, list[dict[str, Any]]]:
    state = PartitionState()
    attempts: list[dict[str, Any]] = []

    def collect(outputs: list[Any]) -> None:
        attempts.extend(dict(o) for o in outputs if isinstance(o, dict))
        for leader in state.leaders.values():
            assert all(held >= 0 for held in leader.held_share_micros.values()), "a holding went negative"

    for event in events:
        collect(process(state, event))
    collect(finish(state))
    return state, attempts


@strategies.PROPERTY_SETTINGS
@given(tapes())
def test_every_accepted_trade_is_in_exactly_one_attempt(events: list[InputEvent]) -> None:
    _, attempts = _run_checking_holdings(events)
    strategies.assert_conservation(events, attempts)
    for a in attempts:
        assert a["bufferedTradeCount"] == len(a["tradeIds"])
        assert (a["decision"] == "EXECUTE") == (a["reasonCodes"] == [])


@strategies.PROPERTY_SETTINGS
@given(tapes())
def test_hard_budget_is_never_overshot(events: list[InputEvent]) -> None:
    state, attempts = _run_checking_holdings(events)
    for a in attempts:
        if strategies.hard_budget_binds(a):
            budget = a["sizing"]["budgetUsdcMicros"]
            assert a["budget"]["currentExposureMicros"] + a["targetNotionalMicros"] <= budget
            assert a["budget"]["headroomMicros"] == budget - a["budget"]["currentExposureMicros"]
    # the incrementally kept exposure equals the sum over holdings at the end
    for leader in state.leaders.values():
        expected = sum(
            notional(held, leader.mark_price_micros.get(asset, 0))
            for asset, held in leader.held_share_micros.items()
        )
        assert leader.exposure_micros == expected


@strategies.PROPERTY_SETTINGS
@given(tapes())
def test_replay_is_deterministic_and_holdings_never_go_negative(events: list[InputEvent]) -> None:
    lines = [encode(e) for e in events]
    outputs = []
    for _ in range(2):
        attempts, diagnostics = io.BytesIO(), io.BytesIO()
        replay(lines, attempts, diagnostics)
        outputs.append((attempts.getvalue(), diagnostics.getvalue()))
    assert outputs[0] == outputs[1]
    _run_checking_holdings(events)


@strategies.PROPERTY_SETTINGS
@given(tapes(), st.integers(0, 60))
def test_a_restored_partition_decides_exactly_as_an_uninterrupted_one(
    events: list[InputEvent], cut: int
) -> None:
    # Given the same tape, once straight through and once saved (as the live worker saves it) and
    # restored after `cut` events; then the outputs and the final state are identical
    restarted_run_changes_nothing(events, cut)
