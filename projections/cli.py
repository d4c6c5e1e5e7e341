"""``copybot project`` and ``copybot api``: the read side's two commands (parse, call the library, report).

``python -m projections.consumer`` and ``python -m projections.api`` run the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import sys

from sqlalchemy.exc import SQLAlchemyError

from projections.api import TOKEN_ENV, KafkaConfigGateway, create_app
from projections.consumer import MAX_RECORDS, ProjectionResult, project
from projections.store import DEFAULT_DB, StoreError
from streams.kafka import KafkaUnavailable, TopicError, kafka_errors
from streams.settings import Settings, SettingsError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``copybot project`` and ``copybot api``."""
    add_project_parser(subparsers)
    add_api_parser(subparsers)


# --- copybot project --------------------------------------------------------------------------------


def add_project_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``copybot project``."""
    parser = subparsers.add_parser(
        "project",
        help="materialize copy attempts, config changes and snapshots into SQL (SQLite or PostgreSQL)",
        description=(
            "Consume copy-attempts, config-changes and portfolio-snapshots and write them into SQL tables "
            "(projections/rows.py describes them), with the consumed offsets in the same transaction. "
            "Resumes from the stored offsets; safe to kill at any time. Settings from COPYBOT_* "
            "(COPYBOT_BOOTSTRAP, COPYBOT_TOPIC_PREFIX)."
        ),
    )
    _project_arguments(parser)
    parser.set_defaults(func=_cmd_project)


def _project_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"a SQLite file path or a postgresql://user:pass@host/db URL (default {DEFAULT_DB})",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="recreate the tables and re-consume everything"
    )
    parser.add_argument("--once", action="store_true", help="stop when caught up to the ends seen at start")
    parser.add_argument(
        "--max-records", type=int, default=MAX_RECORDS, help="messages per transaction (default %(default)s)"
    )


def _cmd_project(args: argparse.Namespace) -> int:
    from streams.kafka.client import quiet_kafka_logs

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"copybot project: {exc}", file=sys.stderr)
        return 2
    quiet_kafka_logs()

    async def run() -> ProjectionResult:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await project(
            settings, args.db, rebuild=args.rebuild, once=args.once, stop=stop, max_records=args.max_records
        )

    try:
        with kafka_errors(f"cannot read from Kafka at {settings.bootstrap}"):
            result = asyncio.run(run())
    except SQLAlchemyError as exc:
        print(f"copybot project: database {args.db!r}: {exc}", file=sys.stderr)
        return 2
    except (StoreError, TopicError) as exc:
        print(f"copybot project: {exc}", file=sys.stderr)
        return 2
    except KafkaUnavailable as exc:
        print(f"copybot project: {exc}", file=sys.stderr)
        return 1
    print(f"copybot project: {result.describe()}", file=sys.stderr)
    return 0


def project_main(argv: list[str] | None = None) -> int:
    """``python -m projections.consumer`` (the same as ``copybot project``)."""
    parser = argparse.ArgumentParser(prog="copybot project")
    _project_arguments(parser)
    return _cmd_project(parser.parse_args(argv))


# --- copybot api ------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_api_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``copybot api``."""
    parser = subparsers.add_parser(
        "api",
        help="serve the HTTP API and the dashboard over the projection database",
        description=(
            "Serve the JSON API (docs at /docs) and the dashboard (/, /config, /users/{id}) over the tables "
            "written by `copybot project`. Config writes are validated like the worker does and published to "
            "Kafka (COPYBOT_BOOTSTRAP, COPYBOT_TOPIC_PREFIX). Writes need 'Authorization: Bearer <token>' "
            f"when {TOKEN_ENV} is set; a non-loopback --host requires it."
        ),
    )
    _api_arguments(parser)
    parser.set_defaults(func=_cmd_api)


def _api_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", default=DEFAULT_DB, help=f"SQLite path or postgresql:// URL (default {DEFAULT_DB})"
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from streams.kafka.client import quiet_kafka_logs

    name = "copybot api"
    token = os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(args.host):
        print(
            f"{name}: refusing to bind {args.host} (not loopback) without {TOKEN_ENV}: set a token so config "
            "writes need 'Authorization: Bearer <token>', or bind 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    quiet_kafka_logs()
    try:
        app = create_app(args.db, KafkaConfigGateway(settings), token)
    except Exception as exc:  # an unusable database: say which
        print(f"{name}: database {args.db!r}: {exc}", file=sys.stderr)
        return 2
    print(f"{name}: serving http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def api_main(argv: list[str] | None = None) -> int:
    """``python -m projections.api`` (the same as ``copybot api``)."""
    parser = argparse.ArgumentParser(prog="copybot api")
    _api_arguments(parser)
    return _cmd_api(parser.parse_args(argv))
