"""The venue loop's read side (SPEC 13, issue 8 item 4): a venue tape replayed by the decision core and
projected as the consumer projects it; the tables and the API show what the core computed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from models.events import OrderUpdated
from projections import api
from projections.consumer import Decoded, decode_output, project_batch
from projections.store import ProjectionStore
from projections.store import orders as store_orders
from streams.configedit import fold
from streams.settings import CONFIG_CHANGES, COPY_ATTEMPTS
from streams.topology import BOOK_EVENTS
from tests.factories import T0, USD, global_change, report, resolution, trade
from tests.projections.db import dump
from tests.projections.sample import MemoryGateway
from tests.projections.venue import REPORTS, VenueSample


@pytest.fixture(scope="module")
def venue() -> VenueSample:
    return VenueSample()


@pytest.fixture(scope="module")
def client(venue: VenueSample, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API over the venue tape projected into SQLite (config writes go nowhere)."""
    db = str(tmp_path_factory.mktemp("venue") / "projection.db")
    venue.project_into(db)
    gateway = MemoryGateway(fold(venue.messages()["config-changes"]).store)
    with TestClient(api.create_app(db, gateway)) as c:
        yield c


def attempt_of(venue: VenueSample, trade_id: str) -> dict[str, Any]:
    return next(a for a in venue.of_kind("copyAttempt") if trade_id in a["tradeIds"])


def tables(db: str) -> dict[str, list[tuple[Any, ...]]]:
    store = ProjectionStore(db)
    try:
        return dump(store)
    finally:
        store.close()


# --- the summary equals the replay ----------------------------------------------------------------


def test_the_summary_shows_the_replays_pnl_reserved_budget_and_open_orders(
    client: TestClient, venue: VenueSample
) -> None:
    rows = {r["id"]: r for r in client.get("/api/budgeted-dynamic/summary").json()}
    assert set(rows) == set(venue.summary) == {"u1", "u2"}
    for leader, s in venue.summary.items():
        r = rows[leader]
        assert r["realizedPnlUsdc"] == s.realized_pnl_micros / USD
        assert r["unrealizedPnlUsdc"] == s.unrealized_pnl_micros / USD
        assert r["reservedUsdc"] == s.reserved_micros / USD
        assert r["openOrders"] == s.open_orders
        # what the HARD check counts (SPEC 13.3 point 2): our exposure and the open BUY reservations, the
        # same in the replay's summary and the API's
        assert r["execExposureUsdc"] == s.our_exposure_micros / USD
        assert s.headroom_micros is not None
        assert r["budgetHeadroomUsdc"] == s.headroom_micros / USD
    u1 = venue.summary["u1"]
    assert u1.headroom_micros == u1.budget_micros - u1.our_exposure_micros
    assert u1.our_exposure_micros > u1.reserved_micros > 0  # reservations are inside the exposure counted
    # one market won (+8.33), one lost (−5): u2's realized PnL; u1 holds two orders open, one a BUY
    assert rows["u2"]["realizedPnlUsdc"] == pytest.approx(3.333333)
    assert (rows["u1"]["openOrders"], rows["u1"]["reservedUsdc"]) == (2, 5.0)


def test_positions_are_the_held_assets_of_the_final_book(client: TestClient, venue: VenueSample) -> None:
    state = venue.result.state.leaders["u1"]
    positions = client.get("/api/positions", params={"leader": "u1"}).json()
    assert [(p["assetId"], p["shareMicros"]) for p in positions] == sorted(
        (a, s) for a, s in state.held_share_micros.items() if s > 0
    )
    for p in positions:
        assert p["markPriceMicros"] == state.mark_price_micros[p["assetId"]]
        assert p["costBasisMicros"] == state.cost_basis_micros[p["assetId"]]
        assert p["valueMicros"] == p["shareMicros"] * p["markPriceMicros"] // USD
        assert p["unrealizedPnlMicros"] == p["valueMicros"] - p["costBasisMicros"]
        assert p["marketId"] == "m1"
    assert sum(p["unrealizedPnlMicros"] for p in positions) == venue.summary["u1"].unrealized_pnl_micros
    # a settled leader holds nothing
    assert client.get("/api/positions", params={"leader": "u2"}).json() == []


def test_settlements_are_the_positionSettled_events(client: TestClient, venue: VenueSample) -> None:
    settled = client.get("/api/settlements").json()
    expected = sorted(venue.of_kind("positionSettled"), key=lambda x: x["settlementId"])
    assert sorted(settled, key=lambda x: x["settlementId"]) == expected
    assert {(x["assetId"], x["realizedPnlMicros"]) for x in settled} == {
        ("won", 8_333_333),
        ("lost", -5 * USD),
    }
    assert client.get("/api/settlements", params={"leader": "u1"}).json() == []


def test_orders_show_status_fill_ratio_and_price_against_the_reference(
    client: TestClient, venue: VenueSample
) -> None:
    orders = {o["attemptId"]: o for o in client.get("/api/orders").json()}
    by_trade = {t: attempt_of(venue, t)["attemptId"] for t in ("o1", "o2", "o3", "o4", "o5")}
    assert set(orders) == set(by_trade.values())  # paper fills and the stray report open no order
    filled, rejected, expired = (orders[by_trade[t]] for t in ("o1", "o2", "o3"))
    assert (filled["status"], filled["fillRatio"], filled["averageFillPriceMicros"]) == (
        "FILLED",
        1.0,
        510_000,
    )
    assert filled["priceVsReferenceBps"] == pytest.approx(200.0)  # 0.51 against 0.50
    assert filled["lastReportId"] == "r2"  # the stale report after it changed nothing
    assert (rejected["status"], rejected["filledShareMicros"], rejected["averageFillPriceMicros"]) == (
        "REJECTED",
        0,
        None,
    )
    (expiry,) = venue.of_kind("orderExpired")
    assert (expired["status"], expired["expiredAtMs"], expired["fillRatio"]) == (
        "EXPIRED",
        expiry["expiredAtMs"],
        0.2,
    )
    assert [orders[by_trade[t]]["status"] for t in ("o4", "o5")] == ["OPEN", "OPEN"]
    assert orders[by_trade["o5"]]["side"] == "SELL"
    # filters
    open_ = client.get("/api/orders", params={"status": "OPEN"}).json()
    assert {o["attemptId"] for o in open_} == {by_trade["o4"], by_trade["o5"]}
    assert client.get("/api/orders", params={"leader": "u2"}).json() == []
    assert len(client.get("/api/orders", params={"limit": 2}).json()) == 2


def test_the_books_of_a_leader_are_its_leaderBook_events_newest_first(
    client: TestClient, venue: VenueSample
) -> None:
    books = client.get("/api/users/u1/books").json()
    replayed = [b for b in venue.of_kind("leaderBook") if b["followedUserId"] == "u1"]
    # one book per asOfMs: the replay's final book, at the clock of the last periodic one, replaces it
    assert [b["asOfMs"] for b in replayed[-2:]] == [replayed[-1]["asOfMs"]] * 2
    assert replayed[-2] != replayed[-1]
    expected = [*replayed[:-2], replayed[-1]]
    assert books == expected[::-1]
    assert client.get("/api/users/u1/books", params={"limit": 1}).json() == expected[-1:]
    assert client.get("/api/users/nobody/books").status_code == 404


def test_the_user_detail_marks_the_kill_switch_flips_with_their_config_changes(client: TestClient) -> None:
    detail = client.get("/api/users/u1").json()
    marks = [(m["configVersion"], m["killSwitch"], m["budgetedDynamicActive"]) for m in detail["modeChanges"]]
    assert marks == [("v-off", True, False), ("v-on", True, True)]
    assert all(m["changeScope"] == "GLOBAL" for m in detail["modeChanges"])
    assert [p["t"] for p in detail["pnlHistory"]] == sorted(p["t"] for p in detail["pnlHistory"])
    assert detail["pnlHistory"][-1]["pnlUsdc"] == pytest.approx(-0.1)
    assert {o["status"] for o in detail["orders"]} == {"FILLED", "REJECTED", "EXPIRED", "OPEN"}
    assert len(detail["positions"]) == 2


def test_the_user_page_shows_pnl_orders_positions_settlements_and_why_utilization_can_pass_100(
    client: TestClient,
) -> None:
    page = client.get("/users/u1").text
    for element in (
        "tile-realized-pnl",
        "tile-unrealized-pnl",
        "tile-reserved",
        "tile-open-orders",
        "id='positions'",
        "id='orders'",
        "id='settlements'",
        "id='pnl-line'",
        "class='mode-change'",
        "id='hard-note'",
        "marks move",
    ):
        assert element in page, element
    assert "kill switch off, HARD (v-off)" in page
    settled = client.get("/users/u2").text
    assert "m-won" in settled
    assert "m-lost" in settled


# --- the orders are the core's --------------------------------------------------------------------


def test_the_orders_table_is_the_newest_orderUpdated_of_each_order(
    venue: VenueSample, tmp_path: Path
) -> None:
    db = str(tmp_path / "orders.db")
    venue.project_into(db)
    newest: dict[str, dict[str, Any]] = {}
    for update in venue.of_kind("orderUpdated"):
        newest[update["attemptId"]] = update
    store = ProjectionStore(db)
    try:
        with store.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.select(store_orders)).mappings()]
    finally:
        store.close()
    stored = {
        r["attempt_id"]: OrderUpdated.model_validate(
            {"kind": "orderUpdated", "followedUserId": r["leader_id"], **_camel(r)}
        )
        for r in rows
    }
    assert stored == {aid: OrderUpdated.model_validate(u) for aid, u in newest.items()}
    # and those are the core's orders at the end of the tape
    core = venue.result.state.leaders["u1"].orders
    assert {aid: (o.status, o.filled_share_micros, o.reserved()) for aid, o in core.items()} == {
        aid: (u.status, u.filled_share_micros, u.reserved_micros) for aid, u in stored.items()
    }


def _camel(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in row.items():
        if name in ("leader_id", "source_partition", "source_offset"):
            continue
        head, *rest = name.split("_")
        out[head + "".join(w.title() for w in rest)] = value
    return out


def test_a_report_the_core_ignored_for_a_resolved_market_is_not_counted(tmp_path: Path) -> None:
    # Given an order whose market resolves before the venue reports a fill
    opening = [global_change(system=REPORTS), trade("u1", at=T0, asset="a1", trade_id="o1")]
    order_id = VenueSample(opening).of_kind("copyAttempt")[0]["attemptId"]
    sample = VenueSample([*opening, resolution("a1", USD), report(order_id, "FILLED", 10 * USD, 5 * USD)])
    db = str(tmp_path / "resolved.db")
    sample.project_into(db)
    with TestClient(api.create_app(db, MemoryGateway(fold(sample.messages()[CONFIG_CHANGES]).store))) as c:
        (order,) = c.get("/api/orders").json()
    # Then the order is what the core decided: expired by the resolution, nothing filled
    assert (order["status"], order["closeReason"], order["filledShareMicros"]) == (
        "EXPIRED",
        "MARKET_RESOLVED",
        0,
    )


# --- idempotence and arrival order -------------------------------------------------------------


@pytest.mark.parametrize(
    "order",
    [(BOOK_EVENTS, COPY_ATTEMPTS, CONFIG_CHANGES), (CONFIG_CHANGES, BOOK_EVENTS, COPY_ATTEMPTS)],
)
def test_the_tables_do_not_depend_on_which_topic_is_read_first(
    venue: VenueSample, tmp_path: Path, order: tuple[str, ...]
) -> None:
    in_log_order, other = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    venue.project_into(in_log_order)
    venue.project_into(other, order)
    assert tables(in_log_order) == tables(other)


def test_redelivered_book_events_change_no_figure(venue: VenueSample, tmp_path: Path) -> None:
    db = str(tmp_path / "twice.db")
    venue.project_into(db)
    once = tables(db)
    venue.project_into(db, redelivered=True)
    again = tables(db)
    for table in ("positions", "settlements", "orders", "copy_attempts", "config_history", "leader_books"):
        assert again[table] == once[table], table  # leader_books: not appended again, not even moved
    figures = [(r[0], *r[-7:-3]) for r in once["leader_budget"]]  # reserved, cost, realized, unrealized
    assert [(r[0], *r[-7:-3]) for r in again["leader_budget"]] == figures


def test_an_older_revision_read_after_a_newer_one_changes_no_order(
    venue: VenueSample, tmp_path: Path
) -> None:
    # Given the tape projected, when the book events come again in reverse order (older revisions last)
    db = str(tmp_path / "reversed.db")
    venue.project_into(db)
    once = tables(db)["orders"]
    books = venue.messages()[BOOK_EVENTS]
    updates = [line for line in books if b'"kind":"orderUpdated"' in line][::-1]
    store = ProjectionStore(db)
    try:
        first = len(venue.lines)
        decoded: list[Decoded] = [
            (BOOK_EVENTS, 0, first + i, decode_output(BOOK_EVENTS, line), line.decode())
            for i, line in enumerate(updates)
        ]
        project_batch(store, decoded, {(BOOK_EVENTS, 0): first + len(updates)})
    finally:
        store.close()
    # Then every order keeps its newest revision (and where it was read)
    assert tables(db)["orders"] == once
