"""The log is the truth (SPEC 8, issue 11): after SIGKILLs, a broker restart and malformed input, every
partition's attempts are exactly the decision core's replay of that partition's log as stored in Kafka;
and a send that fails stops the worker instead of carrying on with state that no attempt reflects.

The workers are driven only from the outside: ``python -m streams.cli worker`` subprocesses configured by
COPYBOT_* variables, their input and output read from Kafka.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.devbroker import broker
from streams.settings import COPY_ATTEMPTS, TRADES
from tests.factories import trade_wire
from tests.integration.chaos import ChaosPlan, run_chaos
from tests.integration.chaos_check import AttemptRecord, ChaosRecords, judge, render, replay_log
from tests.integration.conftest import start_or_fail
from tests.integration.live import LiveSystem, by_attempt_id, read_to_end, wait_until

SEED = int(os.environ.get("COPYBOT_CHAOS_SEED", "11"))
"""The chaos run's seed; set COPYBOT_CHAOS_SEED to try another (the verdict names the seed)."""


# --- the chaos run ---------------------------------------------------------------------------------------


@pytest.mark.integration
def test_after_kills_a_broker_restart_and_bad_input_every_partition_decided_exactly_its_log(
    own_broker_settings: broker.BrokerSettings, tmp_path: Path
) -> None:
    # Given 2 workers on 4 partitions, 20k wall-clock trades under HARD budgets with buffering on for a
    # while, 10 SIGKILLs of random workers (restarted after 0–5 s), a broker restart, malformed input
    start_or_fail(own_broker_settings)
    plan = ChaosPlan(seed=SEED)
    # When the workers have consumed everything
    verdict = run_chaos(plan, own_broker_settings, tmp_path)
    # Then it really was chaos, and every partition's attempts are exactly its log's replay
    assert verdict.kills >= plan.kills, render(verdict)
    assert verdict.broker_restarts == 1, render(verdict)
    assert verdict.malformed_topics == 3, render(verdict)
    assert verdict.ok, render(verdict)


# --- the instrument itself: it fails when the live attempts are not the log's --------------------------


T0 = 1_800_000_000_000


def _trade(trade_id: str, at: int, leader: str = "u1") -> bytes:
    return orjson.dumps(trade_wire(leader, at=at, trade_id=trade_id, market=None))


def _records(
    live: list[dict[str, Any]], stamps: list[int] | None = None, malformed: set[Any] | None = None
) -> ChaosRecords:
    log = [
        _trade("t1", T0),
        _trade("t2", T0 + 10),
        b"{bad",
        orjson.dumps({"kind": "tick", "nowMs": T0 + 60_000}),
    ]
    stamps = stamps or [T0 + 100 * i for i in range(len(live))]
    return ChaosRecords(
        log={0: log},
        attempts=[
            AttemptRecord(0, i, s, orjson.dumps(a)) for i, (a, s) in enumerate(zip(live, stamps, strict=True))
        ],
        dead_letters=[{"sourceTopic": "x.leader-trades", "partition": 0, "offset": 2}],
        accepted={("u1", "t1"), ("u1", "t2")},
        malformed=malformed if malformed is not None else {("x.leader-trades", 0, 2)},
        progress_window_ms=(T0, T0 + 1_000, T0 + 2_000),
        outages=[],
    )


def _replayed() -> list[dict[str, Any]]:
    return replay_log(
        [_trade("t1", T0), _trade("t2", T0 + 10), orjson.dumps({"kind": "tick", "nowMs": T0 + 60_000})]
    )


def test_the_verdict_passes_live_attempts_that_are_the_replay_repeated() -> None:
    live = _replayed()
    verdict = judge(_records([*live, *live]), partitions=1, gap_limit_s=15)
    assert verdict.ok, render(verdict)


def test_the_verdict_names_a_differing_field_a_second_content_and_a_doubled_trade() -> None:
    (attempt,) = _replayed()
    changed = {**attempt, "budget": {**attempt["budget"], "currentExposureMicros": 1}}
    verdict = judge(_records([changed, attempt]), partitions=1, gap_limit_s=15)
    assert not verdict.ok
    assert (verdict.partitions[0].differing, verdict.partitions[0].two_contents) == (1, 1)
    assert verdict.differing_fields == Counter({"budget.currentExposureMicros": 1})
    assert "budget.currentExposureMicros: live 1" in render(verdict)


def test_the_verdict_counts_lost_trades_missing_attempts_gaps_and_unreported_bad_input() -> None:
    verdict = judge(
        _records([], malformed={("x.leader-trades", 0, 2), ("x.config-changes", 0, 5)}),
        partitions=1,
        gap_limit_s=0.5,
    )
    assert (verdict.lost, verdict.partitions[0].missing, verdict.not_dead_lettered) == (2, 1, 1)
    assert verdict.max_gap_s == 1.0
    assert not verdict.ok


def test_the_verdict_fails_when_partitions_take_too_long_to_decide_after_the_broker_restart() -> None:
    verdict = judge(_records(_replayed()), partitions=1, gap_limit_s=15)
    verdict.resume_s, verdict.resume_limit_s = 61.0, 60.0
    assert not verdict.ok
    assert "decided again in 61.0s (limit 60s)" in render(verdict)


# --- a failing send stops the worker ---------------------------------------------------------------------


@pytest.fixture
def system(kafka_bootstrap: str, tmp_path: Path) -> Iterator[LiveSystem]:
    live = LiveSystem(kafka_bootstrap, tmp_path)
    try:
        yield live
    finally:
        live.close()


async def _set_topic_config(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])
    finally:
        await admin.close()


def _tape(path: Path, trade_ids: list[str], start: int) -> tuple[Path, set[tuple[str, str]]]:
    """Trades one second apart, each its own group (window 0), and a tick after them."""
    window_zero = {
        "kind": "configChange",
        "changeId": f"w0-{start}",
        "scope": "GLOBAL",
        "followedUserId": None,
        "changedAtMs": 0,
        "system": {"aggregationWindowMs": 0},
    }
    lines = [orjson.dumps(window_zero)]
    lines += [_trade(t, start + 1_000 * i) for i, t in enumerate(trade_ids)]
    lines.append(orjson.dumps({"kind": "tick", "nowMs": start + 1_000 * len(trade_ids) + 1}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, {("u1", t) for t in trade_ids}


MAX_MESSAGE_BYTES_DEFAULT = "1048588"


@pytest.mark.integration
def test_a_send_that_fails_stops_the_worker_and_its_restart_emits_the_lost_attempts(
    system: LiveSystem, tmp_path: Path
) -> None:
    # Given a worker that has decided and published a first batch
    worker = system.worker().start()
    first, first_trades = _tape(tmp_path / "first.jsonl", [f"a{i}" for i in range(20)], T0)
    system.publish(first, "--ordered")
    system.attempts_covering(first_trades)
    # When copy-attempts refuses every message (a tiny max.message.bytes) and more trades arrive
    attempts_topic = system.settings.topic(COPY_ATTEMPTS)
    asyncio.run(_set_topic_config(system.bootstrap, attempts_topic, {"max.message.bytes": "64"}))
    second, second_trades = _tape(tmp_path / "second.jsonl", [f"b{i}" for i in range(20)], T0 + 100_000)
    system.publish(second, "--ordered")
    # Then the worker stops, non-zero, saying why
    assert worker.process is not None
    wait_until(
        lambda: worker.process is not None and worker.process.poll() is not None, 60, "the worker to exit"
    )
    assert worker.process.returncode != 0
    assert re.search(r"MessageSizeTooLarge|too large", worker.current_log(), re.IGNORECASE)
    # And once the topic accepts messages again, its restart emits the lost batch's attempts: the whole
    # output is exactly the replay of the log
    asyncio.run(
        _set_topic_config(system.bootstrap, attempts_topic, {"max.message.bytes": MAX_MESSAGE_BYTES_DEFAULT})
    )
    worker.start()
    live = system.attempts_covering(first_trades | second_trades, timeout_s=120)
    log = [
        r.value
        for r in sorted(read_to_end(system.bootstrap, system.settings.topic(TRADES)), key=lambda r: r.offset)
    ]
    assert by_attempt_id(live) == by_attempt_id(replay_log(log))
