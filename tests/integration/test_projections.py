"""The projection consumer on a real broker and real SQL (SPEC 9): idempotent, crash-safe, and its
counts agree with the decision core. SQLite always; PostgreSQL too when ``COPYBOT_TEST_POSTGRES_URL`` is
set (then an unreachable server fails the tests instead of skipping them)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from models.summary import LeaderTally
from projections import api, queries
from projections.consumer import ProjectionResult, decode_output, project, project_batch
from projections.store import (
    ProjectionStore,
    StoreError,
    config_history,
    database_url,
    leader_books,
    leader_budget,
    leader_clamp_counts,
    leader_reason_counts,
    projection_offsets,
)
from streams.configedit import fold
from streams.replay import replay
from streams.sample_tape import generate
from streams.serde import peek
from streams.settings import CONFIG_CHANGES, COPY_ATTEMPTS, SNAPSHOTS, Settings
from streams.topology import BOOK_EVENTS, EXECUTIONS
from tests.integration.live import (
    SAMPLE_TAPE,
    CopybotClient,  # with the test-only publish_raw
    LiveSystem,
    accepted_trades,
    tape_events,
    wait_until,
)
from tests.projections.db import dump
from tests.projections.sample import MemoryGateway, Sample
from tests.projections.venue import VenueSample

pytestmark = pytest.mark.integration

POSTGRES_ENV = "COPYBOT_TEST_POSTGRES_URL"
ROOT = Path(__file__).resolve().parents[2]

NewDb = Callable[[], str]


@pytest.fixture(params=["sqlite", "postgresql"])
def new_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewDb]:
    """Makes empty databases: SQLite files, or PostgreSQL schemas of their own (dropped afterwards)."""
    if request.param == "sqlite":
        names = iter(range(1_000))
        yield lambda: str(tmp_path / f"projection-{next(names)}.db")
        return
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    engine = create_engine(database_url(url))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        pytest.fail(f"{POSTGRES_ENV} is set but PostgreSQL is unreachable: {exc}", pytrace=False)
    schemas: list[str] = []

    def make() -> str:
        schema = f"t{uuid.uuid4().hex[:12]}"
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"

    try:
        yield make
    finally:
        with engine.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def settings_for(bootstrap: str, partitions: int = 4) -> Settings:
    prefix = f"p{uuid.uuid4().hex[:10]}"
    return Settings.from_env(
        {
            "COPYBOT_BOOTSTRAP": bootstrap,
            "COPYBOT_TOPIC_PREFIX": prefix,
            "COPYBOT_PARTITIONS": str(partitions),
        }
    )


def run_projection(settings: Settings, db: str, **options: Any) -> ProjectionResult:
    return asyncio.run(project(settings, db, once=True, **options))


def tables(db: str, exclude_offsets: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    store = ProjectionStore(db)
    try:
        tables_now = dump(store)
    finally:
        store.close()
    if exclude_offsets:
        tables_now.pop(projection_offsets.name)
    return tables_now


# --- the input: a tape replayed by the decision core -----------------------------------------------


class Tape:
    """A tape's copy attempts (as ``copybot replay`` emits them), its snapshots and config changes."""

    def __init__(self, lines: list[bytes]) -> None:
        out, diagnostics = io.BytesIO(), io.BytesIO()
        replay(lines, out, diagnostics)
        # replay's stdout also carries the SPEC 13 book events (leaderBook, ...): keep the attempts
        self.attempts = [x for x in out.getvalue().splitlines() if x.startswith(b'{"kind":"copyAttempt"')]
        self.reports = [orjson.loads(line) for line in diagnostics.getvalue().splitlines()]
        self.snapshots = [line for line in lines if (peek(line) or {}).get("kind") == "portfolioSnapshot"]
        self.config_changes = [line for line in lines if (peek(line) or {}).get("kind") == "configChange"]

    def tallies(self) -> dict[str, LeaderTally]:
        tallies: dict[str, LeaderTally] = {}
        for line in self.attempts:
            attempt = orjson.loads(line)
            tallies.setdefault(attempt["followedUserId"], LeaderTally()).observe(attempt)
        return tallies

    def rejected_change_ids(self) -> set[str]:
        return {r["changeId"] for r in self.reports if r["kind"] == "configRejected"}


def publish(
    settings: Settings, tape: Tape, attempts: list[bytes] | None = None, garbage: bool = True
) -> None:
    """Publish the tape's attempts (keyed by leader), snapshots and config changes, plus undecodable junk."""

    async def send() -> None:
        async with CopybotClient(settings) as client:
            for line in tape.attempts if attempts is None else attempts:
                await client.publish_raw(COPY_ATTEMPTS, line, key=orjson.loads(line)["followedUserId"])
            for line in [*tape.snapshots, *tape.config_changes] if attempts is None else []:
                await client.publish(line)
            if garbage:
                for topic in (COPY_ATTEMPTS, SNAPSHOTS, CONFIG_CHANGES):
                    await client.publish_raw(topic, b'{"kind": "copyAttempt", "attemptId": 1}', partition=0)
                    await client.publish_raw(topic, b"\xff not json", partition=0)

    asyncio.run(send())


@pytest.fixture(scope="module")
def sample() -> Tape:
    return Tape(SAMPLE_TAPE.read_bytes().splitlines())


def assert_counts_match(db: str, tape: Tape) -> None:
    """Per-leader counts in the tables equal those of the replay's attempts."""
    store = ProjectionStore(db)
    try:
        with store.engine.begin() as conn:
            leaders = {r.leader_id: r for r in conn.execute(leader_budget.select()).all()}
            reasons = conn.execute(leader_reason_counts.select()).mappings().all()
            clamps = conn.execute(leader_clamp_counts.select()).mappings().all()
            history = conn.execute(config_history.select()).all()
    finally:
        store.close()
    tallies = tape.tallies()
    assert set(tallies) <= set(leaders)
    for leader, tally in tallies.items():
        row = leaders[leader]
        assert (row.attempts, row.executed, row.skipped, row.trades) == (
            tally.executed + tally.skipped,
            tally.executed,
            tally.skipped,
            tally.trades,
        )
        assert {r["reason"]: r["count"] for r in reasons if r["leader_id"] == leader} == dict(
            tally.skip_reasons
        )
    expected_clamps: Counter[tuple[str, str]] = Counter()
    for line in tape.attempts:
        a = orjson.loads(line)
        s, u = a["sizing"], a["followedUserId"]
        for name, on in (
            ("rMin", s["clampedToRMin"]),
            ("rMax", s["clampedToRMax"]),
            ("min", s["clampedToMin"]),
            ("max", s["clampedToMax"]),
            ("bankroll", s["clampedByBankroll"]),
            ("hardCap", a["budget"]["capped"] or "BUDGET_HARD_CAP_EXCEEDED" in a["reasonCodes"]),
        ):
            expected_clamps[(u, name)] += bool(on)
    assert {(r["leader_id"], r["clamp"]): r["count"] for r in clamps} == +expected_clamps
    assert {r.change_id for r in history if r.status == "rejected"} == tape.rejected_change_ids()


# --- idempotence ---------------------------------------------------------------------------------


def test_projecting_twice_or_rebuilding_leaves_identical_tables(
    kafka_bootstrap: str, new_db: NewDb, sample: Tape
) -> None:
    # Given the sample tape's attempts, snapshots and config changes, with undecodable messages
    settings = settings_for(kafka_bootstrap)
    publish(settings, sample)
    db = new_db()
    # When projected once
    first = run_projection(settings, db)
    # Then every attempt is a row, the junk was skipped, and the counts are the replay's
    assert first.attempts == len(sample.attempts)
    assert first.undecodable == 6
    assert_counts_match(db, sample)
    before = tables(db)
    assert len(before["copy_attempts"]) == len(sample.attempts)
    # And a second run finds nothing new and changes nothing
    again = run_projection(settings, db)
    assert again.messages == 0
    assert tables(db) == before
    # And a rebuild re-consumes everything into the same tables
    rebuilt = run_projection(settings, db, rebuild=True)
    assert rebuilt.messages == first.messages
    assert tables(db) == before


def test_redelivered_attempts_are_not_counted_twice(
    kafka_bootstrap: str, new_db: NewDb, sample: Tape
) -> None:
    # Given a projected tape
    settings = settings_for(kafka_bootstrap)
    publish(settings, sample, garbage=False)
    db = new_db()
    run_projection(settings, db)
    before = tables(db, exclude_offsets=True)
    # When a third of its attempts are delivered again (as after a worker crash)
    redelivered = sample.attempts[::3]
    publish(settings, sample, attempts=redelivered, garbage=False)
    result = run_projection(settings, db)
    # Then they are recognised, and no row or count changes (only the offsets move on)
    assert (result.attempts, result.duplicate_attempts) == (0, len(redelivered))
    assert tables(db, exclude_offsets=True) == before
    assert_counts_match(db, sample)


# --- the venue loop: book events and execution reports ---------------------------------------------


def publish_venue(settings: Settings, venue: VenueSample, only: tuple[str, ...] | None = None) -> None:
    """Publish the venue tape's config changes and reports as a producer would, and the core's attempts and
    book events as the worker would (keyed by leader); `only`: just these topics (a redelivery)."""

    async def send() -> None:
        async with CopybotClient(settings) as client:
            for topic, lines in venue.messages().items():
                if only is not None and topic not in only:
                    continue
                for line in lines:
                    if topic in (CONFIG_CHANGES, EXECUTIONS):
                        await client.publish(line)
                    else:
                        await client.publish_raw(topic, line, key=orjson.loads(line)["followedUserId"])
            await client.publish_raw(BOOK_EVENTS, b'{"kind": "leaderBook"}', partition=0)

    asyncio.run(send())


def assert_venue_figures(db: str, venue: VenueSample) -> None:
    """The API over `db` shows the replay's PnL, reserved budget, open orders, positions and settlements."""
    with TestClient(api.create_app(db, MemoryGateway(fold(venue.messages()[CONFIG_CHANGES]).store))) as c:
        rows = {r["id"]: r for r in c.get("/api/budgeted-dynamic/summary").json()}
        for leader, s in venue.summary.items():
            r = rows[leader]
            assert (r["realizedPnlUsdc"], r["unrealizedPnlUsdc"]) == (
                s.realized_pnl_micros / 1e6,
                s.unrealized_pnl_micros / 1e6,
            )
            assert (r["reservedUsdc"], r["openOrders"]) == (s.reserved_micros / 1e6, s.open_orders)
            held = venue.result.state.leaders[leader].held_share_micros
            positions = c.get("/api/positions", params={"leader": leader}).json()
            assert {p["assetId"]: p["shareMicros"] for p in positions} == {a: n for a, n in held.items() if n}
        statuses = Counter(o["status"] for o in c.get("/api/orders").json())
        assert statuses == Counter({"OPEN": 2, "FILLED": 1, "REJECTED": 1, "EXPIRED": 1})
        settled = {x["settlementId"] for x in c.get("/api/settlements").json()}
        assert settled == {x["settlementId"] for x in venue.of_kind("positionSettled")}


def test_book_events_and_reports_from_kafka_show_the_replays_pnl_positions_and_orders(
    kafka_bootstrap: str, new_db: NewDb
) -> None:
    # Given the venue tape's config changes, attempts, book events and reports on their topics
    venue = VenueSample()
    settings = settings_for(kafka_bootstrap)
    publish_venue(settings, venue)
    db = new_db()
    # When projected
    first = run_projection(settings, db)
    # Then every book event was read (the junk skipped; the reports are the core's business: the
    # projector stores the orderUpdated outputs) and the figures are the replay's
    messages = venue.messages()
    assert first.book_events == len(messages[BOOK_EVENTS])
    assert first.undecodable == 1
    assert_venue_figures(db, venue)
    before = tables(db, exclude_offsets=True)
    # And book events and reports delivered again change no figure
    publish_venue(settings, venue, only=(BOOK_EVENTS, EXECUTIONS))
    again = run_projection(settings, db)
    assert again.book_events == len(messages[BOOK_EVENTS])
    after = tables(db, exclude_offsets=True)
    for name in ("positions", "settlements", "orders", "copy_attempts"):
        assert after[name] == before[name], name
    assert_venue_figures(db, venue)


# --- crash safety --------------------------------------------------------------------------------


def _stored_offsets(db: str) -> int:
    # Read as the API does: ProjectionStore's transactions BEGIN IMMEDIATE (the write lock), and a
    # reader queued behind a projector that commits batch after batch can starve until it has finished.
    engine = queries.read_engine(db)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT COALESCE(SUM(next_offset), 0) FROM projection_offsets")
                ).scalar_one()
            )
    except SQLAlchemyError:  # the consumer has not created its tables yet
        return 0
    finally:
        engine.dispose()


def _consumer(settings: Settings, db: str, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "COPYBOT_BOOTSTRAP": settings.bootstrap,
        "COPYBOT_TOPIC_PREFIX": settings.topic_prefix,
        "COPYBOT_PARTITIONS": str(settings.partitions),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "projections.consumer", "--db", db, "--once", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_a_consumer_killed_mid_stream_resumes_to_the_same_tables(kafka_bootstrap: str, new_db: NewDb) -> None:
    # Given a big tape's attempts, snapshots and config changes
    tape = Tape(list(generate(trades=20_000, seed=11)))
    settings = settings_for(kafka_bootstrap)
    publish(settings, tape)
    total = len(tape.attempts) + len(tape.snapshots) + len(tape.config_changes) + 6
    uninterrupted = new_db()
    run_projection(settings, uninterrupted)
    # When a consumer committing small batches is SIGKILLed once some batches are committed
    db = new_db()
    process = _consumer(settings, db, "--max-records", "50")
    try:
        wait_until(lambda: _stored_offsets(db) > 0, 60, "the first committed batch")
        assert process.poll() is None, "the consumer finished before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert 0 < _stored_offsets(db) < total
    # And restarted
    restarted = _consumer(settings, db)
    output, _ = restarted.communicate(timeout=300)
    assert restarted.returncode == 0, output.decode()
    # Then the tables are exactly those of an uninterrupted run
    assert tables(db) == tables(uninterrupted)
    assert_counts_match(db, tape)


# --- live: the worker's attempts -------------------------------------------------------------------


def test_projected_counts_of_a_live_run_equal_the_replay_of_the_same_tape(
    kafka_bootstrap: str, tmp_path: Path, new_db: NewDb, sample: Tape
) -> None:
    # Given a real worker that decided the sample tape (one partition, no wall-clock ticks)
    system = LiveSystem(kafka_bootstrap, tmp_path)
    try:
        system.worker().start()
        system.publish(SAMPLE_TAPE, "--ordered", "--finish")
        system.attempts_covering(accepted_trades(tape_events(SAMPLE_TAPE)))
        # When the projection catches up
        db = new_db()
        result = run_projection(system.settings, db)
    finally:
        system.close()
    # Then its per-leader counts, reasons, clamps and config statuses are the replay's
    assert result.attempts == len(sample.attempts)
    assert_counts_match(db, sample)


# --- the API's reads on both databases ---------------------------------------------------------------


def test_the_api_reads_the_same_answers_from_either_database(new_db: NewDb, tmp_path: Path) -> None:
    # Given the sample tape projected into this database and into a SQLite file
    seeded = Sample()
    db, reference = new_db(), str(tmp_path / "reference.db")
    seeded.project_into(db)
    seeded.project_into(reference)
    gateway = MemoryGateway(fold(seeded.changes).store)
    with TestClient(api.create_app(db, gateway)) as c, TestClient(api.create_app(reference, gateway)) as r:
        # Then the summary, a leader, the config and the metrics are the same
        for path in (
            "/api/budgeted-dynamic/summary",
            "/api/config/global",
            "/api/config/user/whale",
            "/api/copy-attempts?decision=SKIP&limit=1",
        ):
            assert c.get(path).json() == r.get(path).json(), path
        assert (
            c.get("/api/users/alice").json()["skipReasons"] == r.get("/api/users/alice").json()["skipReasons"]
        )
        # and paging by cursor sees every attempt of a leader exactly once
        expected = {a["attemptId"] for a in seeded.attempts if a["followedUserId"] == "bob"}
        seen: list[str] = []
        params: dict[str, Any] = {"leader": "bob", "limit": 50}
        while True:
            page = c.get("/api/copy-attempts", params=params).json()
            seen += [a["attemptId"] for a in page["items"]]
            if page["nextCursor"] is None:
                break
            params["cursor"] = page["nextCursor"]
        assert len(seen) == len(set(seen)) == len(expected)
        assert set(seen) == expected


# --- the leaderBook history: one book per (leader, asOfMs), thinned after 24 h --------------------------

HOUR = 3_600_000


def _book(leader: str, as_of: int, realized: int = 0) -> bytes:
    return orjson.dumps(
        {
            "kind": "leaderBook",
            "followedUserId": leader,
            "asOfMs": as_of,
            "exposureMicros": 0,
            "reservedMicros": 0,
            "costBasisMicros": 0,
            "realizedPnlMicros": realized,
            "unrealizedPnlMicros": 0,
            "leaderExposureMicros": None,
            "leaderExposureStatus": "missing",
            "positions": [],
            "configVersion": None,
        }
    )


def _project_books(db: str, books: list[bytes], first_offset: int, batch: int) -> None:
    store = ProjectionStore(db)
    store.create_schema()
    try:
        for start in range(0, len(books), batch):
            chunk = books[start : start + batch]
            decoded = [
                (BOOK_EVENTS, 0, first_offset + start + i, decode_output(BOOK_EVENTS, line), line.decode())
                for i, line in enumerate(chunk)
            ]
            project_batch(store, decoded, {(BOOK_EVENTS, 0): first_offset + start + len(chunk)})
    finally:
        store.close()


def _history(db: str) -> list[tuple[Any, ...]]:
    return tables(db)[leader_books.name]


def test_the_book_history_keeps_the_last_day_whole_and_one_book_an_hour_before(new_db: NewDb) -> None:
    # Given a leader's books every 10 minutes for three days (and another leader's, for one hour)
    t0 = 1_800_000_000_000 // HOUR * HOUR
    books = [_book("u1", t0 + i * 600_000, realized=i) for i in range(3 * 24 * 6)]
    books += [_book("u2", t0 + i * 600_000) for i in range(6)]
    # When projected in batches of 50, or all at once
    batched, whole = new_db(), new_db()
    _project_books(batched, books, 0, batch=50)
    _project_books(whole, books, 0, batch=len(books))
    # Then both keep the same books
    assert _history(batched) == _history(whole)
    kept = [(r[0], r[1]) for r in _history(whole)]  # (leader_id, as_of_ms)
    newest = t0 + (3 * 24 * 6 - 1) * 600_000
    cut = (newest - 24 * HOUR) // HOUR * HOUR  # from the start of the hour 24 h before the newest book
    recent = [t for leader, t in kept if leader == "u1" and t >= cut]
    old = [t for leader, t in kept if leader == "u1" and t < cut]
    assert recent == [t0 + i * 600_000 for i in range(3 * 24 * 6) if t0 + i * 600_000 >= cut]
    # the last book of each hour before the cut
    assert old == [t0 + h * HOUR + 50 * 60_000 for h in range((cut - t0) // HOUR)]
    assert [t for leader, t in kept if leader == "u2"] == [t0 + i * 600_000 for i in range(6)]
    # And a book thinned away, delivered again, stays away; a kept one is not added twice
    _project_books(whole, [books[0], books[5], books[-1]], len(books), batch=3)
    assert _history(whole) == _history(batched)


def test_a_book_with_a_stored_key_replaces_it_only_when_it_differs(new_db: NewDb) -> None:
    db = new_db()
    _project_books(db, [_book("u1", 1_000), _book("u1", 2_000)], 0, batch=2)
    before = _history(db)
    _project_books(db, [_book("u1", 1_000)], 10, batch=1)  # redelivered: nothing moves
    assert _history(db) == before
    _project_books(db, [_book("u1", 2_000, realized=7), _book("u1", 2_000, realized=8)], 20, batch=2)
    rows = _history(db)
    assert len(rows) == 2
    last = rows[-1]
    assert (last[1], last[5], last[-2:]) == (
        2_000,
        8,
        (0, 21),
    )  # the later read of the key, where it was read


def test_tables_of_another_shape_are_an_error_until_rebuilt(new_db: NewDb) -> None:
    db = new_db()
    store = ProjectionStore(db)
    try:
        with store.engine.begin() as conn:  # leader_books as an older copybot made it (keyed by offset)
            conn.execute(
                text(
                    "CREATE TABLE leader_books (source_partition INTEGER, source_offset BIGINT, "
                    "leader_id TEXT, as_of_ms BIGINT, PRIMARY KEY (source_partition, source_offset))"
                )
            )
        with pytest.raises(StoreError, match=r"leader_books.*copybot project --rebuild"):
            store.create_schema()
        store.reset()
        store.create_schema()
    finally:
        store.close()
    _project_books(db, [_book("u1", 1_000)], 0, batch=1)
    assert len(_history(db)) == 1
