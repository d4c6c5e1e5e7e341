"""The adapter against the fake APIs without Kafka (``--dry-run`` output): mapping, paging across the
offset limit, retries, skipped 4xx, dead letters, rate limits (on virtual time), re-polls with the same ids.
The same scenario against a real broker, with checkpoints and restarts, is tests/integration/test_ingest.py.
"""

from __future__ import annotations

import dataclasses
import io
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from streams.ingest.leaders import Leader
from streams.ingest.ratelimit import RateLimits
from streams.ingest.sinks import StreamSink, TapeRecorder
from streams.replay import replay
from tests.ingest import scenario
from tests.ingest.fake_polymarket import FakePolymarket, Scripted
from tests.ingest.harness import SMALL_PAGES, VirtualTime, Wall, adapter


@pytest.fixture
def fake() -> Iterator[FakePolymarket]:
    with FakePolymarket() as running:
        running.state.max_offset = SMALL_PAGES.max_offset
        yield running


def lines(buffer: io.BytesIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


async def test_a_dry_run_prints_exactly_the_mapped_events(fake: FakePolymarket) -> None:
    scenario.round_one(fake)
    out, diag, wall, vt = io.BytesIO(), io.BytesIO(), Wall(), VirtualTime()
    async with adapter(fake, StreamSink(out, diag), wall=wall, vt=vt) as ingestor:
        await ingestor.run_once()
    events = lines(out)
    trades = [e for e in events if e["kind"] == "leaderTrade"]
    expected = scenario.expected_trades(wall.ms, wall.ms)
    assert [t for t in trades if t["followedUserId"] == "alice"] == expected["alice"][:6]
    assert [t for t in trades if t["followedUserId"] == "bob"] == expected["bob"]
    snapshots = {e["followedUserId"]: e for e in events if e["kind"] == "portfolioSnapshot"}
    assert snapshots["alice"] == {
        "kind": "portfolioSnapshot",
        "portfolioScope": "SHADOW_USER",
        "followedUserId": "alice",
        "bucketTimeMs": wall.ms,
        "exposureMicros": 12_570_000,
        "equityMicros": None,
        "cashMicros": None,
    }
    assert snapshots["bob"]["exposureMicros"] == 30_000_000
    assert [e for e in events if e["kind"] == "marketResolved"] == []  # both markets still open
    (letter,) = lines(diag)
    assert letter["key"] == "bob"
    assert letter["sourceTopic"] == "polymarket:/activity"
    assert '"size": "lots"' in letter["value"]
    assert letter["error"].startswith("size:")
    assert 1.0 in vt.sleeps  # the 429's Retry-After was honoured; the 500 was retried after a backoff
    assert ingestor.metrics.http_errors == Counter({("data", "429"): 1, ("data", "500"): 1})


async def test_paging_crosses_the_offset_limit_by_moving_start(fake: FakePolymarket) -> None:
    scenario.round_one(fake)
    fake.state.scripted.clear()
    async with adapter(
        fake, StreamSink(io.BytesIO(), io.BytesIO()), wall=Wall(), vt=VirtualTime(), leaders=scenario_alice()
    ) as ingestor:
        await ingestor.run_once(snapshots=False)
    asked = [(int(q["start"][0]), int(q["offset"][0])) for q in fake.requests_to("/activity")]
    t0 = scenario.T0
    assert asked == [(t0 - 60, 0), (t0 - 60, 2), (t0 + 20, 0), (t0 + 20, 2), (t0 + 30, 0), (t0 + 30, 2)]
    assert all(int(q["offset"][0]) <= fake.state.max_offset for q in fake.requests_to("/activity"))
    assert {q["sortDirection"][0] for q in fake.requests_to("/activity")} == {"ASC"}


async def test_an_offset_cap_lower_than_documented_only_costs_a_request(fake: FakePolymarket) -> None:
    """If the API refuses an offset the documentation allows, the scan moves `start` and goes on."""
    scenario.round_one(fake)
    fake.state.scripted.clear()
    out = io.BytesIO()
    generous = dataclasses.replace(SMALL_PAGES, max_offset=4)  # the fake refuses offset 4 with 400
    async with adapter(
        fake,
        StreamSink(out, io.BytesIO()),
        wall=Wall(),
        vt=VirtualTime(),
        leaders=scenario_alice(),
        options=generous,
    ) as ingestor:
        await ingestor.run_once(snapshots=False)
    published = [e["tradeId"] for e in lines(out)]
    assert published == [scenario.ID[k] for k in ("A1", "A2", "A3", "A4", "A5", "A6")]
    assert ingestor.metrics.http_errors[("data", "400")] >= 1


def scenario_alice() -> list[Leader]:
    return [Leader("alice", scenario.ALICE)]


async def test_a_re_poll_without_a_checkpoint_yields_the_same_trade_ids(fake: FakePolymarket) -> None:
    """Republishing is harmless: the same rows give the same tradeIds (the worker drops repeats)."""
    scenario.round_one(fake)
    scenario.round_two(fake)
    fake.state.scripted.clear()
    runs = []
    for _ in range(2):
        out = io.BytesIO()
        async with adapter(fake, StreamSink(out, io.BytesIO()), wall=Wall(), vt=VirtualTime()) as ingestor:
            await ingestor.run_once(snapshots=False)
        by_leader: dict[str, list[str]] = {}
        for event in (e for e in lines(out) if e["kind"] == "leaderTrade"):  # order is per leader
            by_leader.setdefault(event["followedUserId"], []).append(event["tradeId"])
        runs.append(by_leader)
    assert runs[0] == runs[1]
    assert sorted(runs[0]["alice"] + runs[0]["bob"]) == sorted(scenario.ID.values())


async def test_another_4xx_is_skipped_not_retried_and_nothing_crashes(fake: FakePolymarket) -> None:
    scenario.round_one(fake)
    fake.state.scripted = {"/positions": [Scripted(404)], "/activity": [Scripted(400)]}
    out, alice = io.BytesIO(), scenario_alice()
    async with adapter(
        fake, StreamSink(out, io.BytesIO()), wall=Wall(), vt=VirtualTime(), leaders=alice
    ) as ing:
        await ing.run_once()
        assert lines(out) == []  # the poll and the snapshot were skipped, after one request each
        assert (len(fake.requests_to("/activity")), len(fake.requests_to("/positions"))) == (1, 1)
        assert ing.metrics.http_errors == Counter({("data", "400"): 1, ("data", "404"): 1})
        await ing.run_once()  # the next round is normal
    kinds = Counter(e["kind"] for e in lines(out))
    assert kinds == Counter({"leaderTrade": 6, "portfolioSnapshot": 1})


async def test_persistent_5xx_gives_up_the_round_after_bounded_retries(fake: FakePolymarket) -> None:
    scenario.round_one(fake)
    fake.state.scripted = {"/activity": [Scripted(503)] * 50}
    vt = VirtualTime()
    async with adapter(
        fake, StreamSink(io.BytesIO(), io.BytesIO()), wall=Wall(), vt=vt, leaders=scenario_alice()
    ) as ingestor:
        await ingestor.run_once(snapshots=False)
    assert len(fake.requests_to("/activity")) == 4  # RetryPolicy(attempts=4), then the poll is skipped
    assert len(vt.sleeps) == 3
    assert all(0 <= s <= 30 for s in vt.sleeps)


async def test_the_shared_rate_limit_holds_in_every_window_of_virtual_time(fake: FakePolymarket) -> None:
    """Three leaders, many rounds: Data API requests never exceed burst + rate x 10 s in any 10 s window."""
    scenario.round_one(fake)
    fake.state.scripted.clear()
    wallets = [scenario.ALICE, scenario.BOB, "0x" + "d3" * 20]
    leaders = [Leader(f"l{i}", w) for i, w in enumerate(wallets)]
    limits = RateLimits(data_api_rps=2.0, positions_rps=1.0, gamma_markets_rps=1.0, burst=3.0)
    vt = VirtualTime()
    async with adapter(
        fake, StreamSink(io.BytesIO(), io.BytesIO()), wall=Wall(), vt=vt, leaders=leaders, limits=limits
    ) as ingestor:
        for _ in range(8):
            await ingestor.run_once()
    data = [t for t, path in vt.request_times if path in ("/activity", "/positions")]
    positions = [t for t, path in vt.request_times if path == "/positions"]
    assert len(data) == len(fake.requests_to("/activity")) + len(fake.requests_to("/positions")) >= 60
    for times, rate in ((data, 2.0), (positions, 1.0)):
        for start in times:
            assert sum(1 for t in times if start <= t < start + 10) <= 3 + rate * 10
    span = max(data) - min(data)
    assert len(data) <= 3 + 2.0 * span + 1  # and over the whole run


async def test_a_recorded_tape_replays_with_every_trade_accounted_for(fake: FakePolymarket) -> None:
    scenario.round_one(fake)
    fake.state.scripted.clear()
    tape, wall = io.BytesIO(), Wall()
    sink = TapeRecorder(StreamSink(io.BytesIO(), io.BytesIO()), tape)
    async with adapter(fake, sink, wall=wall, vt=VirtualTime()) as ing:
        await ing.run_once()
        scenario.round_two(fake)
        wall.ms += 30_000
        await ing.run_once()
    recorded = lines(tape)
    assert {e["kind"] for e in recorded} == {"leaderTrade", "portfolioSnapshot", "marketResolved", "tick"}
    attempts, diagnostics = io.BytesIO(), io.BytesIO()
    result = replay(iter(tape.getvalue().splitlines(keepends=True)), attempts, diagnostics)
    assert diagnostics.getvalue() == b""
    accounted = [t for a in lines(attempts) if a["kind"] == "copyAttempt" for t in a["tradeIds"]]
    assert sorted(accounted) == sorted(scenario.ID.values())
    assert result.trades == len(scenario.ID)
