"""A local fake of Polymarket's Data API (``/activity``, ``/positions``) and Gamma (``/markets``).

Rows are kept as JSON **text**, so a test decides whether a number goes over the wire as ``0.42`` or
``"0.42"``, exactly as the documented schemas allow. The fake follows the documented behaviour the adapter
relies on: ``/activity`` filters ``type`` and ``start`` (inclusive, epoch seconds), sorts by timestamp
ascending (stable), clamps ``limit`` to the maximum and refuses an ``offset`` past the maximum with 400;
Gamma's ``/markets`` answers ``closed=false`` unless told ``closed=true``. Failures are scripted: the next
request to a path can be made to answer 429 (with ``Retry-After``) or 500.

Runs in a thread on a free port (``with FakePolymarket() as fake: fake.url``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Scripted:
    """A response the fake gives instead of the real one, once."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"error": "scripted"}'


@dataclass
class FakeState:
    activity: dict[str, list[str]] = field(default_factory=dict)
    """wallet -> activity rows (JSON texts), in the order the venue indexed them."""
    positions: dict[str, list[str]] = field(default_factory=dict)
    markets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """conditionId -> Gamma market object."""
    scripted: dict[str, list[Scripted]] = field(default_factory=dict)
    """path -> responses to give before the real ones."""
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    max_limit: int = 500
    max_offset: int = 5000


def _activity(state: FakeState, query: dict[str, list[str]]) -> tuple[int, str]:
    offset = int(query.get("offset", ["0"])[0])
    if offset > state.max_offset:
        return 400, json.dumps({"error": f"offset {offset} is past the maximum {state.max_offset}"})
    limit = min(int(query.get("limit", ["100"])[0]), state.max_limit)
    start = int(query.get("start", ["0"])[0])
    rows = []
    for text in state.activity.get(query.get("user", [""])[0].lower(), []):
        try:
            row = json.loads(text)
            stamp = int(row["timestamp"])
        except (ValueError, KeyError, TypeError):
            rows.append((start, text))  # a malformed row is served where it was indexed
            continue
        if row.get("type") == query.get("type", ["TRADE"])[0] and stamp >= start:
            rows.append((stamp, text))
    rows.sort(key=lambda pair: pair[0])  # stable: identical timestamps keep their indexing order
    return 200, "[" + ",".join(text for _, text in rows[offset : offset + limit]) + "]"


def _positions(state: FakeState, query: dict[str, list[str]]) -> tuple[int, str]:
    offset, limit = int(query.get("offset", ["0"])[0]), int(query.get("limit", ["100"])[0])
    rows = state.positions.get(query.get("user", [""])[0].lower(), [])
    return 200, "[" + ",".join(rows[offset : offset + limit]) + "]"


def _markets(state: FakeState, query: dict[str, list[str]]) -> tuple[int, str]:
    wanted = set(query.get("condition_ids", []))
    closed = query.get("closed", ["false"])[0] == "true"
    found = [m for c, m in state.markets.items() if c in wanted and bool(m.get("closed")) == closed]
    return 200, json.dumps(found)


ROUTES = {"/activity": _activity, "/positions": _positions, "/gamma/markets": _markets}


class FakePolymarket:
    """Both APIs on one port: the Data API at ``url``, Gamma at ``url + "/gamma"``."""

    def __init__(self) -> None:
        self.state = FakeState()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                with fake.lock:
                    fake.state.requests.append((parts.path, query))
                    queue = fake.state.scripted.get(parts.path)
                    scripted = queue.pop(0) if queue else None
                    route = ROUTES.get(parts.path)
                    if scripted is not None:
                        status, body, headers = scripted.status, scripted.body, scripted.headers
                    elif route is None:
                        status, body, headers = 404, '{"error": "not found"}', {}
                    else:
                        status, body = route(fake.state, query)
                        headers = {}
                payload = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads ``state.requests``."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def gamma_url(self) -> str:
        return self.url + "/gamma"

    def requests_to(self, path: str) -> list[dict[str, list[str]]]:
        with self.lock:
            return [q for p, q in self.state.requests if p == path]

    def __enter__(self) -> FakePolymarket:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def fake_polymarket() -> Iterator[FakePolymarket]:
    with FakePolymarket() as fake:
        yield fake
