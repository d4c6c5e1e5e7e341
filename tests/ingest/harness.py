"""Builds an adapter wired to the fake APIs, on virtual time (no wall-clock sleeps, no timing asserts)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from streams.ingest.checkpoint import Checkpoint
from streams.ingest.http import PolymarketHttp, RetryPolicy
from streams.ingest.leaders import Leader
from streams.ingest.metrics import IngestMetrics
from streams.ingest.poller import IngestOptions, Ingestor
from streams.ingest.ratelimit import Buckets, RateLimits
from streams.ingest.sinks import Sink
from tests.ingest.fake_polymarket import FakePolymarket
from tests.ingest.scenario import ALICE, BOB, T0

LEADERS = [Leader("alice", ALICE), Leader("bob", BOB)]
SMALL_PAGES = IngestOptions(lookback_s=60, since_sec=T0, page_limit=2, max_offset=2)
"""Pages of 2 rows and an offset budget of 2, so the scenario crosses the offset limit several times."""


@dataclass
class VirtualTime:
    """The buckets' clock; sleeping advances it (and is recorded) instead of waiting."""

    now: float = 1_000.0
    sleeps: list[float] = field(default_factory=list)
    request_times: list[tuple[float, str]] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Wall:
    """The events' clock (detectTimeMs, bucketTimeMs): set by the test per round."""

    ms: int = (T0 + 100) * 1000

    def __call__(self) -> int:
        return self.ms


@asynccontextmanager
async def adapter(
    fake: FakePolymarket,
    sink: Sink,
    *,
    wall: Wall,
    vt: VirtualTime,
    checkpoints: dict[str, Checkpoint] | None = None,
    resolved: set[str] | None = None,
    leaders: list[Leader] = LEADERS,
    options: IngestOptions = SMALL_PAGES,
    limits: RateLimits | None = None,
) -> AsyncIterator[Ingestor]:
    """An :class:`Ingestor` on the fake APIs; requests are stamped with virtual time as they leave."""

    async def stamp(request: httpx.Request) -> None:
        vt.request_times.append((vt.now, request.url.path))

    metrics = IngestMetrics()
    async with httpx.AsyncClient(timeout=10.0, event_hooks={"request": [stamp]}) as client:
        http = PolymarketHttp(
            client,
            fake.url,
            fake.gamma_url,
            Buckets(limits or RateLimits(), vt),
            vt.sleep,
            metrics,
            wall_clock=time.time,
            retry=RetryPolicy(attempts=4),
        )
        yield Ingestor(
            leaders,
            http,
            sink,
            options,
            now_ms=wall,
            metrics=metrics,
            checkpoints=checkpoints,
            resolved_markets=resolved,
        )
