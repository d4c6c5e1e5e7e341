"""A small Kafka client for integrators: publish input events to copybot, read the copy attempts back.

Every event is validated strictly (exactly as the worker decodes it) before anything is sent, and routed
by its ``kind`` to the topic, key and partition of the live topology::

    import asyncio
    from streams.kafka.client import CopybotClient

    async def main() -> None:
        async with CopybotClient() as client:          # settings from COPYBOT_* (see streams.settings)
            await client.publish({
                "kind": "leaderTrade", "tradeId": "t-1", "followedUserId": "alice", "assetId": "tok-1",
                "marketId": None, "side": "BUY", "priceMicros": 420_000, "shareMicros": 50_000_000,
                "notionalMicros": 21_000_000, "detectTimeMs": 1_793_628_000_000,
            })
            await client.flush()                       # wait until Kafka has acknowledged everything
            async for attempt in client.attempts(from_beginning=True, leader="alice"):
                print(attempt["decision"], attempt["targetNotionalMicros"])
                break

    asyncio.run(main())

Routing (topic, key and partition of each kind) is :mod:`streams.topology`'s: :func:`streams.topology.route`.

``publish`` does not wait for Kafka: it queues the message and returns the delivery futures, so a loop
of publishes is batched by the producer (``linger_ms``). Call :meth:`CopybotClient.flush` to wait for
(and surface errors of) everything queued. Messages to one partition keep their publish order; there is
**no** order between topics (the worker copies snapshots and config changes into leader-trades when it
reads them; ``copybot publish --ordered`` shows how to wait for that).

On start the client creates any missing topic (:func:`streams.kafka.admin.ensure_topics`) and checks partition
counts: the broker auto-creates unknown topics with one partition, which would break the topology.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import orjson
from pydantic import BaseModel

from models.events import BOOK_EVENT_KINDS
from streams.errors import InvalidEvent, KafkaUnavailable
from streams.kafka.admin import ensure_topics
from streams.kafka.connect import TopicPartition, at_end, make_consumer, make_producer
from streams.kafka.errors import kafka_errors, quiet_kafka_logs
from streams.serde import DecodeError, InputEvent, decode_event, encode
from streams.settings import Settings
from streams.topology import ALL_TOPICS, BOOK_EVENTS, COPY_ATTEMPTS, fixed_partition, route

__all__ = ["CopybotClient", "InvalidEvent", "KafkaUnavailable", "Publishable", "quiet_kafka_logs", "validate"]

Publishable = InputEvent | BaseModel | Mapping[str, Any] | str | bytes
"""What :meth:`CopybotClient.publish` accepts: a wire model, a JSON object, or JSON text/bytes."""

UNREACHABLE_HINT = " (is the broker running? `copybot kafka start`; set COPYBOT_BOOTSTRAP to use another)"


def to_raw(event: Publishable) -> bytes:
    """The JSON bytes of `event` (text and bytes are taken as they are)."""
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode()
    if isinstance(event, BaseModel | Mapping):
        return encode(event)
    raise TypeError(f"cannot publish a {type(event).__name__}: give a wire model, a dict, or JSON text")


def validate(event: Publishable) -> tuple[InputEvent, bytes]:
    """Strictly decode `event` (as the worker will); returns the model and the raw bytes to send."""
    raw = to_raw(event)
    try:
        return decode_event(raw), raw
    except DecodeError as exc:
        text = raw[:200].decode("utf-8", errors="replace")
        raise InvalidEvent(f"not a valid copybot event ({exc}): {text}") from None


class CopybotClient:
    """Producer and reader for copybot's topics; use as ``async with CopybotClient(settings) as client``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        create_topics: bool = True,
        linger_ms: int = 10,
        max_pending: int = 50_000,
        client_id: str = "copybot-client",
    ) -> None:
        self.settings = settings or Settings.from_env()
        self._create_topics = create_topics
        self._max_pending = max_pending
        self._client_id = client_id
        self._producer: Any = make_producer(self.settings, client_id, linger_ms=linger_ms)
        self._pending: list[asyncio.Future[Any]] = []
        self._partitions: dict[str, list[int]] = {}
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (and create missing topics); raises :class:`KafkaUnavailable` when Kafka is unreachable."""
        try:
            if self._create_topics:
                await ensure_topics(self.settings, hint=UNREACHABLE_HINT)
            with kafka_errors(f"cannot reach Kafka at {self.settings.bootstrap}", UNREACHABLE_HINT):
                await self._producer.start()
        except KafkaUnavailable:
            await self._producer.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        """Flush what is queued and disconnect."""
        try:
            if self._started:
                await self.flush()
        finally:
            self._started = False
            await self._producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.stop()
        else:  # don't mask the error with a flush error
            self._started = False
            await self._producer.stop()

    # --- producing --------------------------------------------------------------------------------

    def topic(self, name: str) -> str:
        """The full topic name for a copybot base name (``leader-trades``); full names pass through."""
        if name in ALL_TOPICS:
            return self.settings.topic(name)
        return name

    async def partitions(self, name: str) -> list[int]:
        """The partitions of a copybot topic, from the cluster metadata (cached)."""
        full = self.topic(name)
        found = self._partitions.get(full)
        if found is None:
            found = self._partitions[full] = sorted(await self._producer.partitions_for(full))
        return found

    async def publish(self, event: Publishable) -> list[asyncio.Future[Any]]:
        """Validate `event` strictly, then queue it on its topic (see the module docstring for routing).

        Raises :class:`InvalidEvent` (a ``ValueError``) and sends nothing when the event is not valid.
        Returns the delivery futures (one, or one per partition for a tick) without waiting for them.
        """
        decoded, raw = validate(event)
        return await self.publish_decoded(decoded, raw)

    async def publish_decoded(self, event: InputEvent, raw: bytes) -> list[asyncio.Future[Any]]:
        """Queue an event already decoded with :func:`streams.serde.decode_event` (`raw`: its bytes)."""
        topic, key = route(event)
        if key is None:  # a tick: into every partition of the decision log
            return [await self._send(topic, raw, partition=p) for p in await self.partitions(topic)]
        return [await self._send(topic, raw, key=key, partition=fixed_partition(topic))]

    async def publish_tick(self, now_ms: int) -> list[asyncio.Future[Any]]:
        """Queue a tick at `now_ms` into every partition of leader-trades."""
        return await self.publish({"kind": "tick", "nowMs": now_ms})

    async def _send(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        """Queue `value` as is, without validation (callers validated it; tests inject bad input).

        `topic` is a copybot base name (``leader-trades``) or a full topic name. Without `partition`, a
        keyed message goes where the default partitioner (murmur2, Java-compatible) puts its key.
        """
        if not self._started:
            raise RuntimeError("CopybotClient is not started: use `async with CopybotClient() as client`")
        if len(self._pending) >= self._max_pending:
            await self.flush()
        future: asyncio.Future[Any] = await self._producer.send(
            self.topic(topic),
            value,
            key=key.encode() if isinstance(key, str) else key,
            partition=partition,
            headers=list(headers) if headers else None,
        )
        self._pending.append(future)
        return future

    async def flush(self) -> None:
        """Wait until Kafka acknowledged everything queued; raises the first delivery error."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        await self._producer.flush()
        with kafka_errors(f"Kafka at {self.settings.bootstrap} did not accept a message", network=False):
            await asyncio.gather(*pending)

    # --- reading ----------------------------------------------------------------------------------

    async def read(
        self, topic: str, *, from_beginning: bool = True, follow: bool = False, partitions: Sequence[int] = ()
    ) -> AsyncGenerator[Any, None]:
        """Yield the records (aiokafka ``ConsumerRecord``) of a topic, without a consumer group.

        Starts at the beginning (or the end) of every partition (or of `partitions`); with `follow` it waits
        for new records forever, else it stops at the end offsets taken when it started. Records of one
        partition come in order; partitions are interleaved. Use ``contextlib.aclosing`` when breaking early.
        """
        full = self.topic(topic)
        tps = [TopicPartition(full, p) for p in (partitions or await self.partitions(topic))]
        consumer = make_consumer(self.settings, f"{self._client_id}-reader")
        try:
            with kafka_errors(f"cannot read {full} from Kafka at {self.settings.bootstrap}"):
                await consumer.start()
                consumer.assign(tps)
                if from_beginning:
                    await consumer.seek_to_beginning(*tps)
                else:
                    await consumer.seek_to_end(*tps)
                ends = {} if follow else await consumer.end_offsets(tps)
        except KafkaUnavailable:
            await consumer.stop()
            raise
        try:
            while True:
                if not follow and await at_end(consumer, ends):
                    return
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        yield record
        finally:
            await consumer.stop()

    async def book_events(
        self, from_beginning: bool = True, leader: str | None = None, follow: bool = True
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Yield book events (positionSettled, orderExpired, leaderBook; SPEC 13.5) from book-events,
        optionally of one leader. Follows the topic forever unless `follow` is false."""
        async for record in self.read(BOOK_EVENTS, from_beginning=from_beginning, follow=follow):
            try:
                event = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(event, dict) or event.get("kind") not in BOOK_EVENT_KINDS:
                continue
            if leader is not None and event.get("followedUserId") != leader:
                continue
            yield event

    async def attempts(
        self,
        from_beginning: bool = True,
        leader: str | None = None,
        decision: str | None = None,
        follow: bool = True,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Yield copy attempts (wire dicts) from copy-attempts, optionally of one leader / one decision.

        Follows the topic forever unless `follow` is false (then it stops at the current end).
        """
        async for record in self.read(COPY_ATTEMPTS, from_beginning=from_beginning, follow=follow):
            try:
                attempt = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(attempt, dict) or attempt.get("kind") != "copyAttempt":
                continue
            if leader is not None and attempt.get("followedUserId") != leader:
                continue
            if decision is not None and attempt.get("decision") != decision:
                continue
            yield attempt
