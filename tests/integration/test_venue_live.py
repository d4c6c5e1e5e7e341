"""The venue loop live (SPEC 13): execution reports and market resolutions reach each partition's log,
and the worker's attempts and book events are exactly the replay of that log as stored in Kafka."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.engine import process
from models.events import BOOK_EVENT_KINDS
from models.state import PartitionState
from streams.serde import decode_event, encode
from streams.topology import BOOK_EVENTS, COPY_ATTEMPTS, TRADES, leader_partition
from tests.integration.live import CopybotClient, LiveSystem, read_to_end, wait_until

pytestmark = pytest.mark.integration

START_MS = 1_793_628_000_000
LEADERS = ("alice", "bob", "carol")
ASSETS = ("tok-yes", "tok-no", "tok-x")


def _config() -> dict[str, Any]:
    return {
        "kind": "configChange",
        "changeId": "venue-1",
        "scope": "GLOBAL",
        "followedUserId": None,
        "changedAtMs": START_MS,
        "sizing": {"copyPctNotionalBps": 1_000, "minTradeNotionalMicros": 1_000_000},
        "system": {
            "aggregationWindowMs": 0,
            "fillModel": "reports",
            "orderTimeoutMs": 5_000,
            "bookIntervalMs": 1_000,
        },
    }


def _trades(rng: random.Random, count: int) -> list[dict[str, Any]]:
    trades = []
    for i in range(count):
        price = rng.randrange(200_000, 800_000)
        shares = rng.randrange(20, 200) * 1_000_000
        trades.append(
            {
                "kind": "leaderTrade",
                "tradeId": f"t-{i}",
                "followedUserId": LEADERS[i % 3],
                "assetId": ASSETS[rng.randrange(3)],
                "marketId": "m-1",
                "side": "BUY" if rng.random() < 0.8 else "SELL",
                "priceMicros": price,
                "shareMicros": shares,
                "notionalMicros": shares * price // 1_000_000,
                "detectTimeMs": START_MS + 200 * i,
            }
        )
    return trades


def _reports(attempts: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Reports for most EXECUTEs: partial, filled, rejected, cancelled, late duplicates; some never."""
    reports = []
    for a in attempts:
        if a["decision"] != "EXECUTE" or rng.random() < 0.2:
            continue  # no report: the order expires
        status = rng.choice(("PARTIAL", "FILLED", "FILLED", "REJECTED", "CANCELLED"))
        fraction = {"PARTIAL": 0.5, "FILLED": 1.0, "REJECTED": 0.0, "CANCELLED": 0.3}[status]
        report = {
            "kind": "executionReport",
            "reportId": f"r-{a['attemptId']}",
            "attemptId": a["attemptId"],
            "followedUserId": a["followedUserId"],
            "status": status,
            "filledShareMicros": int(a["targetShareMicros"] * fraction),
            "filledNotionalMicros": int(a["targetNotionalMicros"] * fraction * 1.01),
            "reportedAtMs": START_MS,
        }
        reports.append(report)
        if rng.random() < 0.1:
            reports.append(report)  # redelivered: silent
    reports.append({**reports[0], "attemptId": "not-an-attempt", "reportId": "r-unknown"})
    return reports


async def _publish(system: LiveSystem, events: list[dict[str, Any]]) -> None:
    async with CopybotClient(system.settings, client_id="venue-test") as client:
        for event in events:
            await client.publish(event)
        await client.flush()


def _replay_by_partition(system: LiveSystem) -> dict[int, list[dict[str, Any]]]:
    """Each partition's log read back from Kafka and run through the decision core: attempts and book
    events, in the order the core produced them."""
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for record in read_to_end(system.bootstrap, system.settings.topic(TRADES)):
        by_partition[record.partition].append(record.value)
    replayed: dict[int, list[dict[str, Any]]] = {}
    for partition, values in by_partition.items():
        state = PartitionState()
        outputs: list[dict[str, Any]] = []
        for value in values:
            for out in process(state, decode_event(value)):
                wire: dict[str, Any] = orjson.loads(encode(out))
                if wire["kind"] in _LIVE_KINDS:
                    outputs.append(wire)
        replayed[partition] = outputs
    return replayed


_LIVE_KINDS = {"copyAttempt", *BOOK_EVENT_KINDS}


def _resolution_in_every_log(system: LiveSystem) -> bool:
    partitions = {
        r.partition
        for r in read_to_end(system.bootstrap, system.settings.topic(TRADES))
        if b'"marketResolved"' in r.value
    }
    return len(partitions) == system.partitions


def _live_by_partition(system: LiveSystem) -> dict[int, list[dict[str, Any]]]:
    live: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for name in (COPY_ATTEMPTS, BOOK_EVENTS):
        for record in read_to_end(system.bootstrap, system.settings.topic(name)):
            value = orjson.loads(record.value)
            live[leader_partition(value["followedUserId"], system.partitions)].append(value)
    return live


def _same(live: dict[int, list[dict[str, Any]]], replay: dict[int, list[dict[str, Any]]]) -> bool:
    def canon(outputs: list[dict[str, Any]]) -> list[bytes]:
        return sorted(orjson.dumps(o, option=orjson.OPT_SORT_KEYS) for o in outputs)

    parts = set(live) | set(replay)
    return all(canon(live.get(p, [])) == canon(replay.get(p, [])) for p in parts)


def test_reports_and_a_resolution_live_equal_the_replay_of_each_partition_log(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(13)
    system = LiveSystem(kafka_bootstrap, tmp_path, partitions=2)
    try:
        # Given a worker in the reports fill model and 300 trades of three leaders
        system.worker().start()
        asyncio.run(_publish(system, [_config()]))
        trades = _trades(rng, 300)
        asyncio.run(_publish(system, trades))
        first = system.attempts_covering({(t["followedUserId"], t["tradeId"]) for t in trades})
        # When an executor reports on most orders, one market resolves, and time moves past the timeouts
        events = [*_reports(first, rng)]
        events.append(
            {
                "kind": "marketResolved",
                "assetId": "tok-yes",
                "marketId": "m-1",
                "payoutMicros": 1_000_000,
                "resolvedAtMs": START_MS,
            }
        )
        asyncio.run(_publish(system, events))
        wait_until(lambda: _resolution_in_every_log(system), 60, "the resolution's copy in every partition")
        later = _trades(rng, 360)[300:]  # trades after the resolution (some of tok-yes)
        asyncio.run(_publish(system, [*later, {"kind": "tick", "nowMs": START_MS + 200 * 360 + 60_000}]))
        # Then each partition's attempts and book events are exactly the replay of its log in Kafka
        state: dict[str, Any] = {}

        def settled() -> bool:
            state["live"], state["replay"] = _live_by_partition(system), _replay_by_partition(system)
            kinds = {o["kind"] for outs in state["live"].values() for o in outs}
            return {"positionSettled", "orderExpired", "orderUpdated", "leaderBook"} <= kinds and _same(
                state["live"], state["replay"]
            )

        wait_until(settled, 120, "live attempts and book events to equal the replay of each log", poll_s=1.0)
        replayed = [o for outs in state["replay"].values() for o in outs]
        assert any(o["kind"] == "copyAttempt" and o["reasonCodes"] == ["MARKET_RESOLVED"] for o in replayed)
        assert any(o["kind"] == "copyAttempt" and o["budget"]["reservedMicros"] > 0 for o in replayed)
        log = read_to_end(system.bootstrap, system.settings.topic(TRADES))
        copied = sum(b'"executionReport"' in r.value for r in log)
        assert copied == len(events) - 1, "every report copied once into its leader's partition"
        # And `copybot tail --books` shows those book events, as JSON and as a table
        shown = system.copybot("tail", "--books", "--from-beginning", "--no-follow", "--json")
        assert shown.returncode == 0, shown.stderr
        live_books = [o for outs in state["live"].values() for o in outs if o["kind"] != "copyAttempt"]
        assert sorted(shown.stdout.splitlines()) == sorted(orjson.dumps(b).decode() for b in live_books)
        table = system.copybot("tail", "--books", "--from-beginning", "--no-follow", "--leader", "alice")
        assert "positionSettled" in table.stdout or "orderExpired" in table.stdout
        assert "orderUpdated" in system.copybot("tail", "--books", "--from-beginning", "--no-follow").stdout
        assert "realized PnL" in table.stdout.splitlines()[0]
    finally:
        system.close()
