"""``copybot kafka {start,stop,status}`` (also ``python -m streams.devbroker``): the local broker.

See :mod:`streams.devbroker.broker`. Errors are reported as ``error: ...`` (exit code 1), as they always were.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from streams.cli.main import command, dispatch
from streams.devbroker import broker
from streams.devbroker.broker import KAFKA_VERSION


def _settings_from_args(args: argparse.Namespace) -> broker.BrokerSettings:
    settings = broker.BrokerSettings.from_env()
    port = args.port if args.port is not None else settings.port
    controller_port = args.controller_port
    if controller_port is None:
        controller_port = settings.controller_port if args.port is None else port + 1
    data_dir = Path(args.data_dir).expanduser().resolve() if args.data_dir else settings.data_dir
    return dataclasses.replace(settings, port=port, controller_port=controller_port, data_dir=data_dir)


def _cmd_start(args: argparse.Namespace) -> int:
    settings = _settings_from_args(args)
    handle = broker.start(settings, timeout_s=args.timeout)
    if not handle.started_now:
        print(f"Kafka broker already running (pid {handle.pid}) on {handle.bootstrap}")
    print(f"bootstrap servers: {handle.bootstrap}   data: {settings.data_dir}   log: {settings.process_log}")
    return broker.EXIT_RUNNING


def _cmd_stop(args: argparse.Namespace) -> int:
    settings = _settings_from_args(args)
    stopped = broker.stop(settings, timeout_s=args.timeout)
    print("Kafka broker stopped" if stopped else f"Kafka broker of {settings.data_dir} was not running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    settings = _settings_from_args(args)
    pid = broker.running_pid(settings)
    answering = pid is not None and broker.probe(settings.host, settings.port)
    if answering:
        state = "running"
    elif pid is not None:
        state = (
            f"not answering on {broker.bootstrap(settings)} (process alive: starting, or on another port?)"
        )
    else:
        state = "stopped"
    print(f"kafka:     {state}")
    print(f"pid:       {pid if pid is not None else '-'}")
    print(f"bootstrap: {broker.bootstrap(settings)}")
    print(f"data dir:  {settings.data_dir}")
    print(f"version:   {settings.version}")
    return broker.EXIT_RUNNING if answering else broker.EXIT_NOT_RUNNING


def _add_common_options(parser: argparse.ArgumentParser, timeout_default: float | None) -> None:
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"client (PLAINTEXT) port on 127.0.0.1 (default: ${broker.ENV_PORT} or {broker.DEFAULT_PORT})",
    )
    parser.add_argument(
        "--controller-port",
        type=int,
        default=None,
        help=f"KRaft controller port (default: ${broker.ENV_CONTROLLER_PORT} or client port + 1)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"broker data, logs and pid file (default: ${broker.ENV_DATA} or <project>/.kafka-data)",
    )
    if timeout_default is not None:
        parser.add_argument(
            "--timeout",
            type=float,
            default=timeout_default,
            help=f"seconds to wait (default: {timeout_default:.0f})",
        )


def _add_actions(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="kafka_action", metavar="{start,stop,status}", required=True)
    start_parser = actions.add_parser(
        "start",
        help="start the local broker in the background and wait until it is ready",
        description=(
            f"Start a single-node Apache Kafka {KAFKA_VERSION} broker (KRaft) in the background and return "
            "once clients can use it. Fetches the jars with Maven the first time (cache: "
            f"${broker.ENV_CACHE} or <project>/.cache/kafka). Does nothing if it is already running."
        ),
    )
    _add_common_options(start_parser, broker.DEFAULT_START_TIMEOUT_S)
    command(start_parser, _cmd_start, command="error")  # broker errors: "error: ..."
    stop_parser = actions.add_parser(
        "stop",
        help="stop the local broker (controlled shutdown, SIGKILL after the timeout)",
        description="Stop the local broker: SIGTERM, wait for its controlled shutdown, then SIGKILL.",
    )
    _add_common_options(stop_parser, broker.DEFAULT_STOP_TIMEOUT_S)
    command(stop_parser, _cmd_stop, command="error")  # broker errors: "error: ..."
    status_parser = actions.add_parser(
        "status",
        help="show whether the local broker runs (exit code 0 running, 3 not running)",
        description="Print running/stopped, pid, bootstrap address, data dir and version. "
        f"Exit code {broker.EXIT_RUNNING} when running, {broker.EXIT_NOT_RUNNING} when not.",
    )
    _add_common_options(status_parser, None)
    command(status_parser, _cmd_status, command="error")  # broker errors: "error: ..."


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``kafka {start,stop,status}`` subcommand; each action sets ``func(args) -> exit code``."""
    kafka = subparsers.add_parser(
        "kafka",
        help="run a local Apache Kafka broker (no Docker needed)",
        description=(
            f"Run a local single-node Apache Kafka {KAFKA_VERSION} broker for development and tests. "
            "Needs Java 17+, and Maven the first time to fetch the jars."
        ),
    )
    _add_actions(kafka)


def main(argv: list[str] | None = None) -> int:
    """``python -m streams.devbroker {start,stop,status}``."""
    parser = argparse.ArgumentParser(
        prog="python -m streams.devbroker",
        description=f"Run a local single-node Apache Kafka {KAFKA_VERSION} broker for development and tests.",
    )
    _add_actions(parser)
    return dispatch(parser, argv)
