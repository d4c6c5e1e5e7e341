"""The sample tape replayed by the decision core and projected into a database without Kafka, and an
in-memory config gateway: the seeded API of the API tests and the contract (schemathesis) test."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from models.config import ConfigStore, Scope, apply_change
from models.events import BOOK_EVENT_KINDS
from models.state import PartitionState
from models.summary import LeaderSummary, summarize
from projections.consumer import Decoded, decode_attempt, decode_book_event, project_batch
from projections.store import ProjectionStore
from streams.configedit import Assignment, SetResult, build_change
from streams.replay import ReplayResult, replay
from streams.serde import decode_event, peek
from streams.settings import CONFIG_CHANGES, COPY_ATTEMPTS, SNAPSHOTS
from streams.topology import BOOK_EVENTS

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_TAPE = ROOT / "examples" / "sample-tape.jsonl"


class MemoryGateway:
    """Config in memory: builds, validates and 'publishes' changes like ``copybot config set-*``."""

    def __init__(self, store: ConfigStore) -> None:
        self.store = store
        self.published: list[dict[str, Any]] = []

    async def load(self) -> ConfigStore:
        return self.store

    async def submit(self, scope: Scope, leader: str | None, assignments: Sequence[Assignment]) -> SetResult:
        change_id = f"api-change-{len(self.published) + 1}"
        raw, change = build_change(self.store, scope, leader, assignments, change_id, 1_800_000_000_000)
        outcome = apply_change(self.store, change)
        if outcome.store is None:
            return SetResult(change_id, outcome, None, ())
        self.store = outcome.store
        self.published.append(orjson.loads(raw))
        return SetResult(change_id, outcome, "memory:0:0", ())


class Sample:
    """The sample tape replayed, and its attempts, snapshots and config changes."""

    def __init__(self) -> None:
        lines = SAMPLE_TAPE.read_bytes().splitlines()
        out = io.BytesIO()
        self.result: ReplayResult = replay(lines, out, io.BytesIO(), PartitionState(), tally=True)
        self.attempt_lines = [
            x for x in out.getvalue().splitlines() if x.startswith(b'{"kind":"copyAttempt"')
        ]
        self.attempts = [orjson.loads(line) for line in self.attempt_lines]
        self.book_lines = [
            x for x in out.getvalue().splitlines() if (peek(x) or {}).get("kind") in BOOK_EVENT_KINDS
        ]
        kinds = [(peek(line) or {}).get("kind") for line in lines]
        self.snapshots = [line for line, k in zip(lines, kinds, strict=True) if k == "portfolioSnapshot"]
        self.changes = [line for line, k in zip(lines, kinds, strict=True) if k == "configChange"]
        self.summary: dict[str, LeaderSummary] = {
            r.leader_id: r for r in summarize(self.result.state, self.result.tallies)
        }

    def project_into(self, db: str) -> None:
        """Project as the consumer does: config changes, then snapshots, then attempts in batches, then the
        book events (leaderBook, positionSettled, orderExpired)."""
        store = ProjectionStore(db)
        store.create_schema()
        try:
            for topic, lines in ((CONFIG_CHANGES, self.changes), (SNAPSHOTS, self.snapshots)):
                decoded: list[Decoded] = [
                    (topic, 0, i, decode_event(line), line.decode()) for i, line in enumerate(lines)
                ]
                project_batch(store, decoded, {(topic, 0): len(lines)})
            for start in range(0, len(self.attempt_lines), 700):
                chunk = self.attempt_lines[start : start + 700]
                decoded = [
                    (COPY_ATTEMPTS, 0, start + i, decode_attempt(line), line.decode())
                    for i, line in enumerate(chunk)
                ]
                project_batch(store, decoded, {(COPY_ATTEMPTS, 0): start + len(chunk)})
            books: list[Decoded] = [
                (BOOK_EVENTS, 0, i, decode_book_event(line), line.decode())
                for i, line in enumerate(self.book_lines)
            ]
            project_batch(store, books, {(BOOK_EVENTS, 0): len(books)})
        finally:
            store.close()
