"""``copybot ingest polymarket`` against the fake APIs (tests/ingest/fake_polymarket.py) and a real broker.

Three rounds, each by a fresh adapter that starts from what Kafka holds (as after a restart): the published
events equal the expected ones exactly, nothing is published twice, nothing is missed, a market resolves
mid-test and is published once, the bad row is dead-lettered once, and the checkpoints are on the compacted
topic keyed by wallet.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.devbroker import broker
from streams.ingest.sinks import IngestClient, KafkaSink
from streams.settings import Settings
from streams.topology import DEAD_LETTERS, INGEST_CHECKPOINTS, MARKET_EVENTS, SNAPSHOTS, TRADES
from tests.ingest import scenario
from tests.ingest.fake_polymarket import FakePolymarket
from tests.ingest.harness import SMALL_PAGES, VirtualTime, Wall, adapter
from tests.integration.live import LiveSystem, by_attempt_id, read_to_end, replay_attempts

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(kafka_broker: broker.BrokerSettings) -> Settings:
    return Settings.from_env(
        {
            "COPYBOT_BOOTSTRAP": broker.bootstrap(kafka_broker),
            "COPYBOT_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:12]}",
            "COPYBOT_PARTITIONS": "2",
        }
    )


async def topic(client: IngestClient, name: str) -> list[tuple[str | None, dict[str, Any]]]:
    """Every record of a topic as (key, value), in offset order per partition."""
    found = []
    async for record in client.read(name, from_beginning=True, follow=False):
        found.append((record.key.decode() if record.key else None, orjson.loads(record.value)))
    return found


async def one_round(fake: FakePolymarket, settings: Settings, wall: Wall) -> None:
    """A fresh adapter (a restart): checkpoints and resolved markets come from Kafka."""
    async with IngestClient(settings, client_id="test-ingest") as client:
        sink = KafkaSink(client)
        checkpoints, resolved = await sink.checkpoints(), await sink.resolved_markets()
        async with adapter(
            fake, sink, wall=wall, vt=VirtualTime(), checkpoints=checkpoints, resolved=resolved
        ) as ingestor:
            await ingestor.run_once()


async def test_three_restarts_publish_every_event_exactly_once(settings: Settings) -> None:
    wall = Wall()
    with FakePolymarket() as fake:
        fake.state.max_offset = SMALL_PAGES.max_offset
        scenario.round_one(fake)
        await one_round(fake, settings, wall)
        first = wall.ms
        scenario.round_two(fake)  # two new rows for alice, both markets resolve
        wall.ms += 60_000
        await one_round(fake, settings, wall)
        second = wall.ms
        wall.ms += 60_000
        await one_round(fake, settings, wall)  # nothing new at all
        third = wall.ms

    async with IngestClient(settings, client_id="test-ingest-reader") as client:
        trades, snapshots = await topic(client, TRADES), await topic(client, SNAPSHOTS)
        resolutions, letters = await topic(client, MARKET_EVENTS), await topic(client, DEAD_LETTERS)
        checkpoints = await topic(client, INGEST_CHECKPOINTS)

    by_leader: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for key, value in trades:
        assert key == value["followedUserId"]
        by_leader[value["followedUserId"]].append(value)
    assert dict(by_leader) == scenario.expected_trades(first, second)

    assert sorted((k, v["followedUserId"], v["bucketTimeMs"], v["exposureMicros"]) for k, v in snapshots) == [
        ("alice", "alice", t, 12_570_000) for t in (first, second, third)
    ] + [("bob", "bob", t, 30_000_000) for t in (first, second, third)]

    assert [v for _, v in resolutions] == scenario.expected_resolutions()
    assert [k for k, _ in resolutions] == ["1001", "1002", "2001", "2002"]

    assert len(letters) == 1
    assert letters[0][0] == "bob"
    assert '"size": "lots"' in letters[0][1]["value"]

    newest = dict(checkpoints)  # what compaction keeps: the last record per wallet
    assert set(newest) == {scenario.ALICE, scenario.BOB}
    assert newest[scenario.ALICE]["timestampSec"] == scenario.T0 + 40
    assert newest[scenario.BOB]["timestampSec"] == scenario.T0 + 15


def test_the_worker_turns_ingested_trades_into_the_attempts_replay_decides(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """live = replay: the worker's attempts equal a replay of its own decision log (trades, the copied
    snapshots, the closing tick), and every ingested trade is in exactly one attempt."""
    system = LiveSystem(kafka_bootstrap, tmp_path)  # one partition, no wall-clock ticks
    try:
        system.worker().start()
        wall = Wall()
        with FakePolymarket() as fake:
            fake.state.max_offset = SMALL_PAGES.max_offset
            scenario.round_one(fake)
            asyncio.run(one_round(fake, system.settings, wall))
            scenario.round_two(fake)
            wall.ms += 60_000
            asyncio.run(one_round(fake, system.settings, wall))
        asyncio.run(close_every_window(system.settings, wall.ms + 3_600_000))
        ingested = {
            (leader, t["tradeId"]) for leader, ts in scenario.expected_trades(0, 0).items() for t in ts
        }
        live = [a for a in system.attempts_covering(ingested) if a["kind"] == "copyAttempt"]
        covered = Counter(
            (a["followedUserId"], t) for a in by_attempt_id(live).values() for t in a["tradeIds"]
        )
        assert covered == Counter(dict.fromkeys(ingested, 1))
        log = [r.value for r in read_to_end(kafka_bootstrap, system.settings.topic(TRADES))]
        expected = [a for a in replay_attempts(log) if a["kind"] == "copyAttempt"]
        assert by_attempt_id(live) == by_attempt_id(expected)
        assert {a["decision"] for a in live} == {
            "EXECUTE",
            "SKIP",
        }  # alice sells 1002 before we hold any: SKIP
    finally:
        system.close()


async def close_every_window(settings: Settings, now_ms: int) -> None:
    async with IngestClient(settings, client_id="test-ingest-tick") as client:
        await client.publish_tick(now_ms)
