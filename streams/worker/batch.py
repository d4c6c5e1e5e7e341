"""One batch of a decision partition's log through the decision core (no Faust here).

The worker hands in the Kafka messages of one partition in offset order; out come the messages to send
(attempts, dead letters) and the leaders whose state changed. Redelivered messages — at or below the
partition's last applied offset, i.e. already in the saved state — are skipped. A message past the next
offset raises :class:`LogGap`: the log has no holes (nothing writes it transactionally, and it is not
compacted), so the messages in between would be skipped — a state behind what the consumer was given.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from models.engine import process
from models.events import (
    BOOK_EVENT_KINDS,
    ExecutionReportIgnored,
    LeaderTrade,
    Output,
    PortfolioSnapshot,
    Tick,
)
from streams.serde import DecodeError, dead_letter, decode_event, encode
from streams.worker.records import SavedPartition

Outgoing = tuple[str, bytes | None, bytes, int | None, Any]
"""(topic, key, value, partition or None, headers)."""


class LogMessage(Protocol):
    """The fields of a consumed Kafka message the worker uses."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class LogGap(Exception):
    """A partition's next message is past the offset after its saved state's (deciding it would skip
    the messages in between)."""

    def __init__(self, partition: int, applied: int, offset: int) -> None:
        super().__init__(
            f"partition {partition}: the saved state has applied offset {applied}, "
            f"the next message given is at {offset}"
        )


@dataclass
class Counters:
    """What the worker did since it started (logged periodically)."""

    events: int = 0
    attempts: int = 0
    dead_letters: int = 0
    skipped_redeliveries: int = 0
    batches: int = 0


@dataclass(frozen=True)
class OutputTopics:
    """Full names of the topics a decision partition's outputs go to."""

    attempts: str
    dead_letters: str
    book_events: str
    reports: str


def dead_letter_message(
    message: LogMessage, error: str, topic: str, counters: Counters, at_ms: int | None = None
) -> Outgoing:
    """A dead letter for `message`, at the partition clock (the decision log) or the wall clock."""
    counters.dead_letters += 1
    at = int(time.time() * 1000) if at_ms is None else at_ms
    raw = message.value if message.value is not None else b""
    letter = dead_letter(message.topic, message.partition, message.offset, message.key, raw, error, at)
    return (topic, None, encode(letter), None, None)


_OF_ONE_LEADER = (LeaderTrade, PortfolioSnapshot)


def decide_batch(
    saved: SavedPartition,
    batch: Sequence[LogMessage],
    outgoing: list[Outgoing],
    counters: Counters,
    topics: OutputTopics,
) -> set[str]:
    """Run one partition's messages through the core; returns the leaders whose state changed."""
    state = saved.state
    dirty: set[str] = set()
    for message in batch:
        if message.offset <= saved.offset:  # applied before a crash: its state change is saved
            counters.skipped_redeliveries += 1
            continue
        if message.offset != saved.offset + 1 and saved.offset >= 0:
            raise LogGap(message.partition, saved.offset, message.offset)
        saved.offset = message.offset
        counters.events += 1
        try:
            decoded = decode_event(message.value if message.value is not None else b"")
        except DecodeError as exc:
            letter = dead_letter_message(message, str(exc), topics.dead_letters, counters, state.clock_ms)
            outgoing.append(letter)
            continue
        if isinstance(decoded, _OF_ONE_LEADER):
            if decoded.followed_user_id is not None:
                dirty.add(decoded.followed_user_id)
        elif not isinstance(decoded, Tick):  # config changes (and any other kind) may touch every leader
            dirty.update(state.leaders)
        for output in process(state, decoded):
            _route(output, outgoing, counters, topics, dirty)
    return dirty


def _route(
    output: Output, outgoing: list[Outgoing], counters: Counters, topics: OutputTopics, dirty: set[str]
) -> None:
    """Send an output where it belongs: attempts and book events keyed by leader, diagnostics to the
    reports topic. Config reports are skipped: forward_config reported each change once already."""
    if isinstance(output, dict):
        leader_id = output["followedUserId"]
        dirty.add(leader_id)
        outgoing.append((topics.attempts, leader_id.encode(), orjson.dumps(output), None, None))
        counters.attempts += 1
    elif isinstance(output, ExecutionReportIgnored):
        outgoing.append((topics.reports, output.attempt_id.encode(), encode(output), None, None))
    elif output.kind in BOOK_EVENT_KINDS:
        leader_id = output.followed_user_id  # type: ignore[union-attr]
        dirty.add(leader_id)
        outgoing.append((topics.book_events, leader_id.encode(), encode(output), None, None))
