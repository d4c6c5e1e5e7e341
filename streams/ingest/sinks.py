"""Where the adapter's output goes: Kafka (the live system), stdout (``--dry-run``), a tape (``--record``).

Events reach a sink as :class:`Event` (kind, key, JSON bytes). The poller calls :meth:`Sink.flush` after
each page's events and before writing the checkpoint that covers them, so a checkpoint never runs ahead
of what Kafka has acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import IO, Any, Protocol

from models.events import DeadLetter
from streams.ingest.checkpoint import BadCheckpoint, Checkpoint
from streams.kafka.client import CopybotClient
from streams.serde import dumps, encode, peek
from streams.topology import DEAD_LETTERS, INGEST_CHECKPOINTS, MARKET_EVENTS

log = logging.getLogger("copybot.ingest")


@dataclass(frozen=True, slots=True)
class Event:
    """One output event: ``leaderTrade`` / ``portfolioSnapshot`` (key = leader) or ``marketResolved``
    (key = assetId), as its wire JSON."""

    kind: str
    key: str
    raw: bytes


class Sink(Protocol):
    async def publish(self, event: Event) -> None: ...
    async def dead_letter(self, letter: DeadLetter) -> None: ...
    async def checkpoint(self, checkpoint: Checkpoint) -> None: ...
    async def flush(self) -> None: ...
    async def tick(self, now_ms: int) -> None: ...


class IngestClient(CopybotClient):
    """The client, plus the two records of the adapter that are not input events."""

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        """A row that could not be mapped, with the raw row and the reason (key: the leader)."""
        await self._send(DEAD_LETTERS, encode(letter), key=letter.key)

    async def publish_checkpoint(self, checkpoint: Checkpoint) -> None:
        """A wallet's scan position on the compacted checkpoint topic (key: the wallet)."""
        await self._send(INGEST_CHECKPOINTS, checkpoint.encode(), key=checkpoint.wallet)


class KafkaSink:
    """Publishes to copybot's topics through :class:`IngestClient` (started by the caller); events are
    validated and routed as every publisher's are (:func:`streams.topology.route`)."""

    def __init__(self, client: IngestClient) -> None:
        self.client = client

    async def publish(self, event: Event) -> None:
        await self.client.publish(event.raw)

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self.client.publish_dead_letter(letter)

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        await self.client.publish_checkpoint(checkpoint)

    async def flush(self) -> None:
        await self.client.flush()

    async def tick(self, now_ms: int) -> None:
        """The live worker makes its own ticks; nothing to publish."""

    async def checkpoints(self) -> dict[str, Checkpoint]:
        """The newest checkpoint per wallet (the compacted topic read to its end)."""
        found: dict[str, Checkpoint] = {}
        async for record in _records(self.client, INGEST_CHECKPOINTS):
            try:
                checkpoint = Checkpoint.decode(record.value)
            except BadCheckpoint as exc:
                log.warning("ignored a record at offset %d of the checkpoint topic: %s", record.offset, exc)
                continue
            found[checkpoint.wallet] = checkpoint
        return found

    async def resolved_markets(self) -> set[str]:
        """Condition ids (marketId) already resolved on market-events: they are not published again."""
        resolved: set[str] = set()
        async for record in _records(self.client, MARKET_EVENTS):
            doc = peek(record.value)
            if doc and doc.get("kind") == "marketResolved" and isinstance(doc.get("marketId"), str):
                resolved.add(doc["marketId"])
        return resolved


async def _records(client: CopybotClient, topic: str) -> AsyncGenerator[Any, None]:
    async for record in client.read(topic, from_beginning=True, follow=False):
        yield record


class StreamSink:
    """``--dry-run``: events as JSON lines on `out`, dead letters as JSON lines on `diagnostics`."""

    def __init__(self, out: IO[bytes], diagnostics: IO[bytes]) -> None:
        self.out = out
        self.diagnostics = diagnostics

    async def publish(self, event: Event) -> None:
        self.out.write(event.raw + b"\n")

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.diagnostics.write(encode(letter) + b"\n")

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        """Dry runs keep their position in memory only."""

    async def flush(self) -> None:
        self.out.flush()
        self.diagnostics.flush()

    async def tick(self, now_ms: int) -> None:
        """Ticks belong to tapes, not to a dry run's event stream."""


class TapeRecorder:
    """``--record FILE``: everything `inner` publishes, plus a tick per poll, as a tape for
    ``copybot replay`` (the ticks close aggregation windows the way the live worker's clock does)."""

    def __init__(self, inner: Sink, tape: IO[bytes]) -> None:
        self.inner = inner
        self.tape = tape

    async def publish(self, event: Event) -> None:
        self.tape.write(event.raw + b"\n")
        await self.inner.publish(event)

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self.inner.dead_letter(letter)

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        await self.inner.checkpoint(checkpoint)

    async def flush(self) -> None:
        self.tape.flush()
        await self.inner.flush()

    async def tick(self, now_ms: int) -> None:
        self.tape.write(dumps({"kind": "tick", "nowMs": now_ms}) + b"\n")
        await self.inner.tick(now_ms)
