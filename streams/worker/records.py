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
from itertools import islice
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


# Memory as columns per leader: [[seenAt…], [tradeId…], [keyTime…], [baseKey…], [count…], [decidedAt…],
# [attemptId…], [code…]] — a trade id, a used group key, an order-less attempt per row of its kind, times
# ascending within each kind. The records hold exactly this as JSON (``{leader: columns}``), so a batch's
# memory is built, chunked, folded and restored as a few lists per leader, not one object per entry.
MemoryColumns = dict[str, list[list[Any]]]


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
    open_columns: MemoryColumns = field(default_factory=dict)
    """The memory of the open minute's deltas (folded into bucket records when the minute ends)."""
    buckets: list[list[int]] = field(default_factory=list)
    """[minute, chunks, [leader horizons...]] of every bucket record still named."""
    bucket_limits: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    """minute -> leader -> [newest seenAt, newest key time] in that bucket (for expiry)."""
    to_delete: list[bytes] = field(default_factory=list)
    """Keys no longer named by the last acknowledged commit record: deleted with the next batch."""
    buckets_json: bytes | None = field(default=None, repr=False, compare=False)
    """``buckets`` and ``bucket_limits`` as the commit record's JSON members (they change only when a
    minute is folded or a bucket expires; a whale's 24 h are 1,440 of them): None when stale."""


def _memory_of_batch(state: PartitionState, dirty: set[str]) -> MemoryColumns:
    """The trade ids and group keys the batch added (from each leader's journal); drains the journals."""
    memory: MemoryColumns = {}
    for leader_id in sorted(dirty):
        leader = state.leaders.get(leader_id)
        if leader is None or leader.journal is None:
            continue
        journal = leader.journal
        seen = leader.seen_trade_ids
        # The ids the batch added are the newest of the core's seen order, in time order: an id is
        # appended when accepted, and forgetting pops the oldest, so an id of the journal still in
        # `seen` (absent: forgotten) is one of the last `fresh` entries (models/engine.py: _on_trade).
        fresh = sum(1 for t in journal.trade_ids if t in seen)
        added = list(islice(reversed(leader.seen_order), fresh))
        added.reverse()
        used = leader.used_group_keys
        keys = [(base, used[base]) for base in sorted(journal.group_keys) if base in used]
        decided_at, attempt_ids, codes = _attempts_of_batch(leader, journal.attempts)
        leader.journal = Journal()
        if not (added or keys or attempt_ids):
            continue
        memory[leader_id] = [
            [t for t, _ in added],
            [i for _, i in added],
            [_key_time(base) for base, _ in keys],
            [base for base, _ in keys],
            [n for _, n in keys],
            decided_at,
            attempt_ids,
            codes,
        ]
    return memory


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


def _attempts_of_batch(leader: LeaderState, changed: set[str]) -> tuple[list[int], list[str], list[int]]:
    """Columns for the order-less attempts the batch remembered (the newest ones, at the order's end)."""
    memory = leader.attempt_memory
    wanted = sum(1 for a in changed if a in memory)
    rows: list[tuple[int, str]] = []
    for decided_at, attempt_id in reversed(leader.attempt_order):
        if len(rows) == wanted:
            break
        if attempt_id in changed and attempt_id in memory:
            rows.append((decided_at, attempt_id))
    rows.reverse()
    return [t for t, _ in rows], [a for _, a in rows], [memory[a] for _, a in rows]


def _limits(memory: MemoryColumns) -> dict[str, list[int]]:
    """Each leader's newest [seenAt, keyTime, decidedAt] in `memory` (-1: none of that kind)."""
    return {
        leader_id: [max(c[0], default=-1), max(c[2], default=-1), max(c[5], default=-1)]
        for leader_id, c in memory.items()
    }


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


ROW_BYTES = 24
"""A memory row's size estimate besides its strings (the leader, the id or key)."""
_STRING_COLUMNS = (1, 3, 6)
"""The columns of trade ids, group keys and attempt ids: one per row, in chunking order."""


def _row_sizes(leader_id: str, columns: list[list[Any]]) -> list[int]:
    """A size estimate of each row of a leader's columns, in the order the rows are chunked: trade
    ids, then group keys, then attempts."""
    fixed = ROW_BYTES + len(leader_id)
    return [fixed + len(x) for c in _STRING_COLUMNS for x in columns[c]]


def _size(leader_id: str, columns: list[list[Any]]) -> int:
    """``sum(_row_sizes(leader_id, columns))``, without the list."""
    fixed = ROW_BYTES + len(leader_id)
    return sum(fixed * len(columns[c]) + sum(map(len, columns[c])) for c in _STRING_COLUMNS)


def chunked(memory: MemoryColumns) -> list[bytes]:
    """Memory as JSON chunks of about CHUNK_BYTES at most (at least one, maybe empty): each chunk
    ``{leader: columns}`` for a run of rows; a leader bigger than a chunk is split between rows, so the
    chunks, read in order, give each kind's rows in their order."""
    total = sum(_size(leader_id, c) for leader_id, c in memory.items())
    if total <= CHUNK_BYTES:
        return [orjson.dumps(memory)]
    chunks: list[bytes] = []
    current: MemoryColumns = {}
    size = 0
    for leader_id, columns in memory.items():
        sizes = _row_sizes(leader_id, columns)
        n_seen, n_keys = len(columns[1]), len(columns[3])
        start = 0
        for row, row_size in enumerate(sizes):
            if (current or row > start) and size + row_size > CHUNK_BYTES:
                if row > start:
                    current[leader_id] = _slice(columns, n_seen, n_keys, start, row)
                chunks.append(orjson.dumps(current))
                current, size, start = {}, 0, row
            size += row_size
        if len(sizes) > start or not sizes:
            current[leader_id] = _slice(columns, n_seen, n_keys, start, len(sizes))
    chunks.append(orjson.dumps(current))
    return chunks


def _slice(columns: list[list[Any]], n_seen: int, n_keys: int, start: int, stop: int) -> list[list[Any]]:
    """Rows [start, stop) of a leader's columns, counted across the kinds in chunking order."""

    def part(first: int, count: int) -> tuple[int, int]:
        return max(start - first, 0), max(min(stop - first, count), 0)

    s0, s1 = part(0, n_seen)
    k0, k1 = part(n_seen, n_keys)
    a0, a1 = part(n_seen + n_keys, len(columns[6]))
    return [
        columns[0][s0:s1],
        columns[1][s0:s1],
        columns[2][k0:k1],
        columns[3][k0:k1],
        columns[4][k0:k1],
        columns[5][a0:a1],
        columns[6][a0:a1],
        columns[7][a0:a1],
    ]


def _merge(into: MemoryColumns, memory: MemoryColumns) -> None:
    """Append `memory`'s columns to `into`'s, leader by leader (`memory` is newer; its lists become
    `into`'s for a leader `into` did not have, so `memory` is not to be used after)."""
    for leader_id, columns in memory.items():
        known = into.get(leader_id)
        if known is None:
            into[leader_id] = columns
        else:
            for mine, more in zip(known, columns, strict=True):
                mine.extend(more)


def _fold_open_minute(partition: int, saved: SavedPartition) -> Iterator[Record]:
    """Write the open minute's deltas as bucket records; the deltas are deleted after the commit."""
    minute = saved.delta_minute
    if minute is None:
        return
    memory = saved.open_columns
    chunks = chunked(memory)
    for chunk, value in enumerate(chunks):
        yield bucket_key(partition, minute, chunk), value
    saved.buckets.append([minute, len(chunks)])
    saved.bucket_limits[minute] = _limits(memory)
    saved.buckets_json = None
    saved.to_delete += [delta_key(partition, b, c) for b, n in saved.deltas for c in range(n)]
    saved.deltas, saved.open_columns, saved.delta_minute = [], {}, None


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
    memory = _memory_of_batch(state, dirty)
    if memory:
        chunks = chunked(memory)
        records += [(delta_key(partition, batch, c), value) for c, value in enumerate(chunks)]
        saved.deltas.append([batch, len(chunks)])
        _merge(saved.open_columns, memory)
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
    open_columns: MemoryColumns = {}
    for delta_batch, chunks in commit["deltas"]:
        for chunk in range(chunks):
            value = get(delta_key(partition, delta_batch, chunk))
            if value is not None:
                _collect(memory, value)
                _collect(open_columns, value)
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
    saved.open_columns = open_columns
    saved.delta_minute = None if not open_columns else state.clock_ms // MINUTE_MS
    saved.buckets = [list(b) for b in commit["buckets"]]
    saved.bucket_limits = {int(m): lim for m, lim in commit["limits"].items()}
    return saved


def _collect(memory: MemoryColumns, value: bytes | None) -> None:
    """Append a columnar chunk's columns to each leader's (chunks are read oldest first)."""
    if value is not None:
        _merge(memory, orjson.loads(value))


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
