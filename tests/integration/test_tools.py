"""The plain-aiokafka tools against a real broker: topics, client, publish, tail and config commands.

Every test uses its own topic prefix, so tests never see each other's messages. CLI commands run through
``copybot``'s entry point (``streams.cli.main.main``), in sync tests: each command runs its own event loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from models.engine import finish_time, process
from models.state import PartitionState
from streams.cli.main import main
from streams.devbroker import broker
from streams.errors import InvalidEvent
from streams.kafka import admin as topics
from streams.serde import decode_event
from streams.settings import Settings
from streams.topology import (
    CONFIG_CHANGES,
    COPY_ATTEMPTS,
    LEADER_KEYED,
    SINGLE_PARTITION,
    SNAPSHOTS,
    SOURCE_HEADER,
    TRADES,
    route,
)
from tests.integration.live import CopybotClient

pytestmark = pytest.mark.integration

PARTITIONS = 4
SAMPLE_TAPE = Path(__file__).resolve().parents[2] / "examples" / "sample-tape.jsonl"
DEADLINE_S = 30.0
T = TypeVar("T")


@pytest.fixture
def settings(kafka_broker: broker.BrokerSettings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with a fresh topic prefix, also put in the environment for the CLI commands."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("COPYBOT_BOOTSTRAP", broker.bootstrap(kafka_broker))
    monkeypatch.setenv("COPYBOT_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("COPYBOT_PARTITIONS", str(PARTITIONS))
    return Settings.from_env()


def cli(*argv: str) -> int:
    return main(list(argv))


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


async def read_all(settings: Settings, base: str) -> list[Any]:
    """Every record of a topic up to its current end (all partitions)."""
    async with CopybotClient(settings, create_topics=False) as client:
        return [r async for r in client.read(base, from_beginning=True, follow=False)]


def partition_of(key: str) -> int:
    return int(DefaultPartitioner()(key.encode(), list(range(PARTITIONS)), list(range(PARTITIONS))))


def trade(trade_id: str, leader: str = "alice", at: int = 1_000_000) -> dict[str, Any]:
    return {
        "kind": "leaderTrade",
        "tradeId": trade_id,
        "followedUserId": leader,
        "assetId": "tok-1",
        "marketId": None,
        "side": "BUY",
        "priceMicros": 500_000,
        "shareMicros": 20_000_000,
        "notionalMicros": 10_000_000,
        "detectTimeMs": at,
    }


def snapshot(leader: str | None) -> dict[str, Any]:
    return {
        "kind": "portfolioSnapshot",
        "portfolioScope": "SHADOW_USER" if leader else "EXEC_GLOBAL",
        "followedUserId": leader,
        "bucketTimeMs": 1_000_000,
        "exposureMicros": 5_000_000,
        "equityMicros": None if leader else 100_000_000,
        "cashMicros": None,
    }


# --- topics ---------------------------------------------------------------------------------------


def test_topics_create_is_idempotent_and_checks_partition_counts(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("topics", "create") == 0
    first = capsys.readouterr().out
    assert first.count("created") == len(LEADER_KEYED) + len(SINGLE_PARTITION)
    assert cli("topics", "create") == 0
    second = capsys.readouterr().out
    assert "created" not in second
    assert second.count("existing") == len(LEADER_KEYED) + len(SINGLE_PARTITION)
    assert f"{settings.topic(TRADES)}                 {PARTITIONS}" in second.replace("  existing", "")
    assert run(lambda: topics.create_topics(settings)) == []

    assert cli("topics", "create", "--partitions", "3") == 1
    err = capsys.readouterr().err
    assert f"topic {settings.topic(TRADES)} exists with {PARTITIONS} partitions but copybot needs 3" in err


# --- client ---------------------------------------------------------------------------------------


def test_client_routes_each_kind_to_its_topic_partition_and_key(settings: Settings) -> None:
    change = {
        "kind": "configChange",
        "changeId": "c1",
        "scope": "GLOBAL",
        "followedUserId": None,
        "changedAtMs": 1,
        "sizing": {"budgetUsdcMicros": 1},
    }

    async def go() -> None:
        async with CopybotClient(settings) as client:
            await client.publish(trade("t1", "alice"))
            await client.publish(orjson.dumps(trade("t2", "bob")))
            await client.publish(snapshot("carol"))
            await client.publish(snapshot(None))
            await client.publish(change)
            await client.publish_tick(2_000_000)
            with pytest.raises(InvalidEvent, match=r"priceMicros"):
                await client.publish({**trade("bad"), "priceMicros": 0})
            with pytest.raises(ValueError, match="not a valid copybot event"):
                await client.publish(b"{nope")
            await client.publish_raw(SNAPSHOTS, b"garbage", key="zed")

    run(go)
    trades = run(lambda: read_all(settings, TRADES))
    keyed = {(r.key, r.partition) for r in trades if r.key is not None}
    assert keyed == {(b"alice", partition_of("alice")), (b"bob", partition_of("bob"))}
    ticks = [r for r in trades if r.key is None]
    assert sorted(r.partition for r in ticks) == list(range(PARTITIONS))
    assert {orjson.loads(r.value)["nowMs"] for r in ticks} == {2_000_000}
    snaps = run(lambda: read_all(settings, SNAPSHOTS))
    assert sorted((r.key, r.partition) for r in snaps) == sorted(
        [
            (b"carol", partition_of("carol")),
            (b"__global__", partition_of("__global__")),
            (b"zed", partition_of("zed")),
        ]
    )
    changes = run(lambda: read_all(settings, CONFIG_CHANGES))
    assert [(r.key, r.partition, orjson.loads(r.value)) for r in changes] == [(b"GLOBAL", 0, change)]
    # nothing invalid was sent except the explicit publish_raw
    assert len(trades) == 2 + PARTITIONS


# --- publish --------------------------------------------------------------------------------------


def expected_messages(settings: Settings, lines: list[bytes]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in lines:
        topic, key = route(decode_event(line))
        counts[settings.topic(topic)] += PARTITIONS if key is None else 1
    return counts


def test_publish_sample_tape_without_a_worker_publishes_every_line(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [line for line in SAMPLE_TAPE.read_bytes().splitlines() if line.strip()]
    assert cli("publish", str(SAMPLE_TAPE)) == 0
    out = capsys.readouterr().out
    assert "0 invalid lines skipped" in out
    expected = expected_messages(settings, lines)
    for base in (TRADES, SNAPSHOTS, CONFIG_CHANGES):
        records = run(lambda base=base: read_all(settings, base))  # type: ignore[misc]
        assert len(records) == expected[settings.topic(base)], base
    kinds = Counter(orjson.loads(line)["kind"] for line in lines)
    table_rows = {tuple(line.split()) for line in out.splitlines()}
    for kind, n in kinds.items():
        assert (kind, f"{n:,}") in table_rows


def test_publish_skips_invalid_lines_with_their_line_number(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tape = tmp_path / "tape.jsonl"
    tape.write_bytes(
        orjson.dumps(trade("t1")) + b"\n\n{broken\n" + orjson.dumps({**trade("t2"), "side": "HOLD"}) + b"\n"
    )
    assert cli("publish", str(tape)) == 0
    captured = capsys.readouterr()
    assert "line 3 skipped" in captured.err
    assert "line 4 skipped" in captured.err
    assert "side" in captured.err
    assert "2 invalid lines skipped" in captured.out
    assert len(run(lambda: read_all(settings, TRADES))) == 1


def test_publish_unreadable_file_and_unreachable_kafka_exit_1(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("publish", str(tmp_path / "missing.jsonl")) == 1
    assert "cannot read" in capsys.readouterr().err
    monkeypatch.setenv("COPYBOT_BOOTSTRAP", "127.0.0.1:1")
    assert cli("publish", str(SAMPLE_TAPE)) == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in capsys.readouterr().err


def test_publish_ordered_fails_clearly_when_no_worker_copies(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert cli("publish", str(SAMPLE_TAPE), "--ordered", "--wait-timeout", "2") == 1
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert "no worker copied the portfolioSnapshot of line 1" in err
    assert "within 2s: is `copybot worker` running" in err
    assert elapsed < 2 + 15  # the deadline, plus connection and topic setup


def test_publish_finish_publishes_the_replay_end_tick_into_every_partition(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    state = PartitionState()
    lines = [line for line in SAMPLE_TAPE.read_bytes().splitlines() if line.strip()]
    for line in lines:
        process(state, decode_event(line))
    end = finish_time(state)
    assert end is not None
    assert cli("publish", str(SAMPLE_TAPE), "--finish") == 0
    assert f"finish tick nowMs={end}" in capsys.readouterr().out
    records = run(lambda: read_all(settings, TRADES))
    last = {}
    for r in records:
        last[r.partition] = orjson.loads(r.value)
    assert last == {p: {"kind": "tick", "nowMs": end} for p in range(PARTITIONS)}
    tape_ticks = sum(1 for line in lines if b'"kind":"tick"' in line)
    ticks = [r for r in records if r.key is None]
    assert len(ticks) == (tape_ticks + 1) * PARTITIONS


async def fake_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Copies snapshots and config changes into leader-trades the way the worker's contract says."""
    consumer: Any = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    async with CopybotClient(settings, create_topics=False) as client:
        await consumer.start()
        try:
            tps = [TopicPartition(settings.topic(SNAPSHOTS), p) for p in range(PARTITIONS)]
            tps.append(TopicPartition(settings.topic(CONFIG_CHANGES), 0))
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while not stop.is_set():
                for tp, records in (await consumer.getmany(timeout_ms=100)).items():
                    for r in records:
                        header = [(SOURCE_HEADER, f"{r.topic}:{r.partition}:{r.offset}".encode())]
                        event = decode_event(r.value)
                        whole = not (event.kind == "portfolioSnapshot" and event.followed_user_id is not None)
                        for p in range(PARTITIONS) if whole else [tp.partition]:
                            await client.publish_raw(TRADES, r.value, partition=p, headers=header)
                        await client.flush()
        finally:
            await consumer.stop()


async def test_publish_ordered_makes_the_decision_log_follow_the_file(
    settings: Settings, tmp_path: Path
) -> None:
    lines = [line for line in SAMPLE_TAPE.read_bytes().splitlines() if line.strip()][:400]
    tape = tmp_path / "head.jsonl"
    tape.write_bytes(b"\n".join(lines) + b"\n")
    await topics.create_topics(settings)
    stop = asyncio.Event()
    worker = asyncio.create_task(fake_worker(settings, stop))
    try:
        code = await asyncio.to_thread(cli, "publish", str(tape), "--ordered", "--wait-timeout", "20")
    finally:
        stop.set()
        await worker
    assert code == 0
    expected: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for line in lines:
        event = decode_event(line)
        leader = event.followed_user_id if event.kind in ("leaderTrade", "portfolioSnapshot") else None
        if leader is not None:  # trades and per-leader snapshots: the leader's partition
            expected[partition_of(leader)].append(line)
        else:  # ticks, config changes, whole EXEC_GLOBAL snapshots: every partition
            for p in range(PARTITIONS):
                expected[p].append(line)
    actual: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for r in await read_all(settings, TRADES):
        actual[r.partition].append(r.value)
    assert actual == expected


# --- config ---------------------------------------------------------------------------------------


def test_config_set_global_and_user_publish_and_show_reflects_them(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli("config", "set-global", "sizing.budgetedDynamicEnabled=true", "sizing.budgetUsdcMicros=30000000")
        == 0
    )
    out = capsys.readouterr().out
    assert "published configChange" in out
    assert (
        cli("config", "set-user", "alice", "sizing.sizingMode=budgetedDynamic", "leader.label=Alice A") == 0
    )
    capsys.readouterr()
    assert cli("config", "set-global", "sizing.budgetRMaxBps=500") == 0  # carries budgetUsdcMicros along
    capsys.readouterr()
    changes = [orjson.loads(r.value) for r in run(lambda: read_all(settings, CONFIG_CHANGES))]
    assert [(c["scope"], c["followedUserId"]) for c in changes] == [
        ("GLOBAL", None),
        ("USER", "alice"),
        ("GLOBAL", None),
    ]
    assert changes[2]["sizing"] == {
        "budgetedDynamicEnabled": True,
        "budgetUsdcMicros": 30_000_000,
        "budgetRMaxBps": 500,
    }
    assert cli("config", "show") == 0
    out = capsys.readouterr().out
    assert f"configVersion: {changes[2]['changeId']}" in out
    assert any(
        line.split()[:2] == ["sizing.budgetRMaxBps", "500"] and "GLOBAL" in line for line in out.splitlines()
    )
    assert cli("config", "show", "--leader", "alice") == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if "." in line.split(" ")[0]}
    assert rows["sizing.sizingMode"].endswith("USER")
    assert rows["sizing.budgetUsdcMicros"].endswith("GLOBAL")
    assert '"Alice A"' in rows["leader.label"]
    assert "Budgeted Dynamic active: yes (HARD)" in out


def test_config_set_invalid_exits_2_names_the_key_and_publishes_nothing(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("config", "set-global", "sizing.budgetRMinBps=500", "sizing.budgetRMaxBps=100") == 2
    err = capsys.readouterr().err
    assert "nothing was published" in err
    assert "sizing.budgetRMinBps" in err
    assert cli("config", "set-user", "alice", "buffering.enabled=true", "sizing.fooBar=1") == 2
    err = capsys.readouterr().err
    assert "buffering: section not allowed in a USER change" in err
    assert "sizing.fooBar: unknown key" in err
    assert (
        cli("config", "set-global", "sizing.budgetedDynamicEnabled=true", "sizing.sizingMode=budgetedDynamic")
        == 2
    )
    assert "sizing.budgetUsdcMicros: must be > 0" in capsys.readouterr().err
    assert cli("config", "set-global", "nosection.x=1") == 2
    assert "unknown section" in capsys.readouterr().err
    assert run(lambda: read_all(settings, CONFIG_CHANGES)) == []


# --- tail -----------------------------------------------------------------------------------------


def attempt(leader: str, decision: str, n: int) -> dict[str, Any]:
    return {
        "kind": "copyAttempt",
        "attemptId": str(uuid.uuid4()),
        "followedUserId": leader,
        "groupKey": f"{leader}:tok:BUY:{n}",
        "assetId": f"tok-{n}",
        "marketId": None,
        "side": "BUY",
        "sourceType": "AGGREGATOR",
        "tradeIds": [f"t{n}"],
        "bufferedTradeCount": 1,
        "decision": decision,
        "reasonCodes": [] if decision == "EXECUTE" else ["RISK_CAP_USER"],
        "theirNotionalMicros": 10_000_000,
        "theirReferencePriceMicros": 500_000,
        "rawTargetMicros": 1_000_000,
        "targetNotionalMicros": 1_234_560,
        "targetShareMicros": 2_000_000,
        "decidedAtMs": 1_000_000 + n,
        "sizing": {"rU": 0.0125},
        "budget": {
            "currentExposureMicros": 0,
            "headroomMicros": 7_000_000,
            "capped": False,
            "reducing": False,
        },
        "configVersion": None,
    }


def test_tail_prints_attempts_with_filters(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    sent = [attempt("alice", "EXECUTE", 1), attempt("bob", "SKIP", 2), attempt("alice", "SKIP", 3)]

    async def go() -> None:
        async with CopybotClient(settings) as client:
            for a in sent:
                await client.publish_raw(COPY_ATTEMPTS, orjson.dumps(a), key=a["followedUserId"])

    run(go)
    assert cli("tail", "--from-beginning", "--limit", "3", "--json") == 0
    got = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(got, key=lambda a: a["decidedAtMs"]) == sent

    assert cli("tail", "--from-beginning", "--leader", "alice", "--decision", "SKIP", "--no-follow") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3  # header, rule, one attempt
    row = lines[2]
    assert row.startswith("1970-01-01T00:16:40.003Z")
    for cell in ("alice", "tok-3", "SKIP", "RISK_CAP_USER", "$1.23", "1.25%", "$7.00"):
        assert cell in row

    assert cli("tail", "--from-beginning", "--decision", "EXECUTE", "--limit", "1") == 0
    assert "tok-1" in capsys.readouterr().out.splitlines()[2]
