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
from decimal import Decimal
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

    def __init__(self, port: int = 0) -> None:
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

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
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


# --- a make-believe venue for the README: `python -m tests.ingest.fake_polymarket --port 8300` -------------

DEMO_LEADERS = {"alice": "0x" + "a1" * 20, "bob": "0x" + "b2" * 20}
DEMO_MARKET = "0x" + "e5" * 32
DEMO_TOKENS = ("3001", "3002")


def _demo_row(wallet: str, now: int, n: int, rng: Any) -> str:
    asset = DEMO_TOKENS[n % 2]
    price = rng.choice(["0.35", "0.42", "0.58", "0.61"])
    size = rng.choice(["5", "12.5", "40", "100"])
    usdc = str((Decimal(price) * Decimal(size)).quantize(Decimal("0.000001")))
    return json.dumps(
        {
            "proxyWallet": wallet,
            "timestamp": now,
            "conditionId": DEMO_MARKET,
            "type": "TRADE",
            "size": size,
            "usdcSize": usdc,
            "transactionHash": "0x" + f"{n:064x}",
            "price": price,
            "asset": asset,
            "side": "BUY" if n % 3 else "SELL",
            "outcomeIndex": n % 2,
            "outcome": ["Yes", "No"][n % 2],
            "title": "Make-believe market",
            "slug": "make-believe",
            "eventSlug": "make-believe",
        }
    )


def main(argv: list[str] | None = None) -> int:
    """Serve a venue where alice and bob trade every couple of seconds; the market resolves after a while."""
    import argparse
    import random
    import time

    parser = argparse.ArgumentParser(description="A make-believe Polymarket (Data API + Gamma) for demos.")
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between trades (default 2)")
    parser.add_argument("--resolve-after", type=float, default=300.0, help="seconds until it resolves")
    args = parser.parse_args(argv)
    fake = FakePolymarket(port=args.port)
    rng, started, n = random.Random(7), time.time(), 0
    with fake.lock:
        fake.state.markets[DEMO_MARKET] = {
            "conditionId": DEMO_MARKET,
            "clobTokenIds": json.dumps(list(DEMO_TOKENS)),
            "outcomes": '["Yes", "No"]',
            "outcomePrices": '["0.5", "0.5"]',
            "closed": False,
        }
    print(f"make-believe Polymarket on {fake.url} (Gamma: {fake.gamma_url}); leaders {DEMO_LEADERS}")
    with fake:
        while True:
            time.sleep(args.every)  # a demo's pace, not a test's synchronisation
            n += 1
            with fake.lock:
                for name, wallet in DEMO_LEADERS.items():
                    if name == "alice" or n % 3 == 0:
                        fake.state.activity.setdefault(wallet, []).append(
                            _demo_row(wallet, int(time.time()), n, rng)
                        )
                    fake.state.positions[wallet] = [
                        json.dumps(
                            {"asset": DEMO_TOKENS[0], "conditionId": DEMO_MARKET, "currentValue": "250"}
                        )
                    ]
                if time.time() - started > args.resolve_after:
                    fake.state.markets[DEMO_MARKET].update(
                        closed=True, umaResolutionStatus="resolved", outcomePrices='["1", "0"]'
                    )


if __name__ == "__main__":
    raise SystemExit(main())
