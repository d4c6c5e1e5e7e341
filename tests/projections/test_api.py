"""The HTTP API and pages (projections/api.py) over a SQLite projection of the sample tape.

The database is filled by the projection code itself (decode -> BatchProjection -> store, as the consumer
does, without Kafka) from ``copybot replay`` of the sample tape; config writes go to an in-memory gateway
that validates and "publishes" exactly like ``copybot config set-*``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from models.config import RULES, ConfigStore, Scope
from projections import api, cli
from projections.consumer import Decoded, decode_attempt, project_batch
from projections.store import ProjectionStore
from streams.configedit import Assignment, SetResult, fold
from streams.kafka.client import KafkaUnavailable
from streams.settings import COPY_ATTEMPTS
from tests.projections.sample import MemoryGateway, Sample

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def sample() -> Sample:
    return Sample()


@pytest.fixture(scope="module")
def db(sample: Sample, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("api") / "projection.db")
    sample.project_into(path)
    return path


@pytest.fixture
def gateway(sample: Sample) -> MemoryGateway:
    return MemoryGateway(fold(sample.changes).store)


@pytest.fixture
def client(db: str, gateway: MemoryGateway) -> Iterator[TestClient]:
    with TestClient(api.create_app(db, gateway)) as c:
        yield c


# --- summary ------------------------------------------------------------------------------------------


def test_summary_equals_the_replay_of_the_sample_tape(client: TestClient, sample: Sample) -> None:
    # Given the sample tape replayed by the decision core and projected into SQLite
    last: dict[str, dict[str, Any]] = {}
    for a in sample.attempts:
        last[a["followedUserId"]] = a
    # When the summary is read
    response = client.get("/api/budgeted-dynamic/summary")
    # Then each leader's configured figures, E_u, r_u and counts are the replay's
    assert response.status_code == 200
    rows = {r["id"]: r for r in response.json()}
    assert set(rows) == set(sample.summary)
    for leader, s in sample.summary.items():
        r = rows[leader]
        assert r["label"] == s.label
        assert r["sizingMode"] == s.sizing_mode
        assert r["budgetedDynamicActive"] == s.budgeted_dynamic_active
        assert r["budgetEnforcement"] == s.budget_enforcement
        assert r["budgetUsdc"] == s.budget_micros / 1e6
        assert r["leaderExposureUsdc"] == (
            None if s.leader_exposure_micros is None else s.leader_exposure_micros / 1e6
        )
        assert (r["executed"], r["skipped"], r["trades"]) == (s.executed, s.skipped, s.trades)
        # r_u as of the leader's last decision; our exposure (with what open orders reserve) and PnL from
        # its final leaderBook, which is the replay's end state exactly
        a = last[leader]
        assert r["rU"] == pytest.approx(a["sizing"]["rU"] * 100)
        ours = s.our_exposure_micros + s.reserved_micros
        assert r["execExposureUsdc"] == ours / 1e6
        assert (r["realizedPnlUsdc"], r["unrealizedPnlUsdc"]) == (
            s.realized_pnl_micros / 1e6,
            s.unrealized_pnl_micros / 1e6,
        )
        assert (r["reservedUsdc"], r["openOrders"]) == (s.reserved_micros / 1e6, s.open_orders)
        if s.headroom_micros is None:
            assert r["budgetHeadroomUsdc"] is None
        else:
            assert r["budgetHeadroomUsdc"] == (s.budget_micros - ours) / 1e6
        if s.budget_micros > 0:
            assert r["utilizationPct"] == pytest.approx(ours / s.budget_micros * 100)


def test_summary_rates_are_percent(client: TestClient, gateway: MemoryGateway) -> None:
    rows = client.get("/api/budgeted-dynamic/summary").json()
    for r in rows:
        cfg = gateway.store.for_leader(r["id"])
        assert r["rMin"] == cfg.budget_r_min_bps / 100
        assert r["rMax"] == cfg.budget_r_max_bps / 100


# --- a leader ------------------------------------------------------------------------------------------


def test_user_detail(client: TestClient, sample: Sample) -> None:
    leader = "whale"
    mine = [a for a in sample.attempts if a["followedUserId"] == leader]
    detail = client.get(f"/api/users/{leader}").json()
    assert detail["summary"]["id"] == leader
    recent = detail["recentAttempts"]
    assert len(recent) == min(api.RECENT_ATTEMPTS, len(mine))
    assert [a["decidedAtMs"] for a in recent] == sorted((a["decidedAtMs"] for a in recent), reverse=True)
    assert recent[0]["decidedAtMs"] == max(a["decidedAtMs"] for a in mine)
    assert detail["skipReasons"] == dict(sample.result.tallies[leader].skip_reasons)
    assert list(detail["skipReasons"].values()) == sorted(detail["skipReasons"].values(), reverse=True)
    assert all(k in ("rMin", "rMax", "min", "max", "bankroll", "hardCap") for k in detail["clamps"])
    history = detail["exposureHistory"]
    assert 0 < len(history) <= api.HISTORY_POINTS
    assert [p["t"] for p in history] == sorted(p["t"] for p in history)
    assert history[-1]["t"] == recent[0]["decidedAtMs"]
    books = detail["pnlHistory"]
    assert books
    assert books[-1]["realizedPnlUsdc"] == detail["summary"]["realizedPnlUsdc"]


def test_unknown_user_is_404(client: TestClient) -> None:
    assert client.get("/api/users/nobody").status_code == 404
    assert client.get("/users/nobody").status_code == 404


# --- copy attempts ------------------------------------------------------------------------------------


def test_copy_attempts_filters_and_totals(client: TestClient, sample: Sample) -> None:
    attempts = sample.attempts
    assert client.get("/api/copy-attempts").json()["total"] == len(attempts)
    page = client.get("/api/copy-attempts", params={"leader": "alice", "decision": "SKIP"}).json()
    expected = [a for a in attempts if a["followedUserId"] == "alice" and a["decision"] == "SKIP"]
    assert page["total"] == len(expected)
    assert all(a["followedUserId"] == "alice" and a["decision"] == "SKIP" for a in page["items"])
    reasons = Counter(a["reasonCodes"][0] for a in attempts if a["reasonCodes"])
    reason, count = reasons.most_common(1)[0]
    assert client.get("/api/copy-attempts", params={"reason": reason}).json()["total"] == count
    times = sorted(a["decidedAtMs"] for a in attempts)
    lo, hi = times[len(times) // 4], times[len(times) // 2]
    window = client.get("/api/copy-attempts", params={"from": lo, "to": hi}).json()
    assert window["total"] == sum(lo <= t < hi for t in times)


def test_offset_and_cursor_pagination_cover_every_attempt_once(client: TestClient, sample: Sample) -> None:
    leader = "bob"
    expected = {a["attemptId"] for a in sample.attempts if a["followedUserId"] == leader}
    by_offset: list[str] = []
    offset = 0
    while True:
        page = client.get(
            "/api/copy-attempts", params={"leader": leader, "limit": 37, "offset": offset}
        ).json()
        by_offset += [a["attemptId"] for a in page["items"]]
        if len(page["items"]) < 37:
            break
        offset += 37
    by_cursor: list[str] = []
    params: dict[str, Any] = {"leader": leader, "limit": 37}
    while True:
        page = client.get("/api/copy-attempts", params=params).json()
        by_cursor += [a["attemptId"] for a in page["items"]]
        if page["nextCursor"] is None:
            break
        params["cursor"] = page["nextCursor"]
    assert by_offset == by_cursor
    assert len(by_cursor) == len(set(by_cursor)) == len(expected)
    assert set(by_cursor) == expected


def test_bad_attempt_queries_are_422(client: TestClient) -> None:
    assert client.get("/api/copy-attempts", params={"cursor": "nonsense"}).status_code == 422
    assert client.get("/api/copy-attempts", params={"limit": 5000}).status_code == 422
    assert client.get("/api/copy-attempts", params={"decision": "MAYBE"}).status_code == 422
    assert client.get("/api/copy-attempts", params={"from": "yesterday"}).status_code == 422


# --- config -------------------------------------------------------------------------------------------


def test_get_config(client: TestClient, gateway: MemoryGateway) -> None:
    body = client.get("/api/config/global").json()
    assert body["sections"] == gateway.store.global_docs
    assert body["configVersion"] == gateway.store.version
    assert (
        body["effective"]["budgetedDynamicEnabled"] == gateway.store.global_effective.budgeted_dynamic_enabled
    )
    user = client.get("/api/config/user/whale").json()
    assert user["sections"] == gateway.store.user_docs["whale"]
    assert user["effective"]["budgetUsdcMicros"] == gateway.store.for_leader("whale").budget_usdc_micros
    assert client.get("/api/config/user/newcomer").json()["sections"] == {}


def test_post_user_config_publishes_a_change_that_keeps_other_keys(
    client: TestClient, gateway: MemoryGateway
) -> None:
    before = dict(gateway.store.user_docs["whale"].get("sizing", {}))
    assert before, "the sample tape sets whale overrides"
    response = client.post(
        "/api/config/user/whale",
        json={"sizing": {"budgetRMinBps": 1, "budgetRMaxBps": 2, "minLeaderTradeNotionalMicros": None}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["changeId"] == "api-change-1"
    assert body["warnings"] == []
    (published,) = gateway.published
    assert published["scope"] == "USER"
    assert published["followedUserId"] == "whale"
    expected = {k: v for k, v in before.items() if k != "minLeaderTradeNotionalMicros"}
    assert published["sizing"] == {**expected, "budgetRMinBps": 1, "budgetRMaxBps": 2}
    assert gateway.store.for_leader("whale").budget_r_max_bps == 2


def test_post_returns_warnings(client: TestClient, gateway: MemoryGateway) -> None:
    response = client.post("/api/config/user/alice", json={"sizing": {"budgetedDynamicEnabled": True}})
    assert response.status_code == 200
    assert any("GLOBAL only" in w for w in response.json()["warnings"])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"sizing": {"budgetRMinBps": 500, "budgetRMaxBps": 100}}, "sizing.budgetRMinBps: must be ≤"),
        ({"sizing": {"budgetUsdcMicros": -1}}, "sizing.budgetUsdcMicros: must be ≥ 0"),
        ({"sizing": {"budgetUsdcMicros": "60"}}, "sizing.budgetUsdcMicros: expected an integer"),
        ({"sizing": {"sizingMode": "yolo"}}, "sizing.sizingMode: expected one of"),
        ({"sizing": {"noSuchKey": 1}}, "sizing.noSuchKey: unknown key"),
        ({"guardrails": {"": None}}, "guardrails.: unknown key"),
        ({"nope": {"x": 1}}, "nope: unknown section"),
        ({"sizing": 5}, "sizing: expected an object"),
        ({}, "nothing to change"),
        ([1, 2], "body: expected a JSON object"),
        ({"sizing": {"budgetUsdcMicros": 2**64}}, "body: cannot be published as JSON"),
    ],
)
def test_invalid_global_config_is_422_with_per_key_errors(
    client: TestClient, gateway: MemoryGateway, body: Any, expected: str
) -> None:
    response = client.post("/api/config/global", json=body)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert any(expected in e for e in errors), errors
    assert gateway.published == []


def test_invalid_user_config_names_the_leader_and_key(client: TestClient, gateway: MemoryGateway) -> None:
    response = client.post("/api/config/user/alice", json={"buffering": {"enabled": True}})
    assert response.status_code == 422
    assert response.json()["errors"] == ["buffering: section not allowed in a USER change"]
    response = client.post(
        "/api/config/user/alice", json={"sizing": {"sizingMode": "budgetedDynamic", "budgetUsdcMicros": 0}}
    )
    if gateway.store.global_effective.budgeted_dynamic_enabled:
        assert response.status_code == 422
        assert response.json()["errors"] == [
            "leader alice: sizing.budgetUsdcMicros: "
            "must be > 0 while Budgeted Dynamic is active for this leader"
        ]
    assert client.post("/api/config/global", content=b"{not json").status_code == 422
    assert gateway.published == []


def test_writes_need_the_token_when_one_is_set(db: str, gateway: MemoryGateway) -> None:
    with TestClient(api.create_app(db, gateway, token=TOKEN)) as c:
        body = {"sizing": {"budgetRMaxBps": 120}}
        assert c.post("/api/config/global", json=body).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert c.post("/api/config/global", json=body, headers=wrong).status_code == 401
        assert gateway.published == []
        right = {"Authorization": f"Bearer {TOKEN}"}
        assert c.post("/api/config/global", json=body, headers=right).status_code == 200
        assert c.post("/api/config/user/bob", json=body, headers=wrong).status_code == 401
        assert c.get("/api/config/global").status_code == 200  # reads stay open
        assert "api-token" in c.get("/config").text
    assert len(gateway.published) == 1


def test_non_loopback_bind_without_a_token_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(api.TOKEN_ENV, raising=False)
    assert cli.api_main(["--host", "0.0.0.0", "--db", ":memory:"]) == 2
    assert "refusing" in capsys.readouterr().err
    assert cli.is_loopback("127.0.0.1")
    assert cli.is_loopback("::1")
    assert cli.is_loopback("localhost")
    assert not cli.is_loopback("0.0.0.0")
    assert not cli.is_loopback("example.com")


# --- ops ----------------------------------------------------------------------------------------------


def test_healthz_and_metrics(client: TestClient, sample: Sample) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    text = client.get("/metrics").text
    executed = sum(a["decision"] == "EXECUTE" for a in sample.attempts)
    assert f'copybot_copy_attempts_total{{decision="EXECUTE"}} {executed}' in text
    assert f'copybot_copy_attempts_total{{decision="SKIP"}} {len(sample.attempts) - executed}' in text
    assert 'copybot_leader_utilization_ratio{leader="alice"}' in text
    realized = sample.summary["alice"].realized_pnl_micros / 1e6
    assert f'copybot_leader_realized_pnl_usdc{{leader="alice"}} {realized}' in text
    assert f'copybot_projection_next_offset{{topic="{COPY_ATTEMPTS}",partition="0"}}' in text


def test_openapi_lists_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/budgeted-dynamic/summary",
        "/api/users/{leader_id}",
        "/api/copy-attempts",
        "/api/config/global",
        "/api/config/user/{leader_id}",
        "/healthz",
        "/metrics",
    ):
        assert path in paths
    assert client.get("/docs").status_code == 200


# --- pages --------------------------------------------------------------------------------------------


def test_pages_render(client: TestClient, sample: Sample) -> None:
    overview = client.get("/").text
    for leader in sample.summary:
        assert f"data-leader='{leader}'" in overview
    config = client.get("/config", params={"leader": "whale"}).text
    for field in ("g-budgetedDynamicEnabled", "g-sizingMode", "g-budgetUsd", "g-rMinPct", "g-rMaxPct"):
        assert f"id='{field}'" in config
    assert "id='u-budgetEnforcement'" in config
    assert "inherit (" in config
    assert "id='summary'" in config
    user = client.get("/users/alice").text
    for tile in ("tile-e-u", "tile-b-u", "tile-r-u"):
        assert tile in user
    assert "<svg id='exposure-chart'" in user
    assert "recent-attempts" in user
    assert "skip-reasons" in user


def test_empty_database_serves_empty_pages(tmp_path: Path, gateway: MemoryGateway) -> None:
    with TestClient(api.create_app(str(tmp_path / "empty.db"), gateway)) as c:
        assert c.get("/api/budgeted-dynamic/summary").json() == []
        assert c.get("/api/copy-attempts").json()["total"] == 0
        assert c.get("/").status_code == 200
        assert c.get("/config").status_code == 200


# --- the API process never imports Faust ---------------------------------------------------------------


def test_the_api_never_imports_faust() -> None:
    code = (
        "import sys, projections.api, projections.web; print('faust' in sys.modules, 'mode' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=os.environ, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"], result.stderr


class DownGateway:
    """Kafka unreachable."""

    async def load(self) -> ConfigStore:
        raise KafkaUnavailable("cannot reach Kafka at 127.0.0.1:1: refused")

    async def submit(self, scope: Scope, leader: str | None, assignments: Sequence[Assignment]) -> SetResult:
        raise KafkaUnavailable("cannot reach Kafka at 127.0.0.1:1: refused")


def test_kafka_down_reads_answer_and_a_write_is_503_with_the_reason(db: str) -> None:
    # Issue 9: config reads come from the projection tables, so only a write needs Kafka
    with TestClient(api.create_app(db, DownGateway())) as c:
        assert c.get("/api/config/global").status_code == 200
        response = c.post("/api/config/global", json={"sizing": {"budgetRMaxBps": 100}})
        assert response.status_code == 503
        assert "cannot reach Kafka" in response.json()["errors"][0]
        page = c.get("/config")
        assert page.status_code == 200
        assert "config-problem" not in page.text
        assert c.get("/api/budgeted-dynamic/summary").status_code == 200  # reads need only the database


# --- the contract: one error shape, Allow, declared bodies (issue 9) ----------------------------------


def test_a_method_a_path_does_not_answer_is_405_with_every_method_it_does(client: TestClient) -> None:
    for method, path, allow in (
        ("DELETE", "/api/config/global", "GET, POST"),
        ("OPTIONS", "/api/config/user/alice", "GET, POST"),
        ("PUT", "/api/users/alice", "GET"),
        ("POST", "/api/copy-attempts", "GET"),
    ):
        response = client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allow, (method, path)
        assert response.json() == {"errors": ["Method Not Allowed"]}


def test_every_error_has_the_one_error_shape(client: TestClient) -> None:
    for response in (
        client.get("/api/users/nobody"),
        client.get("/api/copy-attempts", params={"limit": 0}),
        client.get("/api/copy-attempts", params={"cursor": "nonsense"}),
        client.get("/api/nowhere"),
        client.post("/api/config/global", json={"sizing": {}}),
        client.post("/api/config/user/%20", json={"sizing": {"budgetRMaxBps": 1}}),
    ):
        assert response.status_code in (404, 422), response.text
        body = response.json()
        assert list(body) == ["errors"]
        assert body["errors"]
        assert all(isinstance(e, str) for e in body["errors"])
    assert client.get("/api/copy-attempts", params={"decision": "MAYBE"}).json() == {
        "errors": ["decision: Input should be 'EXECUTE' or 'SKIP'"]
    }
    assert client.get("/api/copy-attempts", params={"cursor": "nonsense"}).json() == {
        "errors": ["cursor: expected the nextCursor of a previous page, {decidedAtMs}:{attemptId}"]
    }


def test_the_document_declares_the_config_bodies_and_every_error(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for path, model in (
        ("/api/config/global", "GlobalConfigEdits"),
        ("/api/config/user/{leader_id}", "UserConfigEdits"),
    ):
        post = document["paths"][path]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}
        assert schemas[model]["examples"]
        for status in ("200", "404", "422", "503"):
            assert status in post["responses"], (path, status)
    assert set(schemas["SizingEdit"]["properties"]) == set(RULES["sizing"])
    for path in document["paths"].values():
        for operation in path.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Errors"}


def test_integral_numbers_are_integers_in_a_body(client: TestClient, gateway: MemoryGateway) -> None:
    response = client.post("/api/config/user/bob", content=b'{"sizing": {"budgetUsdcMicros": 6.5e7}}')
    assert response.status_code == 200, response.text
    assert gateway.published[-1]["sizing"]["budgetUsdcMicros"] == 65_000_000
    assert (
        client.post("/api/config/user/bob", content=b'{"sizing": {"budgetUsdcMicros": 1.5}}').status_code
        == 422
    )
    too_big = b'{"sizing": {"budgetUsdcMicros": 100000000000000000000000}}'
    assert client.post("/api/config/user/bob", content=too_big).status_code == 422


def test_cursor_pages_see_every_attempt_once_while_attempts_are_inserted(
    db: str, sample: Sample, gateway: MemoryGateway, tmp_path: Path
) -> None:
    # Given a copy of the projected sample and a client paging alice's attempts by cursor
    own = tmp_path / "paging.db"
    shutil.copy(db, own)
    leader = "alice"
    before = {a["attemptId"] for a in sample.attempts if a["followedUserId"] == leader}
    template = next(a for a in sample.attempts if a["followedUserId"] == leader)
    times = sorted(a["decidedAtMs"] for a in sample.attempts if a["followedUserId"] == leader)
    store = ProjectionStore(str(own))
    inserted: list[str] = []

    def insert_two(page: int, offset: int) -> None:
        """The projector inserts a newer attempt and one older than anything paged yet, between pages."""
        lines = []
        for n, at in ((0, times[-1] + 1_000 + page), (1, times[len(times) // 2] - page)):
            attempt = {
                **template,
                "attemptId": f"late-{page}-{n}",
                "groupKey": f"late-{page}-{n}",
                "decidedAtMs": at,
            }
            lines.append(orjson.dumps(attempt))
            inserted.append(attempt["attemptId"])
        decoded: list[Decoded] = [
            (COPY_ATTEMPTS, 1, offset + i, decode_attempt(line), line.decode())
            for i, line in enumerate(lines)
        ]
        project_batch(store, decoded, {(COPY_ATTEMPTS, 1): offset + len(lines)})

    seen: list[str] = []
    with TestClient(api.create_app(str(own), gateway)) as c:
        params: dict[str, Any] = {"leader": leader, "limit": 17}
        page = 0
        while True:
            body = c.get("/api/copy-attempts", params=params).json()
            seen += [a["attemptId"] for a in body["items"]]
            if body["nextCursor"] is None:
                break
            params["cursor"] = body["nextCursor"]
            page += 1
            insert_two(page, 2 * page)
    store.close()
    # Then no attempt was seen twice, every attempt there at the start was seen, in cursor order
    assert len(seen) == len(set(seen))
    assert before <= set(seen)
    assert set(seen) - before <= set(inserted)
    assert page > 5
    assert len(inserted) == 2 * page
