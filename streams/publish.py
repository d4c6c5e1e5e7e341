"""``copybot publish FILE.jsonl``: send a tape of input events to the live system.

Each line is decoded strictly (as the worker will) and routed by its kind (see :mod:`streams.kafka.client`):
trades and ticks to leader-trades, snapshots to portfolio-snapshots, config changes to config-changes,
resolutions to market-events, execution reports to executions.
Invalid lines are skipped and reported on stderr with their line number and reason.

Ordering. Within one topic partition Kafka keeps the publish order, but the worker copies snapshots,
config changes, market resolutions and execution reports into leader-trades (its decision log) only when it
reads them, so without help a snapshot can land after trades that followed it in the file. ``--ordered``
makes the worker see the file's order: before each of those it waits until everything before it is
acknowledged, publishes it, then waits until the worker's copy (header ``copybot-source`` =
topic:partition:offset of the published message) is in every leader-trades partition it must reach, before
publishing anything else. Trades and ticks in between are batched.

``--finish`` then ends the input the way ``copybot replay`` does: it runs each partition's share of the
file through the decision core (``models.engine.process``, routed as the worker will see it) and
publishes one tick at the latest ``models.engine.finish_time`` into every leader-trades partition, so the
live run decides every window and buffer still open (with one partition: exactly what replay decides).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from models.engine import finish_time, process
from models.state import PartitionState
from streams.errors import NoWorker
from streams.kafka import CopybotClient, TopicPartition, kafka_errors, make_consumer
from streams.serde import DecodeError, InputEvent, decode_event
from streams.settings import Settings
from streams.topology import SOURCE_HEADER, TRADES, copy_targets, log_partitions, route

__all__ = ["DEFAULT_WAIT_TIMEOUT_S", "CopyWatcher", "NoWorker", "PublishSummary", "publish_lines"]

DEFAULT_WAIT_TIMEOUT_S = 30.0
COPIED_KINDS = frozenset({"portfolioSnapshot", "configChange", "marketResolved", "executionReport"})
"""Kinds the worker copies into leader-trades (from their own topics): ``--ordered`` waits for each copy."""


@dataclass
class PublishSummary:
    """What a publish did."""

    kinds: Counter[str] = field(default_factory=Counter)
    """Valid events published, per kind."""
    messages: Counter[str] = field(default_factory=Counter)
    """Kafka messages sent, per full topic name (a tick is one message per partition)."""
    invalid: int = 0
    finish_tick_ms: int | None = None
    finished: bool = False
    """``--finish`` was asked for (the tick is only sent when something is open)."""
    waited_s: float = 0.0
    """``--ordered``: time spent waiting for the worker's copies."""


class CopyWatcher:
    """Reads leader-trades from the end offsets at :meth:`start` and notes the worker's copies by source."""

    def __init__(self, settings: Settings, partitions: list[int]) -> None:
        self.topic = settings.topic(TRADES)
        self.partitions = partitions
        self._tps = [TopicPartition(self.topic, p) for p in partitions]
        self._bootstrap = settings.bootstrap
        self._consumer: Any = make_consumer(settings, "copybot-publish-watcher")
        self._seen: dict[str, set[int]] = {}

    async def start(self) -> None:
        """Start reading at the current end; raises :class:`~streams.errors.KafkaUnavailable`."""
        try:
            with kafka_errors(f"cannot read {self.topic} at {self._bootstrap}"):
                await self._consumer.start()
                self._consumer.assign(self._tps)
                # the ends now, not at the first fetch: a copy made before that must not be missed
                for tp, offset in (await self._consumer.end_offsets(self._tps)).items():
                    self._consumer.seek(tp, offset)
        except BaseException:
            await self._consumer.stop()
            raise

    async def stop(self) -> None:
        await self._consumer.stop()

    async def wait_for(self, source: str, partitions: set[int], timeout_s: float, what: str) -> None:
        """Return once a copy of `source` was seen in every one of `partitions`; raise :class:`NoWorker`."""
        deadline = time.monotonic() + timeout_s
        while not partitions <= self._seen.get(source, set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = sorted(partitions - self._seen.get(source, set()))
                raise NoWorker(
                    f"no worker copied {what} ({source}) into {self.topic} partition"
                    f"{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} within "
                    f"{timeout_s:g}s: is `copybot worker` running (with the same COPYBOT_TOPIC_PREFIX)?"
                )
            batches = await self._consumer.getmany(timeout_ms=max(1, int(min(remaining, 0.2) * 1000)))
            for records in batches.values():
                for record in records:
                    for name, value in record.headers or ():
                        if name == SOURCE_HEADER:
                            self._seen.setdefault(value.decode(), set()).add(record.partition)
        self._seen.pop(source, None)


async def publish_lines(
    client: CopybotClient,
    lines: Iterable[bytes],
    *,
    rate: float | None = None,
    ordered: bool = False,
    wait_timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
    finish: bool = False,
    on_invalid: Callable[[int, str], None] = lambda line_no, reason: None,
    on_progress: Callable[[int], None] = lambda done_bytes: None,
) -> PublishSummary:
    """Publish every valid line of a tape (see the module docstring); returns the counts.

    `on_invalid(line number, reason)` is called for each skipped line (1-based line numbers);
    `on_progress(bytes read)` after each line. Raises :class:`NoWorker` (``--ordered``) and
    :class:`streams.kafka.client.KafkaUnavailable`.
    """
    summary = PublishSummary()
    trades_partitions = await client.partitions(TRADES)
    # --finish: the core runs each partition's share of the tape, as the worker will see it
    states = [PartitionState() for _ in trades_partitions] if finish else None
    trades_topic = client.topic(TRADES)
    watcher = CopyWatcher(client.settings, trades_partitions) if ordered else None
    if watcher is not None:
        await watcher.start()
    started = time.monotonic()
    sent = 0
    done_bytes = 0
    try:
        for line_no, line in enumerate(lines, start=1):
            done_bytes += len(line)
            raw = line.strip()
            if not raw:
                continue
            try:
                event = decode_event(raw)
            except DecodeError as exc:
                summary.invalid += 1
                on_invalid(line_no, str(exc))
                continue
            if states is not None:
                for p in log_partitions(event, len(states)):
                    process(states[p], event)
            if rate:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing (--rate), not synchronisation
            sent += 1
            if watcher is not None and event.kind in COPIED_KINDS:
                summary.waited_s += await _publish_and_wait(
                    client, watcher, event, raw, line_no, wait_timeout_s
                )
            else:
                await client.publish_decoded(event, raw)
            summary.kinds[event.kind] += 1
            _count_messages(summary, client, event, len(trades_partitions))
            on_progress(done_bytes)
        if states is not None:
            summary.finished = True
            summary.finish_tick_ms = max((t for t in map(finish_time, states) if t is not None), default=None)
            if summary.finish_tick_ms is not None:
                await client.publish_tick(summary.finish_tick_ms)
                summary.messages[trades_topic] += len(trades_partitions)
        await client.flush()
    finally:
        if watcher is not None:
            await watcher.stop()
    return summary


def _count_messages(
    summary: PublishSummary, client: CopybotClient, event: InputEvent, partitions: int
) -> None:
    topic, key = route(event)
    summary.messages[client.topic(topic)] += partitions if key is None else 1


async def _publish_and_wait(
    client: CopybotClient, watcher: CopyWatcher, event: InputEvent, raw: bytes, line_no: int, timeout_s: float
) -> float:
    """Publish a snapshot or config change after everything before it, and wait for the worker's copies."""
    await client.flush()  # everything earlier is in Kafka before the worker can copy this one
    (future,) = await client.publish_decoded(event, raw)
    await client.flush()
    meta = future.result()
    source = f"{meta.topic}:{meta.partition}:{meta.offset}"
    need = set(copy_targets(event, meta.partition, len(watcher.partitions)))
    began = time.monotonic()
    await watcher.wait_for(source, need, timeout_s, f"the {event.kind} of line {line_no}")
    return time.monotonic() - began
