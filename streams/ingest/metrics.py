"""The adapter's counters, in the Prometheus text exposition format (no client library needed)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field


def _labels(**labels: str) -> str:
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + inner + "}"


@dataclass
class IngestMetrics:
    """What the adapter did, per leader (and per API and status for HTTP errors)."""

    rows_fetched: Counter[str] = field(default_factory=Counter)
    published: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(leader, event kind) -> events published (leader "" for marketResolved: it concerns every leader)."""
    dead_lettered: Counter[str] = field(default_factory=Counter)
    http_errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(api, status or error class) -> responses that were not a usable 200."""
    polls: Counter[str] = field(default_factory=Counter)
    lag_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds between the newest row seen for a leader and the poll that saw it."""
    requests: int = 0

    def exposition(self) -> str:
        """The metrics as Prometheus text (``GET /metrics``)."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

        def per_leader(name: str, kind: str, help_text: str, values: Mapping[str, float]) -> None:
            family(name, kind, help_text, [(_labels(leader=k), v) for k, v in sorted(values.items())])

        per_leader(
            "copybot_ingest_rows_fetched_total",
            "counter",
            "Activity rows fetched from the Data API.",
            self.rows_fetched,
        )
        family(
            "copybot_ingest_events_published_total",
            "counter",
            "Events published (leaderTrade, portfolioSnapshot, marketResolved).",
            [(_labels(leader=k, kind=kind), v) for (k, kind), v in sorted(self.published.items())],
        )
        per_leader(
            "copybot_ingest_dead_letters_total",
            "counter",
            "Rows that could not be mapped (published as dead letters).",
            self.dead_lettered,
        )
        family(
            "copybot_ingest_http_errors_total",
            "counter",
            "HTTP responses or network errors that were not a usable 200.",
            [(_labels(api=a, status=s), v) for (a, s), v in sorted(self.http_errors.items())],
        )
        per_leader("copybot_ingest_polls_total", "counter", "Trade polls completed.", self.polls)
        per_leader(
            "copybot_ingest_lag_seconds",
            "gauge",
            "Poll time minus the timestamp of the newest row seen.",
            self.lag_seconds,
        )
        family("copybot_ingest_http_requests_total", "counter", "HTTP requests sent.", [("", self.requests)])
        return "\n".join(lines) + "\n"


async def serve_metrics(metrics: IngestMetrics, host: str, port: int) -> asyncio.Server:
    """A minimal HTTP server answering every request with the exposition (``GET /metrics``)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        body = metrics.exposition().encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        try:
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
