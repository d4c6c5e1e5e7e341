"""The live system's shape, written once: topic names, where each input event goes, and the worker's tables.

Pure (no Kafka client here): the CLI, the client, the worker, the projections and the tests all ask this
module "which topic, which key, which partitions", so a change of routing is one edit.

Routing (keys are UTF-8 bytes; values the raw JSON bytes):

==================  =====================  =====================================================
kind                topic                  key / partition
==================  =====================  =====================================================
leaderTrade         leader-trades          followedUserId (default partitioner: murmur2, as Java)
portfolioSnapshot   portfolio-snapshots    followedUserId, or ``__global__`` when it is null
configChange        config-changes         ``GLOBAL`` or the leader id (partition 0)
marketResolved      market-events          assetId (partition 0)
tick                leader-trades          no key, one copy into **every** partition
==================  =====================  =====================================================

The worker copies portfolio-snapshots partition p into leader-trades partition p (a leader's snapshot), or
into every partition (config changes, whole-portfolio EXEC_GLOBAL snapshots): :func:`copy_targets`.
"""

from __future__ import annotations

from models.events import GLOBAL_SNAPSHOT_KEY, InputEvent

# --- topics (base names; the live system prefixes them: Settings.topic) -------------------------------

TRADES = "leader-trades"
SNAPSHOTS = "portfolio-snapshots"
CONFIG_CHANGES = "config-changes"
COPY_ATTEMPTS = "copy-attempts"
DEAD_LETTERS = "dead-letters"
CONFIG_REPORTS = "config-reports"
MARKET_EVENTS = "market-events"
"""The venue's market resolutions (SPEC 13.2), keyed by assetId, one partition."""
INGEST_CHECKPOINTS = "ingest-checkpoints"
"""``copybot ingest polymarket``: one compacted record per followed wallet (key = the wallet)."""
EXECUTIONS = "executions"
"""The executor's execution reports (SPEC 13.3), keyed by leader; copied into the leader's log partition."""
BOOK_EVENTS = "book-events"
"""positionSettled, orderExpired and leaderBook outputs (SPEC 13.5), keyed by leader."""
LEADER_KEYED = (TRADES, SNAPSHOTS, COPY_ATTEMPTS, EXECUTIONS, BOOK_EVENTS)
"""Topics keyed by leader id, all with the same partition count (the decision partitions)."""
SINGLE_PARTITION = (CONFIG_CHANGES, DEAD_LETTERS, CONFIG_REPORTS, MARKET_EVENTS, INGEST_CHECKPOINTS)
"""Topics whose order is global (config, resolutions) or that are low volume (reports, checkpoints)."""
ALL_TOPICS = (*LEADER_KEYED, *SINGLE_PARTITION)
"""Base names of every topic copybot uses (leader-keyed first)."""

TOPIC_OF_KIND = {
    "leaderTrade": TRADES,
    "portfolioSnapshot": SNAPSHOTS,
    "configChange": CONFIG_CHANGES,
    "tick": TRADES,
    "marketResolved": MARKET_EVENTS,
    "executionReport": EXECUTIONS,
}
"""The topic each input kind is published to (a tick goes into every partition of leader-trades)."""
REPLAY_PREFIX = "copybot"
"""The prefix ``copybot replay`` names topics with in its dead letters (the default COPYBOT_TOPIC_PREFIX)."""

SOURCE_HEADER = "copybot-source"
"""Header on a message the worker copied into the decision log: ``{topic}:{partition}:{offset}``."""
GLOBAL_CONFIG_KEY = "GLOBAL"
"""Key of a GLOBAL config change on config-changes."""


def route(event: InputEvent) -> tuple[str, str | None]:
    """The base topic name and key of `event`; a tick (key None) goes to every partition of its topic."""
    if event.kind == "leaderTrade":
        return TRADES, event.followed_user_id
    if event.kind == "portfolioSnapshot":
        return SNAPSHOTS, event.followed_user_id or GLOBAL_SNAPSHOT_KEY
    if event.kind == "configChange":
        return CONFIG_CHANGES, event.followed_user_id or GLOBAL_CONFIG_KEY
    if event.kind == "marketResolved":
        return MARKET_EVENTS, event.asset_id
    if event.kind == "executionReport":
        return EXECUTIONS, event.followed_user_id
    return TRADES, None


def fixed_partition(topic: str) -> int | None:
    """The partition every message of `topic` goes to, when it is not chosen by key (config-changes and
    market-events: 0)."""
    return 0 if topic in (CONFIG_CHANGES, MARKET_EVENTS) else None


# --- partitions ------------------------------------------------------------------------------------


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (``org.apache.kafka.common.utils.Utils.murmur2``) as an unsigned 32-bit int.

    Written here so routing needs no Kafka client; ``tests/unit/test_topology.py`` pins it to aiokafka's
    partitioner (aiokafka/partitioner.py, ``murmur2``).
    """
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = 0x9747B28C ^ length
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i : i + 4], "little") * m) & mask
        k ^= k >> 24
        h = ((h * m) & mask) ^ ((k * m) & mask)
    rest = length % 4
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h = ((h ^ data[whole]) * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def leader_partition(leader_id: str, partitions: int) -> int:
    """The partition of a leader's key under Kafka's default (murmur2) partitioner."""
    return (murmur2(leader_id.encode()) & 0x7FFFFFFF) % partitions


def _one_leader(event: InputEvent) -> str | None:
    """The leader whose partition alone an event belongs to; None when it concerns every partition."""
    if event.kind in ("leaderTrade", "executionReport") or (
        event.kind == "portfolioSnapshot" and event.followed_user_id
    ):
        return event.followed_user_id
    return None


def log_partitions(event: InputEvent, partitions: int) -> range | list[int]:
    """The decision partitions an event lands in: its leader's, or all of them for ticks, config
    changes, market resolutions and whole-portfolio (EXEC_GLOBAL) snapshots."""
    leader = _one_leader(event)
    return range(partitions) if leader is None else [leader_partition(leader, partitions)]


def copy_targets(event: InputEvent, source_partition: int, partitions: int) -> range | list[int]:
    """The leader-trades partitions the worker copies a snapshot or config change into: a leader's snapshot
    from portfolio-snapshots partition p into leader-trades partition p (same key, same partition count),
    everything else into every partition."""
    return range(partitions) if _one_leader(event) is None else [source_partition]


# --- the worker's tables ---------------------------------------------------------------------------

PARTITION_STATE_TABLE = "partition-state"
"""The worker's table of decision state, one changelog partition per decision partition."""
CONFIG_STORE_TABLE = "config-store"
"""The worker's table holding the folded config store (key ``store``)."""


def changelog_topic(app_id: str, table: str) -> str:
    """The changelog topic Faust keeps a table in: ``{app id}-{table}-changelog``."""
    return f"{app_id}-{table}-changelog"


def partition_key(partition: int) -> bytes:
    """Table key of a partition's own record (clock, config, equity, last applied offset)."""
    return b"P:%d" % partition


def leader_key(leader_id: str) -> bytes:
    """Table key of a leader's core record."""
    return b"L:" + leader_id.encode()


def trade_id_key(leader_id: str, trade_id: str) -> bytes:
    """Table key of one trade id a leader's partition has seen (its value: when)."""
    return b"S:" + leader_id.encode() + b"\x1f" + trade_id.encode()


def group_key_key(leader_id: str, base: str) -> bytes:
    """Table key of one group key a leader has used (its value: how often)."""
    return b"K:" + leader_id.encode() + b"\x1f" + base.encode()
