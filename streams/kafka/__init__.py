"""Kafka for copybot's edges: the only package that imports aiokafka (the Faust worker aside).

The public API, all built from :class:`streams.settings.Settings`:

- :class:`CopybotClient` — validate-and-publish input events, read topics and copy attempts back;
- :func:`ensure_topics` / :func:`create_topics` — the topology's topics with the right partition counts;
- :func:`make_consumer`, :func:`make_producer` — the aiokafka clients every reader and writer uses;
- :func:`assign_all`, :func:`topic_partitions`, :func:`at_end`, :func:`read_to_end` — assign every partition
  of a topic, test for its end offsets, read it to its end;
- :func:`kafka_errors` — the one place aiokafka's and the socket's errors become
  :class:`~streams.errors.KafkaUnavailable`.
"""

from streams.kafka.admin import TopicError, create_topics, ensure_topics
from streams.kafka.client import CopybotClient
from streams.kafka.connect import (
    TopicPartition,
    assign_all,
    at_end,
    make_consumer,
    make_producer,
    read_to_end,
    topic_partitions,
)
from streams.kafka.errors import KafkaUnavailable, kafka_errors, quiet_kafka_logs

__all__ = [
    "CopybotClient",
    "KafkaUnavailable",
    "TopicError",
    "TopicPartition",
    "assign_all",
    "at_end",
    "create_topics",
    "ensure_topics",
    "kafka_errors",
    "make_consumer",
    "make_producer",
    "quiet_kafka_logs",
    "read_to_end",
    "topic_partitions",
]
