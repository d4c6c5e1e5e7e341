"""The venue loop's read side (SPEC 13, issue 8 item 4): a venue tape replayed by the decision core and
projected as the consumer projects it; the tables and the API show what the core computed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.events import OrderExpired
from projections import api
from projections.rows import OrderRow, with_expiry, with_report
from projections.store import ProjectionStore
from streams.configedit import fold
from streams.topology import BOOK_EVENTS, EXECUTIONS
from tests.factories import USD, report
from tests.projections.db import dump
from tests.projections.sample import MemoryGateway
from tests.projections.venue import VenueSample


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
    expected = [b for b in venue.of_kind("leaderBook") if b["followedUserId"] == "u1"]
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


# --- idempotence and arrival order -------------------------------------------------------------


def test_the_tables_do_not_depend_on_which_topic_is_read_first(venue: VenueSample, tmp_path: Path) -> None:
    books_first, reports_first = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    venue.project_into(books_first, (BOOK_EVENTS, EXECUTIONS))
    venue.project_into(reports_first, (EXECUTIONS, BOOK_EVENTS))
    assert tables(books_first) == tables(reports_first)


def test_redelivered_book_events_and_reports_change_no_figure(venue: VenueSample, tmp_path: Path) -> None:
    db = str(tmp_path / "twice.db")
    venue.project_into(db)
    once = tables(db)
    venue.project_into(db, redelivered=True)
    again = tables(db)
    for table in ("positions", "settlements", "orders", "copy_attempts", "config_history"):
        assert again[table] == once[table], table
    figures = [(r[0], *r[-7:-3]) for r in once["leader_budget"]]  # reserved, cost, realized, unrealized
    assert [(r[0], *r[-7:-3]) for r in again["leader_budget"]] == figures


# --- the pure fold of an order -------------------------------------------------------------------


def test_a_report_filling_less_than_counted_is_stale_and_changes_nothing() -> None:
    row = with_report(OrderRow("a", "u1"), report("a", "PARTIAL", 4 * USD, 2 * USD, report_id="r1"))
    assert with_report(row, report("a", "FILLED", 3 * USD, 3 * USD, report_id="r2")) == row


def test_the_first_closing_report_stands_and_an_expiry_wins() -> None:
    rejected = with_report(OrderRow("a", "u1"), report("a", "REJECTED", report_id="r1"))
    later = with_report(rejected, report("a", "FILLED", 1 * USD, 1 * USD, report_id="r2"))
    assert (later.status, later.filled_share_micros) == ("REJECTED", 1 * USD)  # fills still count
    expiry = OrderExpired(
        followed_user_id="u1",
        attempt_id="a",
        asset_id="a1",
        side="BUY",
        target_share_micros=10 * USD,
        filled_share_micros=0,
        filled_notional_micros=0,
        expired_at_ms=5,
        config_version=None,
    )
    expired = with_expiry(later, expiry)
    assert (expired.status, expired.expired_at_ms, expired.filled_share_micros) == ("EXPIRED", 5, 1 * USD)
