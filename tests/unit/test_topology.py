"""The topology is pure and agrees with Kafka: routing, partitions, copy targets, table keys."""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as kafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from streams.topology import (
    CONFIG_CHANGES,
    SNAPSHOTS,
    TRADES,
    changelog_topic,
    copy_targets,
    leader_partition,
    log_partitions,
    murmur2,
    route,
)
from tests.factories import global_change, shadow, tick, trade


@given(st.binary(max_size=64))
def test_murmur2_is_kafkas_default_partitioner_hash(data: bytes) -> None:
    assert murmur2(data) & 0x7FFFFFFF == int(kafka_murmur2(data)) & 0x7FFFFFFF


def test_leader_partition_matches_known_java_partitions() -> None:
    # Java: Utils.toPositive(Utils.murmur2("alice".getBytes())) % 8, and likewise
    for leader in ("alice", "bob", "carol", "whale", "__global__", "x" * 40):
        assert leader_partition(leader, 8) == (int(kafka_murmur2(leader.encode())) & 0x7FFFFFFF) % 8


def test_route_and_partitions_of_each_kind() -> None:
    t, s, g, k = trade("alice"), shadow("alice"), global_change("c1"), tick(5)
    assert route(t) == (TRADES, "alice")
    assert route(s) == (SNAPSHOTS, "alice")
    assert route(g) == (CONFIG_CHANGES, "GLOBAL")
    assert route(k) == (TRADES, None)
    assert log_partitions(t, 8) == [leader_partition("alice", 8)]
    assert list(log_partitions(k, 8)) == list(range(8))
    assert list(copy_targets(s, 3, 8)) == [3]
    assert list(copy_targets(g, 0, 8)) == list(range(8))


def test_changelog_topic_is_fausts_name() -> None:
    assert changelog_topic("copybot", "partition-state") == "copybot-partition-state-changelog"
