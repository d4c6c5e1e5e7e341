"""Restart-to-first-decision of a worker whose partition holds a whale's 24 h of dedup memory.

    .venv/bin/python bench/restart_time.py [--trades 500000]

It starts its own broker (free ports, temp dir), writes the state a worker would have saved after
deciding `--trades` whale trades spread over 23 hours (with the worker's own record codec,
streams/worker/records.py — so every trade id is remembered), puts those trades in the decision log with
the worker group's offset committed at their end, then starts a worker and publishes one new trade.
It reports the time from starting the worker process to that trade's attempt on copy-attempts (and from
the worker's "Ready" line), the number of state records restored, and the worker's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams import native  # noqa: E402

if native.stale_message() is not None:  # measure the sources on disk, never an older build
    raise SystemExit(f"{Path(__file__).name}: {native.stale_message()}")

from models.state import PartitionState  # noqa: E402
from streams.devbroker import broker  # noqa: E402
from streams.devbroker.broker import free_ports  # noqa: E402
from streams.devbroker.harness import WorkerProcess, wait_until  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.topology import COPY_ATTEMPTS, TRADES, changelog_topic  # noqa: E402
from streams.worker.batch import Counters, OutputTopics, decide_batch  # noqa: E402
from streams.worker.records import SavedPartition, batch_records  # noqa: E402

START_MS = 1_793_600_000_000
SPAN_MS = 23 * 3_600_000
BATCH = 10_000


@dataclasses.dataclass(frozen=True)
class LogLine:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def whale_log(trades: int) -> list[bytes]:
    change = {
        "kind": "configChange",
        "changeId": "no-windows",
        "scope": "GLOBAL",
        "followedUserId": None,
        "changedAtMs": START_MS,
        "system": {"aggregationWindowMs": 0},
    }
    lines = [orjson.dumps(change)]
    for i in range(trades):
        trade = {
            "kind": "leaderTrade",
            "tradeId": f"w-{i:08d}",
            "followedUserId": "whale",
            "assetId": f"tok-{i % 40}",
            "marketId": None,
            "side": "BUY" if i % 3 else "SELL",
            "priceMicros": 400_000 + i % 1000,
            "shareMicros": 1_000_000,
            "notionalMicros": 400_000,
            "detectTimeMs": START_MS + i * SPAN_MS // trades,
        }
        lines.append(orjson.dumps(trade))
    return lines


def saved_table(lines: list[bytes]) -> tuple[dict[bytes, bytes], int]:
    """The changelog a worker would have written deciding `lines` in batches (latest value per key)."""
    saved = SavedPartition(PartitionState(journaling=True), -1)
    table: dict[bytes, bytes | None] = {}
    topics = OutputTopics("a", "d", "b", "r")
    for start in range(0, len(lines), BATCH):
        batch = [LogLine("log", 0, i, None, lines[i]) for i in range(start, min(len(lines), start + BATCH))]
        dirty = decide_batch(saved, batch, [], Counters(), topics)
        for key, value in batch_records(0, saved, dirty):
            table[key] = value
    remembered = sum(len(leader.seen_trade_ids) for leader in saved.state.leaders.values())
    return {k: v for k, v in table.items() if v is not None}, remembered


async def prepare(settings: Settings, lines: list[bytes], table: dict[bytes, bytes]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        changelog = changelog_topic(settings.app_id, "partition-state")
        await admin.create_topics(
            [
                NewTopic(settings.topic(TRADES), 1, 1),
                NewTopic(settings.topic(COPY_ATTEMPTS), 1, 1),
                NewTopic(changelog, 1, 1, topic_configs={"cleanup.policy": "compact"}),
            ]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=20, max_batch_size=512_000)
    await producer.start()
    try:
        for line in lines:
            await producer.send(settings.topic(TRADES), line, key=b"whale", partition=0)
        for key, value in table.items():
            await producer.send(changelog, value, key=key, partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=settings.app_id)
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic(TRADES), 0)
        consumer.assign([tp])
        await consumer.commit({tp: len(lines)})
    finally:
        await consumer.stop()


async def first_decision(settings: Settings, trade_id: str, deadline_s: float) -> float:
    consumer = AIOKafkaConsumer(
        settings.topic(COPY_ATTEMPTS), bootstrap_servers=settings.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    if trade_id in orjson.loads(record.value)["tradeIds"]:
                        return time.monotonic()
        raise TimeoutError(f"no attempt for {trade_id} within {deadline_s:.0f} s")
    finally:
        await consumer.stop()


async def publish_trade(settings: Settings, line: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        await (await producer.send(settings.topic(TRADES), line, key=b"whale", partition=0))
    finally:
        await producer.stop()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trades", type=int, default=500_000, help="remembered whale trades (default 500k)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="copybot-restart-"))
    port, controller = free_ports(2)
    bs = dataclasses.replace(
        broker.BrokerSettings.from_env(), port=port, controller_port=controller, data_dir=tmp / "kafka"
    )
    broker.start(bs)
    try:
        env = {
            **os.environ,
            "COPYBOT_BOOTSTRAP": broker.bootstrap(bs),
            "COPYBOT_TOPIC_PREFIX": "restart",
            "COPYBOT_APP_ID": "restart-bench",
            "COPYBOT_PARTITIONS": "1",
            "COPYBOT_TICKS": "0",
            "COPYBOT_WORKER_DIR": str(tmp / "worker"),
        }
        settings = Settings.from_env(env)
        t = time.monotonic()
        lines = whale_log(args.trades)
        table, remembered = saved_table(lines)
        print(
            f"decided {args.trades:,} whale trades offline in {time.monotonic() - t:.1f}s: "
            f"{remembered:,} remembered trade ids in {len(table):,} state records"
        )
        asyncio.run(prepare(settings, lines, table))
        worker = WorkerProcess("w", env, tmp / "worker.log")
        started = time.monotonic()
        worker.start(wait_ready=False)
        new_trade = orjson.loads(lines[-1])
        new_trade.update(tradeId="w-new", detectTimeMs=new_trade["detectTimeMs"] + 1_000)
        asyncio.run(publish_trade(settings, orjson.dumps(new_trade)))
        decided = asyncio.run(first_decision(settings, "w-new", 120))
        worker.wait_ready(5)
        assert worker.process is not None
        rss = rss_mib(worker.process.pid)
        wait_until(lambda: "restored" in worker.current_log(), 10, "the restore log line")
        restored = [ln for ln in worker.current_log().splitlines() if "restored" in ln]
        print(f"restart to first decision: {decided - started:.1f}s (worker RSS {rss:.0f} MiB)")
        print(restored[-1].strip()[-120:])
        worker.stop()
    finally:
        broker.stop(bs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
