"""Which decision partitions (leader-trades partitions) an input event reaches in the live system."""

from __future__ import annotations

from aiokafka.partitioner import murmur2

from streams.serde import InputEvent


def leader_partition(leader_id: str, partitions: int) -> int:
    """The partition of a leader's key under Kafka's default (murmur2) partitioner."""
    return (int(murmur2(leader_id.encode())) & 0x7FFFFFFF) % partitions


def log_partitions(event: InputEvent, partitions: int) -> range | list[int]:
    """The decision partitions an event lands in: its leader's, or all of them for ticks, config
    changes and whole-portfolio (EXEC_GLOBAL) snapshots."""
    if event.kind == "leaderTrade" or (event.kind == "portfolioSnapshot" and event.followed_user_id):
        assert event.followed_user_id is not None
        return [leader_partition(event.followed_user_id, partitions)]
    return range(partitions)
