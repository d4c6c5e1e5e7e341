"""Small pieces of the adapter's edges: Retry-After, the base-URL settings, the metrics exposition."""

from __future__ import annotations

import pytest

from streams.errors import SettingsError
from streams.ingest.http import retry_after_seconds
from streams.ingest.metrics import IngestMetrics
from streams.settings import POLYMARKET_DATA_API, POLYMARKET_GAMMA_API, Settings


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    assert retry_after_seconds("7", now_epoch_s=0) == 7.0
    assert retry_after_seconds("Thu, 01 Jan 1970 00:00:30 GMT", now_epoch_s=10) == 20.0
    assert retry_after_seconds("soon", now_epoch_s=0) is None
    assert retry_after_seconds(None, now_epoch_s=0) is None
    assert retry_after_seconds("-3", now_epoch_s=0) == 0.0


def test_base_urls_default_to_polymarket_and_come_from_the_environment() -> None:
    assert (Settings.from_env({}).polymarket_data_api, Settings.from_env({}).polymarket_gamma_api) == (
        POLYMARKET_DATA_API,
        POLYMARKET_GAMMA_API,
    )
    env = {"COPYBOT_POLYMARKET_DATA_API": "http://proxy:8300/", "COPYBOT_POLYMARKET_GAMMA_API": "http://g"}
    settings = Settings.from_env(env)
    assert (settings.polymarket_data_api, settings.polymarket_gamma_api) == ("http://proxy:8300", "http://g")
    with pytest.raises(SettingsError, match="COPYBOT_POLYMARKET_DATA_API"):
        Settings.from_env({"COPYBOT_POLYMARKET_DATA_API": "data-api.polymarket.com"})


def test_metrics_are_prometheus_text_with_escaped_labels() -> None:
    metrics = IngestMetrics()
    metrics.rows_fetched['a"b'] += 3
    metrics.published[("alice", "leaderTrade")] += 2
    metrics.http_errors[("data", "429")] += 1
    metrics.lag_seconds["alice"] = 12.5
    text = metrics.exposition()
    assert 'copybot_ingest_rows_fetched_total{leader="a\\"b"} 3\n' in text
    assert 'copybot_ingest_events_published_total{leader="alice",kind="leaderTrade"} 2\n' in text
    assert 'copybot_ingest_http_errors_total{api="data",status="429"} 1\n' in text
    assert 'copybot_ingest_lag_seconds{leader="alice"} 12.5\n' in text
    assert "# TYPE copybot_ingest_lag_seconds gauge\n" in text


async def test_the_metrics_endpoint_serves_the_exposition() -> None:
    import httpx

    from streams.ingest.metrics import serve_metrics

    metrics = IngestMetrics()
    metrics.polls["alice"] += 1
    server = await serve_metrics(metrics, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert 'copybot_ingest_polls_total{leader="alice"} 1' in response.text
    finally:
        server.close()
        await server.wait_closed()
