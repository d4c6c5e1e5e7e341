"""aiokafka's failures turned into copybot's :class:`~streams.errors.KafkaUnavailable`, in one place.

Every Kafka call of the edges runs inside :func:`kafka_errors`, so callers (the CLI, the API, the tests)
catch one copybot error and never import aiokafka.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from aiokafka.errors import KafkaError

from streams.errors import KafkaUnavailable

__all__ = ["KafkaUnavailable", "kafka_errors", "quiet_kafka_logs"]


@contextmanager
def kafka_errors(what: str, hint: str = "", *, network: bool = True) -> Iterator[None]:
    """Raise ``KafkaUnavailable(f"{what}: {error}{hint}")`` for a Kafka error inside the block.

    With `network` (the default) a socket error (``OSError``: refused, unreachable) counts too; without it
    only Kafka's own errors do (e.g. around code that also reads a file, whose ``OSError`` is not Kafka's).
    """
    caught: tuple[type[BaseException], ...] = (KafkaError, OSError) if network else (KafkaError,)
    try:
        yield
    except caught as exc:
        raise KafkaUnavailable(f"{what}: {exc}{hint}") from exc


def quiet_kafka_logs() -> None:
    """For commands: aiokafka's own error logs (e.g. each failed connect) would repeat our clear message."""
    if not logging.getLogger().handlers:  # leave an application's logging setup alone
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
