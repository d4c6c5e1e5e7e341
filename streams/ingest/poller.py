"""The adapter: polls the Data API for each leader and publishes leaderTrade, SHADOW_USER snapshots and
marketResolved events (SPEC 14). It decides nothing.

Trades: ``/activity?type=TRADE&sortBy=TIMESTAMP&sortDirection=ASC&start=S&limit=500&offset=O``. A scan
window starts at S (from the checkpoint) and pages by offset; when the offset budget (the documented
maximum, 5,000) is spent, the next window starts at the timestamp of the last row seen. Rows at a
window's first second are fetched again, so each window counts identical rows from the start of every
second it covers - that keeps occurrence indices, and so trade ids, stable across polls and restarts.
After each page the new events are published and flushed, then the checkpoint is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from models.events import DeadLetter
from streams.ingest.checkpoint import Checkpoint
from streams.ingest.http import GaveUp, Params, PolymarketHttp
from streams.ingest.leaders import Leader
from streams.ingest.mapping import (
    BadRow,
    Holding,
    Occurrences,
    bad_row_key,
    epoch_seconds,
    leader_trade,
    parse_activity,
    parse_position,
    resolutions,
    shadow_snapshot,
    trade_id,
)
from streams.ingest.metrics import IngestMetrics
from streams.ingest.sinks import Event, Sink
from streams.serde import dead_letter, encode

log = logging.getLogger("copybot.ingest")

PAGE_LIMIT = 500
"""The documented maximum page size of /activity and /positions."""
MAX_OFFSET = 5_000
"""The documented maximum ``offset`` of /activity (a request past it is refused with 400)."""
MAX_POSITIONS_OFFSET = 10_000


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """How often and from where the adapter polls."""

    interval_s: float = 15.0
    snapshot_interval_s: float = 60.0
    resolution_interval_s: float = 60.0
    lookback_s: int = 60
    """Each scan re-reads this many seconds before the newest row, for rows the API indexes late."""
    since_sec: int | None = None
    """Where a wallet without a checkpoint starts (epoch seconds); None = now (no history)."""
    page_limit: int = PAGE_LIMIT
    max_offset: int = MAX_OFFSET
    resolution_batch: int = 20


@dataclass
class LeaderState:
    """One leader's progress (also what the terminal shows)."""

    leader: Leader
    checkpoint: Checkpoint | None
    fetched: int = 0
    published: int = 0
    dead_lettered: int = 0
    snapshots: int = 0


@dataclass
class Scan:
    """The ids handled at or after the lookback floor, and the newest row's timestamp."""

    newest: int
    seen: dict[str, int] = field(default_factory=dict)

    def checkpoint(self, leader: Leader, lookback_s: int, now_ms: int) -> Checkpoint:
        floor = self.newest - lookback_s
        self.seen = {i: t for i, t in self.seen.items() if t >= floor}
        pairs = tuple(sorted(self.seen.items(), key=lambda p: (p[1], p[0])))
        return Checkpoint(leader.wallet, leader.name, self.newest, pairs, now_ms)


@dataclass
class Page:
    """What one page of rows turned into."""

    events: list[Event] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    last_timestamp: int | None = None


def _raw_json(raw: object) -> bytes:
    return json.dumps(raw, default=str).encode()


class Ingestor:
    """Follows `leaders`; publishes to `sink`. ``await run_once()`` is one round (``--once``)."""

    def __init__(
        self,
        leaders: Sequence[Leader],
        http: PolymarketHttp,
        sink: Sink,
        options: IngestOptions,
        *,
        now_ms: Callable[[], int],
        metrics: IngestMetrics,
        checkpoints: dict[str, Checkpoint] | None = None,
        resolved_markets: set[str] | None = None,
        on_poll: Callable[[LeaderState], None] | None = None,
    ) -> None:
        found = checkpoints or {}
        self.states = [LeaderState(leader, found.get(leader.wallet)) for leader in leaders]
        self.http = http
        self.sink = sink
        self.options = options
        self.metrics = metrics
        self.now_ms = now_ms
        self.markets: dict[str, set[str]] = {}
        """conditionId -> outcome tokens the leaders traded or hold: the markets watched for resolution."""
        self.resolved = set(resolved_markets or ())
        self._bad_keys: set[str] = set()
        self._on_poll = on_poll

    # --- trades -----------------------------------------------------------------------------------

    async def poll_trades(self, state: LeaderState) -> None:
        """Publish every new trade row of one leader (pages until the API has no more)."""
        leader, now_ms = state.leader, self.now_ms()
        if state.checkpoint is None:
            since = self.options.since_sec if self.options.since_sec is not None else now_ms // 1000
            state.checkpoint = Checkpoint(leader.wallet, leader.name, since, (), now_ms)
            await self.sink.checkpoint(state.checkpoint)  # a restart keeps this starting point
            await self.sink.flush()
        scan = Scan(state.checkpoint.timestamp_sec, dict(state.checkpoint.seen))
        start = max(1, state.checkpoint.timestamp_sec - self.options.lookback_s)
        before = (state.fetched, state.published, state.dead_lettered)
        next_start: int | None = start
        while next_start is not None:
            next_start = await self._scan_window(state, scan, next_start)
        self.metrics.polls[leader.name] += 1
        self.metrics.lag_seconds[leader.name] = max(0.0, now_ms / 1000 - scan.newest)
        log.info(
            "%s: %d rows fetched, %d published, %d dead-lettered; newest row %d, lag %.1f s",
            leader.name,
            state.fetched - before[0],
            state.published - before[1],
            state.dead_lettered - before[2],
            scan.newest,
            self.metrics.lag_seconds[leader.name],
        )
        if self._on_poll:
            self._on_poll(state)

    async def _scan_window(self, state: LeaderState, scan: Scan, start: int) -> int | None:
        """Page through one window from `start`; returns the next window's start, or None when done."""
        occurrences, offset, last = Occurrences(), 0, None
        limit = self.options.page_limit
        while offset <= self.options.max_offset:
            params: Params = {
                "user": state.leader.wallet,
                "type": "TRADE",
                "start": start,
                "sortBy": "TIMESTAMP",
                "sortDirection": "ASC",
                "limit": limit,
                "offset": offset,
            }
            rows = await self.http.get("data", "/activity", params)
            if rows is None and offset > 0:  # a 4xx deep in a window: the API's offset cap is lower
                log.warning(
                    "%s: offset %d refused; the scan goes on from the last row", state.leader.name, offset
                )
                break
            if not isinstance(rows, list):
                if rows is not None:
                    log.error("%s: /activity answered %s, not a list; poll skipped", state.leader.name, rows)
                return None
            page = self._map_page(state, rows, occurrences, scan, start, offset)
            await self._publish_page(state, scan, page)
            last = page.last_timestamp if page.last_timestamp is not None else last
            if len(rows) < limit:
                return None
            offset += limit
        if last is None or last <= start:
            log.warning(
                "%s: more rows in second %d than one window can page through (offset cap %d); "
                "the rest of that second is skipped",
                state.leader.name,
                start,
                offset,
            )
            return start + 1
        return last

    def _map_page(
        self, state: LeaderState, rows: list[object], occ: Occurrences, scan: Scan, start: int, offset: int
    ) -> Page:
        page, leader, now_ms = Page(), state.leader, self.now_ms()
        for index, raw in enumerate(rows):
            state.fetched += 1
            self.metrics.rows_fetched[leader.name] += 1
            try:
                row = parse_activity(raw, leader.wallet)
            except BadRow as exc:
                key = bad_row_key(raw)
                key = f"{key}-{occ.next(key)}"
                if key not in scan.seen:
                    scan.seen[key] = _timestamp_or(raw, start)
                    page.letters.append(self._letter(leader.name, "/activity", offset + index, raw, str(exc)))
                continue
            page.last_timestamp = row.timestamp
            tid = trade_id(row.digest, occ.next(row.digest))
            if row.condition_id:
                self.markets.setdefault(row.condition_id, set()).add(row.asset)
            if tid in scan.seen or row.timestamp < start:
                continue
            scan.seen[tid] = row.timestamp
            try:
                trade = leader_trade(row, leader.name, tid, now_ms)
            except BadRow as exc:
                page.letters.append(self._letter(leader.name, "/activity", offset + index, raw, str(exc)))
                continue
            scan.newest = max(scan.newest, row.timestamp)
            page.events.append(Event("leaderTrade", leader.name, encode(trade)))
        return page

    async def _publish_page(self, state: LeaderState, scan: Scan, page: Page) -> None:
        if not page.events and not page.letters:
            return
        for event in page.events:
            await self.sink.publish(event)
        for letter in page.letters:
            await self.sink.dead_letter(letter)
        await self.sink.flush()  # the checkpoint must never get ahead of what Kafka acknowledged
        state.checkpoint = scan.checkpoint(state.leader, self.options.lookback_s, self.now_ms())
        await self.sink.checkpoint(state.checkpoint)
        await self.sink.flush()
        state.published += len(page.events)
        state.dead_lettered += len(page.letters)
        self.metrics.published[(state.leader.name, "leaderTrade")] += len(page.events)
        self.metrics.dead_lettered[state.leader.name] += len(page.letters)

    def _letter(self, key: str, path: str, offset: int, raw: object, reason: str) -> DeadLetter:
        log.warning("%s: bad row at %s offset %d: %s", key, path, offset, reason)
        return dead_letter(f"polymarket:{path}", 0, offset, key, _raw_json(raw), reason, self.now_ms())

    # --- snapshots --------------------------------------------------------------------------------

    async def snapshot(self, state: LeaderState) -> None:
        """Publish the leader's SHADOW_USER snapshot: E_u = Σ currentValue of ``/positions``."""
        leader, holdings, letters = state.leader, [], []
        offset = 0
        while True:
            params: Params = {
                "user": leader.wallet,
                "sizeThreshold": "0",
                "limit": PAGE_LIMIT,
                "offset": offset,
            }
            rows = await self.http.get("data", "/positions", params)
            if not isinstance(rows, list):
                return
            for index, raw in enumerate(rows):
                try:
                    holdings.append(parse_position(raw))
                except BadRow as exc:
                    letters.append((bad_row_key(raw), offset + index, raw, str(exc)))
            if len(rows) < PAGE_LIMIT or offset + PAGE_LIMIT > MAX_POSITIONS_OFFSET:
                break
            offset += PAGE_LIMIT
        if letters:  # a partial sum would understate E_u: no snapshot this time
            await self._position_letters(state, letters)
            return
        self._track(holdings)
        event = shadow_snapshot(leader.name, holdings, self.now_ms())
        await self.sink.publish(Event("portfolioSnapshot", leader.name, encode(event)))
        await self.sink.flush()
        state.snapshots += 1
        self.metrics.published[(leader.name, "portfolioSnapshot")] += 1

    async def _position_letters(
        self, state: LeaderState, letters: list[tuple[str, int, object, str]]
    ) -> None:
        log.warning("%s: no snapshot: %d bad /positions rows", state.leader.name, len(letters))
        for key, offset, raw, reason in letters:
            if key not in self._bad_keys:
                self._bad_keys.add(key)
                await self.sink.dead_letter(
                    self._letter(state.leader.name, "/positions", offset, raw, reason)
                )
                self.metrics.dead_lettered[state.leader.name] += 1
        await self.sink.flush()

    def _track(self, holdings: list[Holding]) -> None:
        for holding in holdings:
            if holding.condition_id:
                self.markets.setdefault(holding.condition_id, set()).add(holding.asset)

    # --- resolutions ------------------------------------------------------------------------------

    async def check_resolutions(self) -> None:
        """Ask Gamma about every watched market not yet resolved; publish each resolution once."""
        pending = sorted(c for c in self.markets if c not in self.resolved)
        size = self.options.resolution_batch
        for batch in (pending[i : i + size] for i in range(0, len(pending), size)):
            params: Params = {"condition_ids": batch, "closed": "true", "limit": len(batch)}
            markets = await self.http.get("gamma", "/markets", params)
            if not isinstance(markets, list):
                continue
            for market in markets:
                if isinstance(market, dict) and market.get("conditionId") in batch:
                    await self._resolve(market)
            await self.sink.flush()

    async def _resolve(self, market: dict[str, object]) -> None:
        condition_id = str(market["conditionId"])
        if condition_id in self.resolved:
            return
        try:
            events = resolutions(market, self.now_ms())
        except BadRow as exc:
            key = bad_row_key(market)
            if key not in self._bad_keys:
                self._bad_keys.add(key)
                await self.sink.dead_letter(self._letter(condition_id, "gamma:/markets", 0, market, str(exc)))
            return
        for event in events:
            await self.sink.publish(Event("marketResolved", event.asset_id, encode(event)))
            self.metrics.published[("", "marketResolved")] += 1
        if events:
            self.resolved.add(condition_id)
            log.info("market %s resolved: %s", condition_id, [e.payout_micros for e in events])

    # --- rounds -----------------------------------------------------------------------------------

    async def _guarded(self, what: str, job: Awaitable[None]) -> None:
        try:
            await job
        except GaveUp as exc:
            log.error("%s skipped this round: %s", what, exc)

    async def run_once(self, snapshots: bool = True) -> None:
        """One round: every leader's trades (and snapshot), then the resolutions, then a tape tick."""

        async def leader_round(state: LeaderState) -> None:
            await self._guarded(f"{state.leader.name} trades", self.poll_trades(state))
            if snapshots:
                await self._guarded(f"{state.leader.name} snapshot", self.snapshot(state))

        await asyncio.gather(*(leader_round(s) for s in self.states))
        await self._guarded("resolutions", self.check_resolutions())
        await self.sink.tick(self.now_ms())
        await self.sink.flush()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set: each leader at its interval, snapshots and resolutions at theirs."""

        async def every(period: float, job: Callable[[], Awaitable[None]]) -> None:
            while not stop.is_set():
                await job()
                with contextlib.suppress(TimeoutError):  # the period passed: next round
                    await asyncio.wait_for(stop.wait(), timeout=period)

        async def trades(state: LeaderState) -> None:
            await self._guarded(f"{state.leader.name} trades", self.poll_trades(state))
            await self.sink.tick(self.now_ms())

        async def all_snapshots() -> None:
            for state in self.states:
                await self._guarded(f"{state.leader.name} snapshot", self.snapshot(state))

        jobs = [
            every(s.leader.interval_s or self.options.interval_s, lambda s=s: trades(s))  # type: ignore[misc]
            for s in self.states
        ]
        jobs.append(every(self.options.snapshot_interval_s, all_snapshots))
        jobs.append(
            every(
                self.options.resolution_interval_s,
                lambda: self._guarded("resolutions", self.check_resolutions()),
            )
        )
        await asyncio.gather(*jobs)


def _timestamp_or(raw: object, default: int) -> int:
    try:
        return epoch_seconds(raw.get("timestamp")) if isinstance(raw, dict) else default
    except BadRow:
        return default
