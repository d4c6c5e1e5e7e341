"""The live system's settings: one frozen object built once per process from the environment.

Nothing else reads ``os.environ`` for these. Every command takes the same variables:

====================================  ==================  ================================================
variable                              default             meaning
====================================  ==================  ================================================
COPYBOT_BOOTSTRAP                     127.0.0.1:9092      Kafka bootstrap servers
COPYBOT_TOPIC_PREFIX                  copybot             topics are ``{prefix}.leader-trades`` etc.
COPYBOT_PARTITIONS                    8                   partitions of the leader-keyed topics
COPYBOT_APP_ID                        copybot             Faust app id (the worker's consumer group)
COPYBOT_TICKS                         1                   0: the worker sends no wall-clock ticks
COPYBOT_TICK_INTERVAL_MS              100                 wall-clock tick period
COPYBOT_WORKER_DIR                    .cache/worker       Faust data dir (table stores)
COPYBOT_GUARANTEE                     at_least_once       exactly_once is refused (README, Delivery)
COPYBOT_WORKER_WEB_PORT               6066                the worker's web port (health, metrics)
COPYBOT_SESSION_TIMEOUT_MS            3000                a dead worker's partitions move after this
COPYBOT_SEND_TIMEOUT_MS               30000               a send not acknowledged by then stops the worker
COPYBOT_WATCHDOG_MS                   60000               no progress with input waiting → the worker exits
COPYBOT_INSTANCE_ID                   (none)              static group membership (group.instance.id)
COPYBOT_COMPRESSION                   lz4                 the worker's producer codec: lz4, zstd, gzip, none
COPYBOT_POLYMARKET_DATA_API           (Polymarket's)      ``copybot ingest polymarket``: Data API base URL
COPYBOT_POLYMARKET_GAMMA_API          (Polymarket's)      ``copybot ingest polymarket``: Gamma API base URL
====================================  ==================  ================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streams.errors import SettingsError
from streams.topology import (
    CONFIG_CHANGES,
    CONFIG_REPORTS,
    COPY_ATTEMPTS,
    DEAD_LETTERS,
    LEADER_KEYED,
    SINGLE_PARTITION,
    SNAPSHOTS,
    SOURCE_HEADER,
    TRADES,
)

ROOT = Path(__file__).resolve().parents[1]

__all__ = [
    "CONFIG_CHANGES",
    "CONFIG_REPORTS",
    "COPY_ATTEMPTS",
    "DEAD_LETTERS",
    "LEADER_KEYED",
    "ROOT",
    "SINGLE_PARTITION",
    "SNAPSHOTS",
    "SOURCE_HEADER",
    "TRADES",
    "Settings",
    "SettingsError",
]
"""The topic names are defined in :mod:`streams.topology` and the error in :mod:`streams.errors`; they are
importable from here too, where the worker and the projections have always found them."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be ≥ {minimum}")
    return value


POLYMARKET_DATA_API = "https://data-api.polymarket.com"
POLYMARKET_GAMMA_API = "https://gamma-api.polymarket.com"


def _url(env: dict[str, str], name: str, default: str) -> str:
    raw = env.get(name) or default
    if not raw.startswith(("http://", "https://")):
        raise SettingsError(f"{name}={raw!r} is not an http(s) URL")
    return raw.rstrip("/")


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the live system runs and how it is shaped."""

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "copybot"
    partitions: int = 8
    app_id: str = "copybot"
    ticks: bool = True
    tick_interval_ms: int = 100
    worker_dir: Path = ROOT / ".cache" / "worker"
    guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    worker_web_port: int = 6066
    session_timeout_s: float = 3.0
    """A SIGKILLed worker's partitions move after this (docs/failover.md). Heartbeats run every second
    in the consumer's own thread, so a busy event loop does not miss them. Kafka refuses less than the
    broker's group.min.session.timeout.ms (6000 by default; the embedded broker allows 1000): the
    worker then uses that minimum."""
    send_timeout_s: float = 30.0
    watchdog_s: float = 60.0
    instance_id: str | None = None
    compression: Literal["lz4", "zstd", "gzip"] | None = "lz4"
    """Codec of everything the worker produces (attempts, book events, state records, log copies).
    Attempts are ~1.1 KB of JSON each and a backlog batch writes ~5 MB of them: lz4 halves the broker's
    CPU per event and costs the worker ~1 µs (README, Performance). Consumers decompress on their own
    (aiokafka needs cramjam, a dependency)."""
    polymarket_data_api: str = POLYMARKET_DATA_API
    polymarket_gamma_api: str = POLYMARKET_GAMMA_API

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings from `env` (default: the process environment)."""
        e = dict(os.environ if env is None else env)
        guarantee = e.get("COPYBOT_GUARANTEE", "at_least_once")
        if guarantee not in ("at_least_once", "exactly_once"):
            raise SettingsError(f"COPYBOT_GUARANTEE={guarantee!r}: use at_least_once or exactly_once")
        prefix = e.get("COPYBOT_TOPIC_PREFIX", "copybot")
        if not prefix or any(
            c not in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-" for c in prefix
        ):
            raise SettingsError(f"COPYBOT_TOPIC_PREFIX={prefix!r}: use letters, digits, '.', '_' or '-'")
        compression = e.get("COPYBOT_COMPRESSION", "lz4") or "lz4"
        if compression not in ("lz4", "zstd", "gzip", "none"):
            raise SettingsError(f"COPYBOT_COMPRESSION={compression!r}: use lz4, zstd, gzip or none")
        return cls(
            bootstrap=e.get("COPYBOT_BOOTSTRAP", "127.0.0.1:9092"),
            topic_prefix=prefix,
            partitions=_int(e, "COPYBOT_PARTITIONS", 8, minimum=1),
            app_id=e.get("COPYBOT_APP_ID", "copybot"),
            ticks=e.get("COPYBOT_TICKS", "1") not in ("0", "false", "no", "off"),
            tick_interval_ms=_int(e, "COPYBOT_TICK_INTERVAL_MS", 100, minimum=10),
            worker_dir=Path(e.get("COPYBOT_WORKER_DIR", str(ROOT / ".cache" / "worker"))),
            guarantee=guarantee,  # type: ignore[arg-type]
            worker_web_port=_int(e, "COPYBOT_WORKER_WEB_PORT", 6066, minimum=1),
            session_timeout_s=_int(e, "COPYBOT_SESSION_TIMEOUT_MS", 3_000, minimum=1_000) / 1000,
            send_timeout_s=_int(e, "COPYBOT_SEND_TIMEOUT_MS", 30_000, minimum=1_000) / 1000,
            watchdog_s=_int(e, "COPYBOT_WATCHDOG_MS", 60_000, minimum=1_000) / 1000,
            instance_id=e.get("COPYBOT_INSTANCE_ID") or None,
            compression=None if compression == "none" else compression,  # type: ignore[arg-type]
            polymarket_data_api=_url(e, "COPYBOT_POLYMARKET_DATA_API", POLYMARKET_DATA_API),
            polymarket_gamma_api=_url(e, "COPYBOT_POLYMARKET_GAMMA_API", POLYMARKET_GAMMA_API),
        )

    def topic(self, name: str) -> str:
        """The full name of one of copybot's topics, e.g. ``topic(TRADES)`` → ``copybot.leader-trades``."""
        return f"{self.topic_prefix}.{name}"

    def partitions_of(self, name: str) -> int:
        """How many partitions a copybot topic has."""
        return 1 if name in SINGLE_PARTITION else self.partitions
