"""The verdict of a chaos run: each partition's log, as stored in Kafka, replayed by the decision core,
against the attempts the live workers published — plus conservation, HARD budgets, dead letters and
progress gaps. Pure functions over what was read back from Kafka; :func:`render` prints a compact diff.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.engine import process
from models.state import PartitionState
from streams.serde import DecodeError, decode_event
from streams.topology import leader_partition


@dataclass(frozen=True)
class AttemptRecord:
    """One record of copy-attempts: where it was, when it was produced (ms), its value."""

    partition: int
    offset: int
    timestamp_ms: int
    value: bytes


@dataclass
class PartitionVerdict:
    """Live attempts of one decision partition against the replay of its log."""

    partition: int
    log_records: int = 0
    live: int = 0
    replay: int = 0
    missing: int = 0
    """In the replay, never published live."""
    extra: int = 0
    """Published live, not in the replay."""
    differing: int = 0
    """Same attemptId, different contents (live's first version against the replay)."""
    two_contents: int = 0
    """attemptIds published live with two or more different contents."""
    first_difference: list[str] = field(default_factory=list)
    longest_gap_s: float = 0.0
    gap_began_s: float = 0.0
    """When the longest gap began, in seconds after publishing began (compare with the kill times)."""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.differing or self.two_contents)


@dataclass
class ChaosVerdict:
    partitions: list[PartitionVerdict]
    accepted: int
    lost: int
    """Accepted trades in no live attempt."""
    doubled: int
    """Accepted trades in two or more live attempts (distinct attemptIds)."""
    open_in_replay: int
    """Trades of the log that even the replay leaves undecided (a window still open at the end)."""
    hard_overshoots: int
    malformed: int
    not_dead_lettered: int
    differing_fields: Counter[str]
    max_gap_s: float
    gap_limit_s: float
    malformed_topics: int = 0
    """Input topics that got malformed messages."""
    kills: int = 0
    broker_restarts: int = 0
    settled: bool = True
    """The worker group consumed every input partition to its end before the deadline."""
    resume_s: float = 0.0
    """The longest time from the broker being back until every partition decided again (the gaps do
    not count that time: it is the broker restart's, judged against `resume_limit_s`)."""
    resume_limit_s: float = float("inf")
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.settled
            and all(p.ok for p in self.partitions)
            and not (self.lost or self.doubled or self.open_in_replay or self.hard_overshoots)
            and not self.not_dead_lettered
            and self.max_gap_s <= self.gap_limit_s
            and self.resume_s <= self.resume_limit_s
        )


def replay_log(values: list[bytes]) -> list[dict[str, Any]]:
    """The copy attempts the decision core makes of one partition's log, in order; no final flush
    (the live worker does not flush at the end either). Undecodable records change nothing."""
    state = PartitionState()
    attempts: list[dict[str, Any]] = []
    for raw in values:
        try:
            event = decode_event(raw)
        except DecodeError:
            continue
        attempts.extend(dict(o) for o in process(state, event) if isinstance(o, dict))  # attempts
    return attempts


def differences(live: Any, replay: Any, prefix: str = "") -> list[str]:
    """Field paths where two attempts differ, e.g. ``budget.currentExposureMicros: live 5 ≠ replay 7``."""
    if isinstance(live, dict) and isinstance(replay, dict):
        out: list[str] = []
        for key in sorted(set(live) | set(replay)):
            out += differences(live.get(key), replay.get(key), f"{prefix}{key}.")
        return out
    return [] if live == replay else [f"{prefix[:-1]}: live {live!r} ≠ replay {replay!r}"]


def _live_by_id(values: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], int]:
    """Live attempts by attemptId (first version), and how many ids carry two or more contents."""
    first: dict[str, dict[str, Any]] = {}
    contents: dict[str, set[bytes]] = defaultdict(set)
    for attempt in values:
        first.setdefault(attempt["attemptId"], attempt)
        contents[attempt["attemptId"]].add(orjson.dumps(attempt, option=orjson.OPT_SORT_KEYS))
    return first, sum(1 for c in contents.values() if len(c) > 1)


def compare_partition(
    partition: int, log: list[bytes], live_values: list[dict[str, Any]], fields: Counter[str]
) -> tuple[PartitionVerdict, dict[str, dict[str, Any]]]:
    """One partition's verdict; also returns the replay's attempts by id."""
    replayed = replay_log(log)
    expected = {a["attemptId"]: a for a in replayed}
    verdict = PartitionVerdict(partition, log_records=len(log), replay=len(replayed))
    if len(expected) != len(replayed):
        verdict.first_difference.append("the replay itself repeats an attemptId")
    live, verdict.two_contents = _live_by_id(live_values)
    verdict.live = len(live)
    verdict.missing = len(expected.keys() - live.keys())
    verdict.extra = len(live.keys() - expected.keys())
    for attempt_id in sorted(expected.keys() & live.keys(), key=lambda i: expected[i]["decidedAtMs"]):
        diff = differences(live[attempt_id], expected[attempt_id])
        if diff:
            verdict.differing += 1
            fields.update(d.split(":", 1)[0] for d in diff)
            if not verdict.first_difference:
                verdict.first_difference = [f"attempt {attempt_id} ({expected[attempt_id]['groupKey']})"]
                verdict.first_difference += diff[:6]
    return verdict, expected


def longest_gap_s(
    timestamps_ms: list[int], window_ms: tuple[int, int, int], outages: list[tuple[int, int]]
) -> tuple[float, float]:
    """The longest time a partition went without publishing an attempt while it had work, not counting
    the time the broker was down, and when it began (s after publishing began). `window_ms`: (publishing
    began, publishing ended, the run stopped watching); attempts after that are not counted (the
    settling restart re-emits some)."""
    start, publish_end, cutoff = window_ms
    points = sorted(t for t in timestamps_ms if start <= t <= cutoff)
    points = [start, *points] + ([publish_end] if not points or points[-1] < publish_end else [])
    longest, began = 0, start
    for a, b in itertools.pairwise(points):
        down = sum(max(0, min(b, o_end) - max(a, o_start)) for o_start, o_end in outages)
        if b - a - down > longest:
            longest, began = b - a - down, a
    return longest / 1000, (began - start) / 1000


@dataclass
class ChaosRecords:
    """What a chaos run read back from Kafka, and what it had injected."""

    log: dict[int, list[bytes]]
    """leader-trades values per partition, in offset order."""
    attempts: list[AttemptRecord]
    dead_letters: list[dict[str, Any]]
    accepted: set[tuple[str, str]]
    malformed: set[tuple[str, int, int]]
    """(full topic, partition, offset) of every malformed message published."""
    progress_window_ms: tuple[int, int, int]
    """(publishing began, publishing ended, the run stopped watching progress), wall-clock ms."""
    outages: list[tuple[int, int]]


def judge(records: ChaosRecords, partitions: int, gap_limit_s: float) -> ChaosVerdict:
    """Compare everything; the verdict says what differs (nothing raises)."""
    live_values: dict[int, list[dict[str, Any]]] = defaultdict(list)
    stamps: dict[int, list[int]] = defaultdict(list)
    for record in records.attempts:
        attempt = orjson.loads(record.value)
        live_values[leader_partition(attempt["followedUserId"], partitions)].append(attempt)
        stamps[record.partition].append(record.timestamp_ms)
    fields: Counter[str] = Counter()
    verdicts, replay_covered = [], set()
    for p in range(partitions):
        verdict, expected = compare_partition(p, records.log.get(p, []), live_values[p], fields)
        verdict.longest_gap_s, verdict.gap_began_s = longest_gap_s(
            stamps[p], records.progress_window_ms, records.outages
        )
        verdicts.append(verdict)
        replay_covered |= {(a["followedUserId"], t) for a in expected.values() for t in a["tradeIds"]}
    unique: dict[str, dict[str, Any]] = {}  # consumers dedup by attemptId: the first version stands
    for values in live_values.values():
        for attempt in values:
            unique.setdefault(attempt["attemptId"], attempt)
    covered = Counter((a["followedUserId"], t) for a in unique.values() for t in a["tradeIds"])
    letters = {(d.get("sourceTopic"), d.get("partition"), d.get("offset")) for d in records.dead_letters}
    return ChaosVerdict(
        partitions=verdicts,
        accepted=len(records.accepted),
        lost=len(records.accepted - covered.keys()),
        doubled=sum(1 for n in covered.values() if n > 1),
        open_in_replay=len(records.accepted - replay_covered),
        hard_overshoots=sum(1 for a in unique.values() if overshoots_hard_budget(a)),
        malformed=len(records.malformed),
        not_dead_lettered=len(records.malformed - letters),
        differing_fields=fields,
        max_gap_s=max((v.longest_gap_s for v in verdicts), default=0.0),
        gap_limit_s=gap_limit_s,
        malformed_topics=len({topic for topic, _, _ in records.malformed}),
    )


def overshoots_hard_budget(attempt: dict[str, Any]) -> bool:
    """A non-reducing EXECUTE under a HARD budget that takes our exposure past the budget (SPEC 7)."""
    sizing, budget = attempt["sizing"], attempt["budget"]
    hard = sizing["budgetedDynamicActive"] and sizing["budgetEnforcement"] == "hard"
    if attempt["decision"] != "EXECUTE" or not hard or budget["reducing"]:
        return False
    return bool(
        budget["currentExposureMicros"] + attempt["targetNotionalMicros"] > sizing["budgetUsdcMicros"]
    )


def render(verdict: ChaosVerdict) -> str:
    """A compact report: totals, then one line per partition and its first differing attempt."""
    v = verdict
    differing = sum(p.differing for p in v.partitions)
    lines = [
        f"chaos verdict: {'OK' if v.ok else 'FAILED'}"
        + ("" if v.settled else " (the workers never consumed every input to its end)"),
        f"  attempts live {sum(p.live for p in v.partitions):,} / "
        f"replay {sum(p.replay for p in v.partitions):,}"
        f"; differing {differing:,}, missing {sum(p.missing for p in v.partitions):,}, "
        f"extra {sum(p.extra for p in v.partitions):,}, "
        f"one attemptId with two contents {sum(p.two_contents for p in v.partitions):,}",
        f"  trades accepted {v.accepted:,}: lost {v.lost:,}, doubled {v.doubled:,}, "
        f"left open even by the replay {v.open_in_replay:,}; HARD overshoots {v.hard_overshoots:,}",
        f"  malformed {v.malformed:,}, not dead-lettered {v.not_dead_lettered:,}; "
        f"longest progress gap {v.max_gap_s:.1f}s (limit {v.gap_limit_s:.0f}s); after the broker "
        f"restart every partition decided again in {v.resume_s:.1f}s (limit {v.resume_limit_s:.0f}s)",
    ]
    if v.differing_fields:
        top = ", ".join(f"{name} {n:,}" for name, n in v.differing_fields.most_common(6))
        lines.append(f"  differing fields: {top}")
    for p in v.partitions:
        lines.append(
            f"  p{p.partition}: log {p.log_records:,} records, live {p.live:,}, replay {p.replay:,}, "
            f"differing {p.differing:,}, missing {p.missing:,}, extra {p.extra:,}, "
            f"two contents {p.two_contents:,}, longest gap {p.longest_gap_s:.1f}s at {p.gap_began_s:.0f}s"
        )
        lines += [f"      {line}" for line in p.first_difference]
    lines += [f"  {note}" for note in v.notes]
    return "\n".join(lines)
