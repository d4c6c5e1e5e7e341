"""A decision partition's batch through the core: redeliveries skipped, a hole in the log refused."""

from __future__ import annotations

import orjson
import pytest

from models.state import PartitionState
from streams.worker.batch import Counters, LogGap, Outgoing, decide_batch
from streams.worker.records import SavedPartition
from tests.unit.test_worker_records import TOPICS, Message


def _tick(offset: int) -> Message:
    return Message("log", 3, offset, None, orjson.dumps({"kind": "tick", "nowMs": 1_000 + offset}))


def test_messages_already_in_the_saved_state_are_skipped_and_the_next_ones_applied() -> None:
    saved = SavedPartition(PartitionState(), offset=4)
    counters = Counters()
    decide_batch(saved, [_tick(o) for o in range(3, 8)], [], counters, TOPICS)
    assert (counters.skipped_redeliveries, counters.events, saved.offset) == (2, 3, 7)
    assert saved.state.clock_ms == 1_007


def test_a_message_past_the_next_offset_is_refused_and_changes_nothing() -> None:
    # Given a partition saved through offset 4 and a batch that starts at 6 (offset 5 never given)
    saved = SavedPartition(PartitionState(), offset=4)
    outgoing: list[Outgoing] = []
    # Then deciding it would skip offset 5: it raises, before applying anything
    with pytest.raises(
        LogGap, match="partition 3: the saved state has applied offset 4, the next message given is at 6"
    ):
        decide_batch(saved, [_tick(6), _tick(7)], outgoing, Counters(), TOPICS)
    assert (saved.offset, saved.state.clock_ms, outgoing) == (4, 0, [])


def test_a_fresh_partition_starts_wherever_its_log_starts() -> None:
    saved = SavedPartition(PartitionState(), offset=-1)
    decide_batch(saved, [_tick(10), _tick(11)], [], Counters(), TOPICS)
    assert saved.offset == 11
