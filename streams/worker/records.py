"""A decision partition's state as changelog records, saved atomically per batch (no Faust here).

Records of one partition all go to the same changelog partition, in this order within a batch, and a
batch's records are written only after the previous batch's were acknowledged (aiokafka keeps one batch
in flight per partition, ``aiokafka/producer/sender.py:139-150``, so they land in order):

- ``D:{p}:{batch}:{chunk}`` — the dedup memory (trade ids, group keys, order-less attempts) the batch
  added: a delta, written once, in chunks of at most ``CHUNK_BYTES``.
- ``B:{p}:{minute}:{chunk}`` — when the clock leaves a minute, the deltas of that minute folded into a
  few bucket records (chunks), so a restore reads a bounded number of records, not one per trade id.
- ``L:{leader}`` — each changed leader's state without its dedup memory, **versioned**: the value holds
  the state as of this batch and the leader's previous saved version.
- ``P:{p}`` — last: the clock, config, equity, the last applied log offset, the batch number, and the
  dedup records that make up the memory. This record is the commit point of a batch.

Restore trusts only ``P``: a leader record newer than it (a batch that crashed after writing it) falls
back to its previous version, delta and bucket records not named in ``P`` are ignored, and memory
entries older than what the core had forgotten (its horizon) are dropped. So a crash at any record of a
batch restores exactly the state after the last complete batch. Records that ``P`` no longer names are
deleted one batch later, once the ``P`` that stopped naming them is acknowledged.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from models.codec import key_time_of, leader_from_json, leader_to_json, partition_from_json, partition_to_json
from models.state import Journal, LeaderState, PartitionState

MINUTE_MS = 60_000
CHUNK_BYTES = 256_000
"""Largest memory record (delta or bucket chunk): far below Kafka's 1 MiB message limit."""

Record = tuple[bytes, bytes | None]
"""(table key, value); None deletes the key."""


def partition_key(partition: int) -> bytes:
    """Key of a partition's commit record."""
    return b"P:%d" % partition


def leader_key(leader_id: str) -> bytes:
    """Key of a leader's versioned state record."""
    return b"L:" + leader_id.encode()


def delta_key(partition: int, batch: int, chunk: int) -> bytes:
    return b"D:%d:%d:%d" % (partition, batch, chunk)


def bucket_key(partition: int, minute: int, chunk: int) -> bytes:
    return b"B:%d:%d:%d" % (partition, minute, chunk)


# Memory entries as JSON lists: ["s", leader, seenAt, tradeId] (a trade id), ["k", leader, keyTime,
# baseKey, count] (a used group key), ["a", leader, decidedAt, attemptId, code] (an order-less attempt).
MemoryEntries = list[list[Any]]


@dataclass
class SavedPartition:
    """What a worker keeps between batches to write the next batch's records."""

    state: PartitionState
    offset: int
    """The last log offset whose effect is in `state` (-1: none)."""
    batch: int = 0
    leader_versions: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    """Each leader's last written (batch, state JSON): the `prev` of its next record."""
    deltas: list[list[int]] = field(default_factory=list)
    """[batch, chunks] of the delta records of the open minute."""
    delta_minute: int | None = None
    open_entries: MemoryEntries = field(default_factory=list)
    """The entries of the open minute's deltas (folded into bucket records when the minute ends)."""
    buckets: list[list[int]] = field(default_factory=list)
    """[minute, chunks, [leader horizons...]] of every bucket record still named."""
    bucket_limits: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    """minute -> leader -> [newest seenAt, newest key time] in that bucket (for expiry)."""
    to_delete: list[bytes] = field(default_factory=list)
    """Keys no longer named by the last acknowledged commit record: deleted with the next batch."""
    buckets_json: bytes | None = field(default=None, repr=False, compare=False)
    """``buckets`` and ``bucket_limits`` as the commit record's JSON members (they change only when a
    minute is folded or a bucket expires; a whale's 24 h are 1,440 of them): None when stale."""


def _memory_of_batch(state: PartitionState, dirty: set[str]) -> MemoryEntries:
    """The trade ids and group keys the batch added (from each leader's journal); drains the journals."""
    entries: MemoryEntries = []
    for leader_id in sorted(dirty):
        leader = state.leaders.get(leader_id)
        if leader is None or leader.journal is None:
            continue
        journal = leader.journal
        seen = leader.seen_trade_ids
        added = sorted((seen[t], t) for t in journal.trade_ids if t in seen)  # absent: forgotten
        entries += [["s", leader_id, seen_at, trade_id] for seen_at, trade_id in added]  # time order
        used = leader.used_group_keys
        for base in sorted(journal.group_keys):
            count = used.get(base)
            if count is not None:
                entries.append(["k", leader_id, _key_time(base), base, count])
        entries += _attempts_of_batch(leader_id, leader, journal.attempts)
        leader.journal = Journal()
    return entries


def _key_time(group_key_base: str) -> int:
    """:func:`models.codec.key_time_of` without ``strptime`` (the worker's hottest record code), to the
    same float rounding: the ISO-8601 time (``YYYY-MM-DDTHH:MM:SS.mmmZ``) before ``:buffer``."""
    iso = group_key_base.removesuffix(":buffer")[-24:]
    try:
        if iso[10] != "T" or iso[19] != "." or iso[23] != "Z":
            raise ValueError(iso)
        h, m, sec, ms = int(iso[11:13]), int(iso[14:16]), int(iso[17:19]), int(iso[20:23])
        if h > 23 or m > 59 or sec > 59:
            raise ValueError(iso)
        micros = (_day_seconds(iso[:10]) + (h * 60 + m) * 60 + sec) * 10**6 + ms * 1000
    except (ValueError, IndexError):
        return key_time_of(group_key_base)  # not the usual shape: the reference parser decides
    return int(micros / 10**6 * 1000)  # as datetime.timestamp() * 1000


@lru_cache(maxsize=4096)
def _day_seconds(date: str) -> int:
    return int(datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


def _attempts_of_batch(leader_id: str, leader: LeaderState, changed: set[str]) -> MemoryEntries:
    """Entries for the order-less attempts the batch remembered (the newest ones, at the order's end)."""
    memory = leader.attempt_memory
    wanted = sum(1 for a in changed if a in memory)
    entries: MemoryEntries = []
    for decided_at, attempt_id in reversed(leader.attempt_order):
        if len(entries) == wanted:
            break
        if attempt_id in changed and attempt_id in memory:
            entries.append(["a", leader_id, decided_at, attempt_id, memory[attempt_id]])
    entries.reverse()
    return entries


_SLOT = {"s": 0, "k": 1, "a": 2}
"""Each row kind's place in a leader's limits (and, times its width, its first column)."""
_FIRST_COLUMN = {"s": 0, "k": 2, "a": 5}


def _limits(entries: MemoryEntries) -> dict[str, list[int]]:
    limits: dict[str, list[int]] = {}
    slots = _SLOT
    for kind, leader_id, at, *_ in entries:
        lim = limits.get(leader_id)
        if lim is None:
            lim = limits[leader_id] = [-1, -1, -1]
        slot = slots[kind]
        if at > lim[slot]:
            lim[slot] = at
    return limits


def _expired(limits: dict[str, list[int]], state: PartitionState) -> bool:
    """True when the core has forgotten every entry of a bucket (each leader's horizon covers it)."""
    for leader_id, (newest_seen, newest_key, newest_attempt) in limits.items():
        leader = state.leaders.get(leader_id)
        if leader is None:
            continue
        if newest_seen >= 0 and newest_seen > leader.forgotten_through_ms:
            return False
        if newest_key >= 0 and newest_key >= leader.group_key_floor_ms:
            return False
        if newest_attempt >= 0 and newest_attempt > leader.attempts_forgotten_through_ms:
            return False
    return True


KINDS = "ska"
"""Row kinds: a trade id (s), a used group key (k), an order-less attempt (a)."""


def chunked(entries: MemoryEntries) -> list[bytes]:
    """Memory rows as columnar JSON chunks of about CHUNK_BYTES at most (at least one, maybe empty):
    ``{leader: [[seenAt…], [tradeId…], [keyTime…], [baseKey…], [count…], [decidedAt…], [attemptId…],
    [code…]]}`` — a restore then builds a whale's memory from a few lists, not one object per entry."""
    chunks: list[bytes] = []
    start, size = 0, 0
    for i, entry in enumerate(entries):
        row_size = 24 + len(entry[1]) + len(entry[3])  # the row's strings: leader, id or key
        if i > start and size + row_size > CHUNK_BYTES:
            chunks.append(_columnar(entries[start:i]))
            start, size = i, 0
        size += row_size
    chunks.append(_columnar(entries[start:]))
    return chunks


def _columnar(rows: MemoryEntries) -> bytes:
    columns: dict[str, list[list[Any]]] = {}
    first_column = _FIRST_COLUMN
    for row in rows:
        cols = columns.get(row[1])
        if cols is None:
            cols = columns[row[1]] = [[] for _ in range(8)]
        base = first_column[row[0]]
        cols[base].append(row[2])
        cols[base + 1].append(row[3])
        if len(row) == 5:
            cols[base + 2].append(row[4])
    return orjson.dumps(columns)


def _rows(chunk: bytes) -> MemoryEntries:
    """A columnar chunk back as rows (only for the open minute, which is folded later)."""
    rows: MemoryEntries = []
    for leader_id, c in orjson.loads(chunk).items():
        rows += [["s", leader_id, t, i] for t, i in zip(c[0], c[1], strict=True)]
        rows += [["k", leader_id, t, b, n] for t, b, n in zip(c[2], c[3], c[4], strict=True)]
        rows += [["a", leader_id, t, i, n] for t, i, n in zip(c[5], c[6], c[7], strict=True)]
    return rows


def _fold_open_minute(partition: int, saved: SavedPartition) -> Iterator[Record]:
    """Write the open minute's deltas as bucket records; the deltas are deleted after the commit."""
    minute = saved.delta_minute
    if minute is None:
        return
    entries = saved.open_entries
    chunks = chunked(entries)
    for chunk, value in enumerate(chunks):
        yield bucket_key(partition, minute, chunk), value
    saved.buckets.append([minute, len(chunks)])
    saved.bucket_limits[minute] = _limits(entries)
    saved.buckets_json = None
    saved.to_delete += [delta_key(partition, b, c) for b, n in saved.deltas for c in range(n)]
    saved.deltas, saved.open_entries, saved.delta_minute = [], [], None


def _expire_buckets(partition: int, saved: SavedPartition) -> None:
    keep = []
    for minute, chunks in saved.buckets:
        if _expired(saved.bucket_limits[minute], saved.state):
            saved.to_delete += [bucket_key(partition, minute, c) for c in range(chunks)]
            del saved.bucket_limits[minute]
        else:
            keep.append([minute, chunks])
    saved.buckets = keep
    saved.buckets_json = None


def batch_records(partition: int, saved: SavedPartition, dirty: set[str]) -> list[Record]:
    """The records that save one batch (after it ran through the core), the commit record last.

    Also deletes what the previous commit record stopped naming. Call only once the previous batch's
    records are acknowledged.
    """
    state = saved.state
    saved.batch += 1
    batch = saved.batch
    records: list[Record] = [(key, None) for key in saved.to_delete]
    saved.to_delete = []
    minute = state.clock_ms // MINUTE_MS
    if saved.delta_minute is not None and minute != saved.delta_minute:
        records += _fold_open_minute(partition, saved)
        _expire_buckets(partition, saved)
    entries = _memory_of_batch(state, dirty)
    if entries:
        chunks = chunked(entries)
        records += [(delta_key(partition, batch, c), value) for c, value in enumerate(chunks)]
        saved.deltas.append([batch, len(chunks)])
        saved.open_entries += entries
        saved.delta_minute = minute
    for leader_id in sorted(dirty):
        leader = state.leaders.get(leader_id)
        if leader is None:
            continue
        records.append((leader_key(leader_id), _leader_value(saved, leader, batch)))
    commit = {"batch": batch, "core": partition_to_json(state, saved.offset), "deltas": saved.deltas}
    records.append((partition_key(partition), orjson.dumps(commit)[:-1] + b"," + _buckets_json(saved)))
    return records


def _buckets_json(saved: SavedPartition) -> bytes:
    """``"buckets":…,"limits":…}``: the commit record's bucket members and its closing brace (cached)."""
    if saved.buckets_json is None:
        limits = {str(m): lim for m, lim in saved.bucket_limits.items()}
        saved.buckets_json = orjson.dumps({"buckets": saved.buckets, "limits": limits})[1:]
    return saved.buckets_json


def _leader_value(saved: SavedPartition, leader: LeaderState, batch: int) -> bytes:
    core = leader_to_json(leader, with_memory=False)
    core["forgot"] = leader.forgotten_through_ms
    core["forgotAttempts"] = leader.attempts_forgotten_through_ms
    current = orjson.dumps(core)
    previous = saved.leader_versions.get(leader.leader_id)
    saved.leader_versions[leader.leader_id] = (batch, current)
    prev = b"null" if previous is None else b"[%d,%s]" % (previous[0], previous[1])
    return b'{"batch":%d,"cur":%s,"prev":%s}' % (batch, current, prev)


def restore(partition: int, get: Callable[[bytes], bytes | None]) -> SavedPartition:
    """Rebuild a partition from the records of its last complete batch (`get` reads the table)."""
    raw = get(partition_key(partition))
    if raw is None:
        return SavedPartition(PartitionState(journaling=True), -1)
    commit = orjson.loads(raw)
    batch = commit["batch"]
    memory: dict[str, list[list[Any]]] = {}
    for minute, chunks in commit["buckets"]:
        for chunk in range(chunks):
            _collect(memory, get(bucket_key(partition, minute, chunk)))
    open_entries: MemoryEntries = []
    for delta_batch, chunks in commit["deltas"]:
        for chunk in range(chunks):
            value = get(delta_key(partition, delta_batch, chunk))
            if value is not None:
                _collect(memory, value)
                open_entries += _rows(value)
    leaders: dict[str, LeaderState] = {}
    versions: dict[str, tuple[int, bytes]] = {}
    for leader_id in commit["core"]["leaders"]:
        version = _leader_version(get(leader_key(leader_id)), batch)
        if version is None:
            continue
        versions[leader_id] = version
        leaders[leader_id] = _leader(orjson.loads(version[1]), memory.get(leader_id))
    state, offset = partition_from_json(commit["core"], leaders)
    state.journaling = True
    for leader in state.leaders.values():
        leader.journal = Journal()
    saved = SavedPartition(state, offset, batch, versions)
    saved.deltas = [list(d) for d in commit["deltas"]]
    saved.open_entries = open_entries
    saved.delta_minute = None if not open_entries else state.clock_ms // MINUTE_MS
    saved.buckets = [list(b) for b in commit["buckets"]]
    saved.bucket_limits = {int(m): lim for m, lim in commit["limits"].items()}
    return saved


def _collect(memory: dict[str, list[list[Any]]], value: bytes | None) -> None:
    """Append a columnar chunk's columns to each leader's (chunks are read oldest first)."""
    if value is None:
        return
    for leader_id, columns in orjson.loads(value).items():
        known = memory.get(leader_id)
        if known is None:
            memory[leader_id] = columns
        else:
            for mine, more in zip(known, columns, strict=True):
                mine.extend(more)


def _leader_version(raw: bytes | None, batch: int) -> tuple[int, bytes] | None:
    """The leader's saved state as of `batch`: its current version, or the previous one when the
    current was written by a batch that never committed."""
    if raw is None:
        return None
    record = orjson.loads(raw)
    if record["batch"] <= batch:
        return record["batch"], orjson.dumps(record["cur"])
    prev = record["prev"]
    if prev is None or prev[0] > batch:
        return None
    return prev[0], orjson.dumps(prev[1])


def _leader(core: dict[str, Any], columns: list[list[Any]] | None) -> LeaderState:
    """A leader from its state record and its memory columns, cut at what the core had forgotten.

    The columns hold what the batches added, oldest first, so times ascend within each kind."""
    horizon = core.pop("forgot")
    attempts_horizon = core.pop("forgotAttempts")
    leader = leader_from_json(core)
    leader.forgotten_through_ms = horizon
    leader.attempts_forgotten_through_ms = attempts_horizon
    if columns is None:
        return leader
    seen_at, trade_ids, key_times, bases, counts, decided_at, attempt_ids, codes = columns
    cut = bisect_right(seen_at, horizon)
    leader.seen_order = deque(sorted(zip(seen_at[cut:], trade_ids[cut:], strict=True)))
    leader.seen_trade_ids = {trade_id: t for t, trade_id in leader.seen_order}
    floor = leader.group_key_floor_ms
    used = {b: (t, n) for t, b, n in zip(key_times, bases, counts, strict=True) if t >= floor}
    leader.used_key_times = deque(sorted((t, b) for b, (t, _) in used.items()))
    leader.used_group_keys = {b: n for b, (_, n) in used.items()}
    cut = bisect_right(decided_at, attempts_horizon)
    leader.attempt_order = deque(zip(decided_at[cut:], attempt_ids[cut:], strict=True))
    leader.attempt_memory.update(zip(attempt_ids[cut:], codes[cut:], strict=True))
    return leader


def merged_state(table: dict[bytes, bytes | None], partitions: int) -> PartitionState:
    """Every partition's saved state (from a changelog read to its end) merged into one view: all
    leaders, and the config and clock of the partition whose clock is newest."""
    merged = PartitionState()
    for partition in range(partitions):
        state = restore(partition, table.get).state
        merged.leaders.update(state.leaders)
        if state.clock_ms >= merged.clock_ms:
            merged.clock_ms, merged.config = state.clock_ms, state.config
    return merged
