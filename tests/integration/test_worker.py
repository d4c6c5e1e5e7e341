"""The live worker on a real broker: it decides what replay decides, survives crashes, rebalances and
broker restarts, applies config live, and dead-letters bad input (SPEC 8, issue 3)."""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.codec import leader_to_json
from models.events import DeadLetter, InputEvent
from models.state import PartitionState
from streams.devbroker import broker
from streams.devbroker.harness import finish_tick
from streams.sample_tape import generate
from streams.settings import CONFIG_REPORTS, DEAD_LETTERS, SNAPSHOTS, TRADES
from streams.topology import leader_partition
from streams.worker.records import merged_state
from tests.factories import change_wire
from tests.integration.chaos_check import compare_partition
from tests.integration.conftest import start_or_fail
from tests.integration.live import (
    SAMPLE_TAPE,
    CopybotClient,  # with the test-only publish_raw
    LiveSystem,
    accepted_trades,
    by_attempt_id,
    partitioned_replay,
    read_to_end,
    replay_attempts,
    tape_events,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def systems(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[[int], LiveSystem]]:
    """``systems(partitions)``: a live system on the session broker, closed when the test ends."""
    made: list[LiveSystem] = []

    def make(partitions: int) -> LiveSystem:
        made.append(LiveSystem(kafka_bootstrap, tmp_path, partitions=partitions))
        return made[-1]

    try:
        yield make
    finally:
        for live in made:
            live.close()


@pytest.fixture
def system(systems: Callable[[int], LiveSystem]) -> LiveSystem:
    return systems(1)


def assert_invariants(
    attempts: list[dict[str, Any]], trades: set[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """Conservation, identical duplicates, HARD budget never overshot; returns attempts by id."""
    unique = by_attempt_id(attempts)
    covered = Counter((a["followedUserId"], t) for a in unique.values() for t in a["tradeIds"])
    assert set(covered) == trades
    assert max(covered.values()) == 1
    for a in unique.values():
        hard = a["sizing"]["budgetedDynamicActive"] and a["sizing"]["budgetEnforcement"] == "hard"
        if a["decision"] == "EXECUTE" and hard and not a["budget"]["reducing"]:
            assert (
                a["budget"]["currentExposureMicros"] + a["targetNotionalMicros"]
                <= a["sizing"]["budgetUsdcMicros"]
            )
    return unique


def _replayed(events: list[InputEvent], partitions: int) -> dict[str, dict[str, Any]]:
    """What each partition's replay of `events` decides, by attemptId (the tape finished by a tick)."""
    expected, _ = partitioned_replay(events, partitions, finish_tick(events, partitions))
    return by_attempt_id(expected)


# --- live equals replay -----------------------------------------------------------------------------


def test_one_partition_live_run_yields_exactly_the_replay_attempts(system: LiveSystem) -> None:
    # Given a worker without wall-clock ticks, and the sample tape published in file order
    system.worker().start()
    system.copybot("topics", "create")
    system.publish(SAMPLE_TAPE, "--ordered", "--finish")
    events = tape_events(SAMPLE_TAPE)
    # When every trade is accounted for
    live = system.attempts_covering(accepted_trades(events))
    # Then the attempts are exactly replay's, by attemptId and contents
    expected = by_attempt_id(replay_attempts(SAMPLE_TAPE.read_bytes().splitlines()))
    assert by_attempt_id(live) == expected


def test_eight_partitions_conserve_every_trade_and_match_each_partition_replay(
    systems: Callable[[int], LiveSystem],
) -> None:
    system = systems(8)
    system.worker().start()
    system.publish(SAMPLE_TAPE, "--ordered", "--finish")
    events = tape_events(SAMPLE_TAPE)
    trades = accepted_trades(events)
    live = assert_invariants(system.attempts_covering(trades), trades)
    assert live == _replayed(events, 8)
    assert len({a["followedUserId"] for a in live.values()}) == 4


# --- config, bad input ---------------------------------------------------------------------------------


def _tape(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    return path


def _trade(trade_id: str, at: int, leader: str = "u1", notional: int = 100_000_000) -> dict[str, Any]:
    return {
        "kind": "leaderTrade",
        "tradeId": trade_id,
        "followedUserId": leader,
        "assetId": "a1",
        "marketId": "m1",
        "side": "BUY",
        "priceMicros": 500_000,
        "shareMicros": notional * 2,
        "notionalMicros": notional,
        "detectTimeMs": at,
    }


def test_config_changes_take_effect_live_and_an_invalid_one_changes_nothing(
    system: LiveSystem, tmp_path: Path
) -> None:
    t0 = 1_800_000_000_000
    tape = _tape(
        tmp_path / "config.jsonl",
        [
            # (window 0: each trade is decided on arrival, under the config in force then)
            change_wire("pause", system={"copyEngineEnabled": False, "aggregationWindowMs": 0}),
            _trade("t1", t0),
            change_wire("resume", system={"copyEngineEnabled": True, "aggregationWindowMs": 0}),
            _trade("t2", t0 + 1_000),
            change_wire(  # Budgeted Dynamic for u1 only: $40 budget, E_u missing → r_max 1%
                "dynamic",
                sizing={"budgetedDynamicEnabled": True, "budgetUsdcMicros": 40_000_000},
            ),
            change_wire(
                "u1-dynamic", "USER", "u1", sizing={"sizingMode": "budgetedDynamic", "budgetRMaxBps": 50}
            ),
            _trade("t3", t0 + 2_000),
            _trade("t4", t0 + 2_000, leader="u2"),
            change_wire("bad", "USER", "u1", sizing={"budgetRMinBps": 900, "budgetRMaxBps": 100}),
            _trade("t5", t0 + 3_000),
            {"kind": "tick", "nowMs": t0 + 10_000},
        ],
    )
    system.worker().start()
    system.publish(tape, "--ordered")
    trades = {("u1", "t1"), ("u1", "t2"), ("u1", "t3"), ("u2", "t4"), ("u1", "t5")}
    attempts = {a["tradeIds"][0]: a for a in system.attempts_covering(trades)}
    assert attempts["t1"]["reasonCodes"] == ["ENGINE_PAUSED"]
    assert attempts["t2"]["decision"] == "EXECUTE"
    assert attempts["t2"]["configVersion"] == "resume"
    assert attempts["t3"]["sizing"]["budgetedDynamicActive"] is True
    assert attempts["t3"]["rawTargetMicros"] == 500_000  # 0.5% of $100 (r_max of the override)
    assert attempts["t4"]["sizing"]["budgetedDynamicActive"] is False  # u2 keeps fixed rate
    # the invalid change was rejected, reported once, and u1 is still sized by the old override
    assert attempts["t5"]["rawTargetMicros"] == 500_000
    assert attempts["t5"]["configVersion"] == "u1-dynamic"
    reports = system.read_topic(CONFIG_REPORTS, lambda v: any(r["changeId"] == "bad" for r in v), 60)
    (rejected,) = [r for r in reports if r["changeId"] == "bad"]
    assert rejected["kind"] == "configRejected"
    assert any("budgetRMinBps" in e for e in rejected["errors"])


def test_bad_input_on_every_topic_is_dead_lettered_and_the_worker_keeps_going(system: LiveSystem) -> None:
    system.worker().start()
    good = _trade("ok-1", 1_800_000_000_000)
    bad = {
        TRADES: [b"{not json", orjson.dumps({**good, "priceMicros": "cheap"}), b'{"kind":"mystery"}'],
        SNAPSHOTS: [b"\xff\xfe", orjson.dumps({"kind": "portfolioSnapshot", "portfolioScope": "X"})],
        "config-changes": [orjson.dumps({"kind": "configChange", "changeId": ""}), b"[]"],
    }

    async def send() -> None:
        async with CopybotClient(system.settings) as client:
            for topic, values in bad.items():
                for value in values:
                    await client.publish_raw(
                        topic, value, key="u1" if topic != "config-changes" else "GLOBAL"
                    )
            await client.publish(good)
            await client.publish({"kind": "tick", "nowMs": 1_800_000_010_000})
            await client.flush()

    asyncio.run(send())
    (attempt,) = system.attempts_covering({("u1", "ok-1")})
    assert attempt["decision"] == "EXECUTE"
    letters = system.read_topic(DEAD_LETTERS, lambda v: len(v) >= 7, 60)
    parsed = [DeadLetter.model_validate(d) for d in letters]
    assert Counter(d.source_topic.split(".", 1)[1] for d in parsed) == {
        TRADES: 3,
        SNAPSHOTS: 2,
        "config-changes": 2,
    }
    assert all(d.error for d in parsed)
    assert any("priceMicros" in d.error for d in parsed)
    assert any(d.value == "{not json" for d in parsed)


# --- crashes, rebalances, broker restarts ---------------------------------------------------------------


def _big_tape(path: Path, trades: int) -> tuple[Path, list[InputEvent], set[tuple[str, str]]]:
    """A generated tape of about `trades` leader trades, its events, and the trades the worker must cover."""
    with path.open("wb") as out:
        for line in generate(trades=trades, seed=11):
            out.write(line + b"\n")
    events = tape_events(path)
    return path, events, accepted_trades(events)


def _wait_covering(system: LiveSystem, trades: float) -> None:
    """Wait until the copy attempts cover at least `trades` trades."""
    system.read_topic("copy-attempts", lambda v: sum(len(a["tradeIds"]) for a in v) >= trades, 240)


def _final_leader_records(system: LiveSystem) -> dict[str, Any]:
    """The leaders as the worker last saved them (restored from the changelog read to its end), with
    their dedup memory."""
    latest: dict[bytes, bytes | None] = {}
    for r in read_to_end(system.bootstrap, f"{system.prefix}-partition-state-changelog"):
        latest[r.key] = r.value
    state = merged_state(latest, system.partitions)
    return {u: leader_to_json(leader) for u, leader in state.leaders.items()}


def _expected_leader_records(states: list[PartitionState]) -> dict[str, Any]:
    return {u: leader_to_json(leader) for s in states for u, leader in s.leaders.items()}


def test_sigkill_at_several_points_loses_nothing_and_applies_nothing_twice(
    systems: Callable[[int], LiveSystem], tmp_path: Path
) -> None:
    # Given a tape of 50k+ trades, published up front, and a worker killed three times mid-run
    tape, events, trades = _big_tape(tmp_path / "big.jsonl", 50_000)
    assert len(trades) >= 50_000
    system = systems(2)
    worker = system.worker()
    worker.start()
    system.publish(tape, "--ordered", "--finish")
    for fraction in (0.2, 0.5, 0.8):
        _wait_covering(system, fraction * len(trades))
        worker.kill(signal.SIGKILL)
        worker.start()
    attempts = system.attempts_covering(trades, timeout_s=300)
    live = assert_invariants(attempts, trades)
    expected, states = partitioned_replay(events, 2, finish_tick(events, 2))
    assert live == by_attempt_id(expected)
    wait_until(
        lambda: _final_leader_records(system) == _expected_leader_records(states),
        60,
        "the saved per-leader state to equal an uninterrupted run's",
        poll_s=1.0,
    )


def test_a_second_worker_takes_over_when_the_first_is_killed(
    systems: Callable[[int], LiveSystem], tmp_path: Path
) -> None:
    tape, events, trades = _big_tape(tmp_path / "tape.jsonl", 20_000)
    system = systems(4)
    first, second = system.worker("w1").start(), system.worker("w2").start()
    first.wait_log("[^Worker]: Ready")
    system.publish(tape, "--ordered", "--finish")
    _wait_covering(system, len(trades) // 3)
    first.kill(signal.SIGKILL)
    live = assert_invariants(system.attempts_covering(trades, timeout_s=300), trades)
    assert live == _replayed(events, 4)
    assert "restored" in second.current_log() or "partition" in second.current_log()


def test_a_broker_restart_mid_run_loses_nothing(
    own_broker_settings: broker.BrokerSettings, tmp_path: Path
) -> None:
    start_or_fail(own_broker_settings)
    system = LiveSystem(broker.bootstrap(own_broker_settings), tmp_path, partitions=2)
    tape, events, trades = _big_tape(tmp_path / "tape.jsonl", 10_000)
    try:
        worker = system.worker().start()
        system.publish(tape, "--ordered", "--finish")
        _wait_covering(system, len(trades) // 4)
        broker.stop(own_broker_settings)
        start_or_fail(own_broker_settings)
        if worker.process is not None and worker.process.poll() is not None:
            worker.start()  # a worker that gave up while the broker was away is simply restarted
        live = assert_invariants(system.attempts_covering(trades, timeout_s=300), trades)
        assert live == _replayed(events, 2)
    finally:
        system.close()


def test_a_worker_started_on_a_backlog_catches_up(
    systems: Callable[[int], LiveSystem], tmp_path: Path
) -> None:
    # Given 20k trades already in Kafka before any worker runs (big producer batches once it starts)
    tape, events, trades = _big_tape(tmp_path / "backlog.jsonl", 20_000)
    system = systems(4)
    system.copybot("topics", "create")
    last = max(e.detect_time_ms for e in events if e.kind == "leaderTrade")
    with tape.open("ab") as out:  # the snapshot/config copies land after it: close everything anyway
        out.write(orjson.dumps({"kind": "tick", "nowMs": last + 86_400_000}) + b"\n")
    system.publish(tape)
    system.worker().start()
    # Then it works through the whole backlog (a regression: batches over the request limit stalled it)
    assert_invariants(system.attempts_covering(trades, timeout_s=240), trades)


# --- a partition leaves a worker and comes back ---------------------------------------------------------


def _split_tape(path: Path, parts: int, events: list[InputEvent], partitions: int) -> list[Path]:
    """`path`'s lines in `parts` consecutive tapes (published one after the other, they are the tape),
    the last ending with the tick ``publish --finish`` would send after the whole tape."""
    lines = path.read_bytes().splitlines()
    finish = finish_tick(events, partitions)
    if finish is not None:
        lines.append(orjson.dumps({"kind": "tick", "nowMs": finish}))
    size = -(-len(lines) // parts)
    tapes = []
    for i in range(parts):
        tape = path.with_suffix(f".part{i}.jsonl")
        tape.write_bytes(b"\n".join(lines[i * size : (i + 1) * size]) + b"\n")
        tapes.append(tape)
    return tapes


def _restored_partitions(log: str) -> set[int]:
    return {int(m) for m in re.findall(r"partition (\d+) restored", log)}


def _assert_live_is_the_log_replayed(system: LiveSystem, trades: set[tuple[str, str]]) -> None:
    """Per partition, the live attempts are exactly the decision core's replay of that partition's log as
    Kafka holds it (by attemptId and content); every trade in one attempt, no id with two contents."""
    attempts = system.attempts_covering(trades, timeout_s=300)
    assert_invariants(attempts, trades)
    logs: dict[int, list[bytes]] = {p: [] for p in range(system.partitions)}
    for record in read_to_end(system.bootstrap, system.settings.topic(TRADES)):
        logs[record.partition].append(record.value)
    live: dict[int, list[dict[str, Any]]] = {p: [] for p in range(system.partitions)}
    for attempt in attempts:
        live[leader_partition(attempt["followedUserId"], system.partitions)].append(attempt)
    fields: Counter[str] = Counter()
    for p in range(system.partitions):
        verdict, _ = compare_partition(p, logs[p], live[p], fields)
        assert verdict.ok, (verdict, fields)


def test_a_partition_that_leaves_a_worker_and_comes_back_is_restored_from_its_log(
    own_broker_settings: broker.BrokerSettings, tmp_path: Path
) -> None:
    # Given worker A alone deciding the first third of a tape (2 partitions)
    start_or_fail(own_broker_settings)
    system = LiveSystem(broker.bootstrap(own_broker_settings), tmp_path, partitions=2)
    tape, events, trades = _big_tape(tmp_path / "tape.jsonl", 15_000)
    first, second, third = _split_tape(tape, 3, events, system.partitions)
    try:
        a = system.worker("a").start()
        system.publish(first, "--ordered")
        # When B joins and decides the second third on the partition it took from A
        b = system.worker("b").start()
        system.publish(second, "--ordered")
        _wait_covering(system, len(trades) * 0.6)
        wait_until(lambda: bool(_restored_partitions(b.current_log())), 60, "B to restore a partition")
        moved = _restored_partitions(b.current_log())
        # and the broker stops and starts while B owns it, then B stops: the partition returns to A
        broker.stop(own_broker_settings)
        start_or_fail(own_broker_settings)
        b.stop()
        system.publish(third, "--ordered")
        # Then the same process A restored it again — from Kafka, not from what it held before
        _assert_live_is_the_log_replayed(system, trades)
        assert a.process is not None
        assert a.process.poll() is None, a.current_log()[-4000:]
        assert a.starts == 1
        assert moved <= _restored_partitions(a.current_log())
    finally:
        system.close()
