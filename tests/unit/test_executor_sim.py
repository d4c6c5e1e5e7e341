"""The demo's simulated executor (streams/executor_sim.py): realistic, deterministic, idempotent reports."""

from __future__ import annotations

from collections import Counter
from typing import Any

from models.engine import process
from models.events import OrderUpdatedWire
from models.state import PartitionState
from streams.executor_sim import LATE_MS, MAX_SLIPPAGE_BPS, PLANS, ExecutorSim
from streams.serde import decode_event, encode
from tests.factories import global_change, trade

START_MS = 1_793_628_000_000


def _attempt(n: int, side: str = "BUY", decision: str = "EXECUTE") -> dict[str, Any]:
    return {
        "kind": "copyAttempt",
        "attemptId": f"00000000-0000-5000-8000-{n:012d}",
        "followedUserId": f"leader-{n % 3}",
        "side": side,
        "decision": decision,
        "targetShareMicros": 10_000_000 + n,
        "targetNotionalMicros": 5_000_000,
        "theirReferencePriceMicros": 500_000,
        "decidedAtMs": START_MS + 100 * n,
    }


def _answer_all(sim: ExecutorSim, attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for a in attempts for r in sim.on_attempt(a)] + sim.remaining()


def test_the_same_seed_answers_every_attempt_the_same_way_and_another_seed_differently() -> None:
    attempts = [_attempt(n) for n in range(200)]
    first, again = _answer_all(ExecutorSim(7), attempts), _answer_all(ExecutorSim(7), attempts)
    assert first == again
    assert _answer_all(ExecutorSim(8), attempts) != first


def test_an_attempt_delivered_twice_is_answered_once() -> None:
    sim = ExecutorSim(7)
    attempts = [_attempt(n) for n in range(50)]
    once = _answer_all(sim, attempts)
    assert _answer_all(sim, attempts) == []
    assert len({r["reportId"] for r in once}) == len(once)
    assert sim.answered == {a["attemptId"] for a in attempts}


def test_skips_get_no_report() -> None:
    sim = ExecutorSim(7)
    assert _answer_all(sim, [_attempt(n, decision="SKIP") for n in range(50)]) == []
    assert not sim.answered


def test_reports_are_valid_events_keyed_to_their_attempt_with_realistic_prices() -> None:
    attempts = {a["attemptId"]: a for a in (_attempt(n, side="BUY" if n % 2 else "SELL") for n in range(300))}
    for report in _answer_all(ExecutorSim(7), list(attempts.values())):
        decode_event(encode(report))  # strict, as the worker decodes it
        attempt = attempts[report["attemptId"]]
        assert report["followedUserId"] == attempt["followedUserId"]
        assert 0 <= report["filledShareMicros"] <= attempt["targetShareMicros"]
        if report["filledShareMicros"]:
            price = report["filledNotionalMicros"] * 1_000_000 // report["filledShareMicros"]
            reference = attempt["theirReferencePriceMicros"]
            slip = reference * MAX_SLIPPAGE_BPS // 10_000 + 1
            assert (
                (reference <= price + 1 <= reference + slip + 1)
                if attempt["side"] == "BUY"
                else (reference - slip - 1 <= price <= reference)
            )


def test_every_plan_occurs_about_as_often_as_its_share() -> None:
    sim = ExecutorSim(7)
    _answer_all(sim, [_attempt(n) for n in range(2_000)])
    assert set(sim.plans) == {name for name, _ in PLANS}
    for name, share in PLANS:
        assert abs(sim.plans[name] / 2_000 - share / 100) < 0.04, name


def test_statuses_follow_each_plan() -> None:
    sim = ExecutorSim(7)
    by_attempt: dict[str, list[str]] = {}
    for report in _answer_all(sim, [_attempt(n) for n in range(400)]):
        by_attempt.setdefault(report["attemptId"], []).append(report["status"])
    shapes = Counter(tuple(statuses) for statuses in by_attempt.values())
    assert set(shapes) == {
        ("FILLED",),
        ("PARTIAL", "FILLED"),
        ("PARTIAL", "CANCELLED"),
        ("PARTIAL",),
        ("REJECTED",),
    }
    never = sim.plans["never"]
    assert len(by_attempt) == 400 - never


def test_late_reports_wait_for_the_tape_clock() -> None:
    sim = ExecutorSim(7)
    late = next(a for a in (_attempt(n) for n in range(200)) if sim.plan(a["attemptId"])[0] == "late")
    assert sim.on_attempt(late) == []
    assert sim.on_attempt({**_attempt(10_000, decision="SKIP"), "decidedAtMs": late["decidedAtMs"]}) == []
    later = {**_attempt(10_001, decision="SKIP"), "decidedAtMs": late["decidedAtMs"] + LATE_MS[1]}
    (report,) = sim.on_attempt(later)
    assert report["attemptId"] == late["attemptId"]
    assert report["status"] == "FILLED"
    assert late["decidedAtMs"] + LATE_MS[0] <= report["reportedAtMs"] < late["decidedAtMs"] + LATE_MS[1]
    assert sim.remaining() == []


def test_the_core_applies_the_simulated_reports_in_reports_mode() -> None:
    # Given the reports fill model and a few EXECUTEs, when the simulator's reports come back
    state = PartitionState()
    process(state, global_change(system={"fillModel": "reports", "aggregationWindowMs": 0}))
    attempts = []
    for n in range(30):
        t = trade("u1", trade_id=f"t{n}", asset=f"a{n % 3}", price=400_000, at=START_MS + n)
        attempts += [o for o in process(state, t) if isinstance(o, dict)]
    executes = [a for a in attempts if a["decision"] == "EXECUTE"]
    assert len(executes) == 30
    reports = _answer_all(ExecutorSim(7), [dict(a) for a in executes])
    outputs = [o for r in reports for o in process(state, decode_event(encode(r)))]
    # Then none is ignored (each is applied: one orderUpdated each), and what they filled is held
    assert all(isinstance(o, OrderUpdatedWire) for o in outputs)
    assert [o.wire["lastReportId"] for o in outputs] == [r["reportId"] for r in reports]  # type: ignore[union-attr]
    leader = state.leaders["u1"]
    assert sum(leader.held_share_micros.values()) == sum(r["filledShareMicros"] for r in _final(reports))


def _final(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last: dict[str, dict[str, Any]] = {}
    for report in reports:
        last[report["attemptId"]] = report
    return list(last.values())
