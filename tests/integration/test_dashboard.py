"""The dashboard in a real browser (headless Debian Chromium driven by Playwright) against a live system:
a real broker, a worker, the projection consumer and the API, each its own process.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``) and the ``playwright`` package; Playwright's
own browser download is never used.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from projections import api
from streams.devbroker import broker
from streams.kafka.admin import ensure_topics
from streams.kafka.client import CopybotClient
from streams.settings import CONFIG_CHANGES, Settings
from tests.factories import trade_wire
from tests.integration.conftest import free_ports, start_or_fail
from tests.integration.live import (
    SAMPLE_TAPE,
    LiveSystem,
    accepted_trades,
    replay_attempts,
    tape_events,
    wait_until,
)
from tests.projections.sample import Sample

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "out" / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LEADER = "bob"
NEW_RATE_PCT = "0.3700%"  # r_min = r_max = 0.37 % forces r_u whatever E_u is
AFTER_TAPE_MS = 1_793_628_369_097 + 60_000  # past the sample tape's last trade and finish tick


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _publish_trade(settings: Settings, n: int) -> str:
    """A new BUY of the leader after the tape, and a tick that closes its window; returns its tradeId."""
    trade_id = f"dashboard-{n}"
    at = AFTER_TAPE_MS + n * 30_000

    async def send() -> None:
        async with CopybotClient(settings, client_id="dashboard-test") as client:
            await client.publish(
                trade_wire(LEADER, at=at, trade_id=trade_id, asset="dash-asset", market=None)
            )
            await client.publish_tick(at + 10_000)
            await client.flush()

    # Playwright's sync API runs an event loop in this thread: publish from a thread of our own
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, send()).result(timeout=60)
    return trade_id


def _largest_holding(leader: str) -> str:
    held = Sample().result.state.leaders[leader].held_share_micros
    return max(held, key=lambda asset: held[asset])


SETTLED_ASSET = _largest_holding(LEADER)
"""The leader's largest holding at the end of the sample tape: its market resolves (won) in the test."""


def _publish_resolution(settings: Settings, tick_ms: int | None) -> None:
    """The leader's largest holding resolves (won); with `tick_ms`, only a tick (the next book boundary:
    resolutions never move the clock)."""
    resolution = {
        "kind": "marketResolved",
        "assetId": SETTLED_ASSET,
        "marketId": None,
        "payoutMicros": 1_000_000,
        "resolvedAtMs": AFTER_TAPE_MS,
    }

    async def send() -> None:
        async with CopybotClient(settings, client_id="dashboard-test") as client:
            if tick_ms is None:
                await client.publish(resolution)
            else:
                await client.publish_tick(tick_ms)
            await client.flush()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, send()).result(timeout=60)


def _summary_of(base: str, leader: str) -> dict[str, Any]:
    rows = httpx.get(f"{base}/api/budgeted-dynamic/summary", timeout=5).json()
    return next(r for r in rows if r["id"] == leader)


@pytest.fixture
def live_api(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[str, LiveSystem]]:
    """The sample tape decided by a worker, projected continuously into SQLite and served by the API."""
    system = LiveSystem(kafka_bootstrap, tmp_path)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        system.worker().start()
        system.publish(SAMPLE_TAPE, "--ordered", "--finish")
        system.attempts_covering(accepted_trades(tape_events(SAMPLE_TAPE)))
        db = str(tmp_path / "dashboard.db")
        env = {k: v for k, v in system.env.items() if k != "COPYBOT_API_TOKEN"}
        processes.append(_spawn(["-m", "projections.consumer", "--db", db], env, tmp_path / "projector.log"))
        (port,) = free_ports(1)
        processes.append(
            _spawn(["-m", "projections.api", "--db", db, "--port", str(port)], env, tmp_path / "api.log")
        )
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            for process in processes:
                if process.poll() is not None:
                    logs = "\n".join(p.read_text() for p in tmp_path.glob("*.log"))
                    raise RuntimeError(f"a process exited:\n{logs[-4000:]}")
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, 60, "the API to answer /healthz")
        expected = len(replay_attempts(SAMPLE_TAPE.read_bytes().splitlines()))

        def projected() -> bool:
            return int(httpx.get(f"{base}/api/copy-attempts?limit=1", timeout=5).json()["total"]) >= expected

        wait_until(projected, 120, "the projector to catch up with the worker", poll_s=0.2)
        yield base, system
    finally:
        for process in reversed(processes):
            _stop(process)
        system.close()


def test_dashboard_sets_an_override_and_shows_the_new_rate(live_api: tuple[str, LiveSystem]) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "install Debian's Chromium: apt-get install -y chromium"
    base, system = live_api
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            posts: list[str] = []
            page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
            page.goto(f"{base}/config?leader={LEADER}")
            rate_cell = page.locator(f"tr[data-leader='{LEADER}'] td.r-u")
            assert rate_cell.inner_text() != NEW_RATE_PCT

            # An invalid override is stopped in the browser, with the error next to its field
            page.select_option("#u-sizingMode", "budgetedDynamic")
            page.fill("#u-rMinPct", "5")
            page.fill("#u-rMaxPct", "1")
            page.fill("#u-budgetUsd", "abc")
            page.click("#u-save")
            assert "r_min must be ≤ r_max" in page.inner_text("#u-rMinPct-error")
            assert "number" in page.inner_text("#u-budgetUsd-error")
            assert posts == []

            # An error only the server finds (the kill switch off makes r_min > r_max pass the UI's checks)
            # comes back as a 422 and is shown next to the field too; nothing is published
            page.uncheck("#g-budgetedDynamicEnabled")
            page.fill("#g-rMinPct", "9")
            page.fill("#g-rMaxPct", "2")
            page.click("#g-save")
            page.wait_for_function("document.getElementById('g-rMinPct-error').textContent.length > 0")
            assert "must be ≤ budgetRMaxBps" in page.inner_text("#g-rMinPct-error")
            assert posts == [f"{base}/api/config/global"]

            # A valid override is published
            page.goto(f"{base}/config?leader={LEADER}")
            page.select_option("#u-sizingMode", "budgetedDynamic")
            page.fill("#u-budgetUsd", "60")
            page.fill("#u-rMinPct", "0.37")
            page.fill("#u-rMaxPct", "0.37")
            page.click("#u-save")
            page.wait_for_function("document.getElementById('u-status').textContent.includes('Published')")
            assert page.inner_text("#u-rMinPct-error") == ""

            # Once the worker and the projector catch up, the summary shows the new r_u: a new trade of the
            # leader is decided under the new config (another is sent if one was decided before the worker
            # saw the change)
            state: dict[str, Any] = {"n": 0, "pending": None}

            def new_rate_shown() -> bool:
                page.reload()
                if page.locator(f"tr[data-leader='{LEADER}'] td.r-u").inner_text() == NEW_RATE_PCT:
                    return True
                recent = httpx.get(
                    f"{base}/api/copy-attempts", params={"leader": LEADER, "limit": 5}, timeout=5
                ).json()["items"]
                decided = any(state["pending"] in a["tradeIds"] for a in recent)
                if state["pending"] is None or decided:
                    state["n"] += 1
                    state["pending"] = _publish_trade(system.settings, state["n"])
                return False

            wait_until(
                new_rate_shown, 120, f"r_u {NEW_RATE_PCT} for {LEADER} in the summary table", poll_s=0.5
            )
            assert page.locator(f"tr[data-leader='{LEADER}'] td.r-min").inner_text() == "0.37%"
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            # The leader's page shows the tiles, the chart (exposure, budget, PnL), PnL and its positions
            page.goto(f"{base}/users/{LEADER}")
            assert page.inner_text("#tile-r-u .v") == NEW_RATE_PCT
            for tile in ("#tile-e-u", "#tile-b-u", "#tile-headroom", "#tile-utilization"):
                assert page.locator(tile).count() == 1
            for tile in ("#tile-realized-pnl", "#tile-unrealized-pnl", "#tile-reserved", "#tile-open-orders"):
                assert page.inner_text(f"{tile} .v").startswith(("$", "-$", "0"))
            assert page.locator("#exposure-chart polyline").count() == 3
            assert page.locator("#pnl-line").count() == 1
            assert "marks move after fills" in page.inner_text("#hard-note")
            assert page.locator("#positions tbody tr").filter(has_text=SETTLED_ASSET).count() == 1
            page.screenshot(path=str(ARTIFACTS / "dashboard-user.png"), full_page=True)

            # A resolution of a market the leader holds settles the position and frees its headroom
            before = _summary_of(base, LEADER)
            _publish_resolution(system.settings, None)
            ticks = iter(range(AFTER_TAPE_MS + 10_000_000, AFTER_TAPE_MS + 20_000_000, 10_000))

            def settled() -> bool:
                page.reload()
                shown = page.locator("#settlements tbody tr").filter(has_text=SETTLED_ASSET).count() == 1
                if shown and _summary_of(base, LEADER)["bookAsOfMs"] != before["bookAsOfMs"]:
                    return True
                _publish_resolution(system.settings, next(ticks))  # a book follows the next boundary
                return False

            wait_until(settled, 120, f"the settlement of {SETTLED_ASSET} on the leader's page", poll_s=0.5)
            after = _summary_of(base, LEADER)
            assert after["budgetHeadroomUsdc"] > before["budgetHeadroomUsdc"]
            assert after["realizedPnlUsdc"] != before["realizedPnlUsdc"]
            assert page.locator("#positions tbody tr").filter(has_text=SETTLED_ASSET).count() == 0
            page.screenshot(path=str(ARTIFACTS / "dashboard-settled.png"), full_page=True)
        finally:
            browser.close()


# --- the broker stopped: the read side answers from the database (issue 9) ---------------------------


def test_with_the_broker_stopped_every_page_and_get_answers_and_a_write_is_503(
    own_broker_settings: broker.BrokerSettings, tmp_path: Path
) -> None:
    # Given the sample tape projected, and an API whose config writes go to a broker that was running
    db = str(tmp_path / "projection.db")
    Sample().project_into(db)
    start_or_fail(own_broker_settings)
    settings = Settings.from_env(
        {"COPYBOT_BOOTSTRAP": broker.bootstrap(own_broker_settings), "COPYBOT_TOPIC_PREFIX": "stopped"}
    )
    asyncio.run(ensure_topics(settings))
    with TestClient(api.create_app(db, api.KafkaConfigGateway(settings))) as client:
        # When the broker is stopped
        assert broker.stop(own_broker_settings)
        # Then every page and every GET of the document still answers from the database
        for path in (
            "/",
            "/config",
            f"/config?leader={LEADER}",
            f"/users/{LEADER}",
            "/api/budgeted-dynamic/summary",
            f"/api/users/{LEADER}",
            f"/api/copy-attempts?leader={LEADER}&limit=5",
            "/api/config/global",
            f"/api/config/user/{LEADER}",
            f"/api/orders?leader={LEADER}",
            "/api/positions",
            "/api/settlements",
            f"/api/users/{LEADER}/books?limit=3",
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/docs",
        ):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[:300])
        assert client.get("/api/config/global").json()["configVersion"] is not None
        gets = [p for p, ops in client.get("/openapi.json").json()["paths"].items() if "get" in ops]
        assert len(gets) == 11
        # and a config write is a 503 in the API's error shape, with nothing published
        response = client.post("/api/config/user/bob", json={"sizing": {"budgetUsdcMicros": 45_000_000}})
        assert response.status_code == 503
        (message,) = response.json()["errors"]
        assert "nothing published" in message
    start_or_fail(own_broker_settings)

    async def published() -> list[bytes]:
        async with CopybotClient(settings, client_id="stopped-check") as client:
            return [r.value async for r in client.read(CONFIG_CHANGES, from_beginning=True, follow=False)]

    assert asyncio.run(published()) == []
