"""``copybot ingest polymarket``: follow real leaders from Polymarket's public Data API (SPEC 14)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from streams.cli.main import command, command_group
from streams.errors import UsageError
from streams.settings import Settings

DESCRIPTION = """\
Poll Polymarket's public Data API for the leaders in FILE and publish, for each, a leaderTrade per new
trade row (maker fills included), a SHADOW_USER portfolioSnapshot every --snapshot-interval (E_u = the sum
of currentValue over /positions), and a marketResolved per outcome token when a market they traded or
hold is resolved (Gamma). It decides nothing, places no orders and needs no keys.

Where each wallet's scan stands is kept in the compacted topic {prefix}.ingest-checkpoints, so a restart
neither misses nor republishes rows. A wallet seen for the first time starts now (or at --since).
Base URLs: --data-api / --gamma-api, else COPYBOT_POLYMARKET_DATA_API / COPYBOT_POLYMARKET_GAMMA_API.
Exit code 0 on a clean stop, 1 if Kafka cannot be reached, 2 for a bad leaders file or bad options.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``copybot ingest polymarket``."""
    venues = command_group(
        subparsers,
        "ingest",
        title="venues",
        metavar="VENUE",
        help="publish leader activity from a venue's public API (Polymarket)",
    )
    poly = venues.add_parser(
        "polymarket",
        help="follow Polymarket proxy wallets: trades, E_u snapshots, resolutions",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    poly.add_argument("--leaders", required=True, type=Path, metavar="FILE", help="the leaders file (TOML)")
    poly.add_argument("--data-api", metavar="URL", help="Data API base URL")
    poly.add_argument("--gamma-api", metavar="URL", help="Gamma API base URL")
    poly.add_argument(
        "--interval", type=float, metavar="S", help="trade poll interval (default 15 s, or the file's)"
    )
    poly.add_argument("--snapshot-interval", type=float, default=60.0, metavar="S", help="default 60 s")
    poly.add_argument("--resolution-interval", type=float, default=60.0, metavar="S", help="default 60 s")
    poly.add_argument(
        "--since",
        metavar="WHEN",
        help="where a wallet without a checkpoint starts: epoch seconds or ISO time (default: now)",
    )
    poly.add_argument(
        "--lookback", type=int, default=60, metavar="S", help="re-read this much before the newest row (60)"
    )
    poly.add_argument("--rps", type=float, default=50.0, help="Data API requests per second (default 50)")
    poly.add_argument("--once", action="store_true", help="one round for every leader, then exit")
    poly.add_argument(
        "--dry-run", action="store_true", help="print the events as JSON lines; publish and remember nothing"
    )
    poly.add_argument("--record", type=Path, metavar="FILE", help="also write a tape for `copybot replay`")
    poly.add_argument("--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics here")
    command(poly, run)


def parse_since(value: str | None) -> int | None:
    """``--since``: epoch seconds or an ISO-8601 time (UTC unless it says otherwise)."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {value!r}: give epoch seconds or an ISO time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


class Progress:
    """Rows fetched/published per leader on one terminal line (only when stderr is a terminal)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.lines: dict[str, str] = {}

    def __call__(self, state: Any) -> None:
        self.lines[state.leader.name] = (
            f"{state.leader.name} {state.fetched} fetched/{state.published} published"
            + (f"/{state.dead_lettered} bad" if state.dead_lettered else "")
        )
        if self.enabled:
            self.stream.write("\r\x1b[K" + " · ".join(self.lines.values()))
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from streams.ingest.leaders import load_leaders

    settings = Settings.from_env()
    leaders, file_interval = load_leaders(args.leaders)
    since = parse_since(args.since)
    if args.rps <= 0 or args.lookback < 0:
        raise UsageError("--rps must be > 0 and --lookback ≥ 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the poll lines
    try:
        return asyncio.run(_run(args, settings, leaders, file_interval, since))
    except KeyboardInterrupt:
        return 0


async def _run(args: argparse.Namespace, settings: Settings, leaders: Any, interval: Any, since: Any) -> int:
    import httpx

    from streams.ingest.http import PolymarketHttp
    from streams.ingest.metrics import IngestMetrics, serve_metrics
    from streams.ingest.poller import IngestOptions, Ingestor
    from streams.ingest.ratelimit import Buckets, RateLimits
    from streams.ingest.sinks import IngestClient, KafkaSink, Sink, StreamSink, TapeRecorder
    from streams.kafka import quiet_kafka_logs

    options = IngestOptions(
        interval_s=args.interval or interval or 15.0,
        snapshot_interval_s=args.snapshot_interval,
        resolution_interval_s=args.resolution_interval,
        lookback_s=args.lookback,
        since_sec=since,
    )
    metrics = IngestMetrics()
    server = await serve_metrics(metrics, "127.0.0.1", args.metrics_port) if args.metrics_port else None
    async with contextlib.AsyncExitStack() as stack:
        http_client = await stack.enter_async_context(
            httpx.AsyncClient(timeout=30.0, headers={"User-Agent": "copybot-ingest"})
        )
        http = PolymarketHttp(
            http_client,
            args.data_api or settings.polymarket_data_api,
            args.gamma_api or settings.polymarket_gamma_api,
            Buckets(RateLimits(data_api_rps=args.rps), time.monotonic),
            asyncio.sleep,
            metrics,
            wall_clock=time.time,
        )
        sink: Sink
        checkpoints, resolved = {}, set()
        if args.dry_run:
            sink = StreamSink(sys.stdout.buffer, sys.stderr.buffer)
        else:
            quiet_kafka_logs()
            client = await stack.enter_async_context(IngestClient(settings, client_id="copybot-ingest"))
            kafka = KafkaSink(client)
            checkpoints, resolved = await kafka.checkpoints(), await kafka.resolved_markets()
            sink = kafka
        if args.record:
            sink = TapeRecorder(sink, stack.enter_context(args.record.open("ab")))
        ingestor = Ingestor(
            leaders,
            http,
            sink,
            options,
            now_ms=lambda: time.time_ns() // 1_000_000,
            metrics=metrics,
            checkpoints=checkpoints,
            resolved_markets=resolved,
            on_poll=Progress(sys.stderr),
        )
        if args.once:
            await ingestor.run_once()
        else:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await ingestor.run(stop)
    if server is not None:
        server.close()
        await server.wait_closed()
    return 0
