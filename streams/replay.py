"""``copybot replay``: run the decision core offline over a tape of input events (SPEC 10).

Attempts and the book events (positionSettled, orderExpired, orderUpdated, leaderBook) go to one stream as
JSON lines in the order they are produced; dead letters, rejected config changes, config warnings and
ignored execution reports go to another. Identical input gives byte-identical output. This is also the
backtest tool: replay a recorded tape under another config to see what budgets would have done.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from models.engine import finish, process
from models.events import BOOK_EVENT_KINDS, LeaderTrade, Output, WireOutput
from models.state import PartitionState
from models.summary import LeaderTally
from streams.serde import (
    DecodeError,
    dead_letter,
    decode_event,
    encode,
    key_for_raw,
    topic_for_raw,
)

FLUSH_EVERY = 512
"""Output lines buffered before a write."""


@dataclass
class ReplayResult:
    """What a replay did: the final state, counts, and per-leader tallies for the summary."""

    state: PartitionState
    events: int = 0
    trades: int = 0
    attempts: int = 0
    executed: int = 0
    dead_letters: int = 0
    config_rejected: int = 0
    config_warnings: int = 0
    book_events: int = 0
    """positionSettled, orderExpired, orderUpdated and leaderBook outputs (written with the attempts)."""
    reports_ignored: int = 0
    tallies: dict[str, LeaderTally] = field(default_factory=dict)


GC_THRESHOLD = 20_000
"""Allocations between two of Python's youngest-generation collections during a replay (Python: 700)."""


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run Python's cycle collector less often (restored after).

    A replay allocates a few dicts and tuples per event and keeps a growing state of small containers;
    none of it forms reference cycles, so reference counting frees it all, but the collector still
    walked the young objects every 700 allocations: 3-5 % of a replay's CPU (measured with
    ``gc.callbacks``). Memory is unchanged: the collector finds no cycles to free either way.
    """
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def replay(
    lines: Iterable[bytes],
    attempts_out: BinaryIO,
    diagnostics_out: BinaryIO,
    state: PartitionState | None = None,
    tally: bool = False,
    end_of_input: bool = True,
) -> ReplayResult:
    """Process every line of a tape in order, then the end-of-input flush; write outputs as JSON lines.

    With `tally`, per-leader counts for the summary table are kept in ``result.tallies``. Without
    `end_of_input` the flush is left out: `state` goes on with the next part of the same tape.
    """
    with fewer_collections():
        return _replay(lines, attempts_out, diagnostics_out, state, tally, end_of_input)


def _replay(
    lines: Iterable[bytes],
    attempts_out: BinaryIO,
    diagnostics_out: BinaryIO,
    state: PartitionState | None,
    tally: bool,
    end_of_input: bool,
) -> ReplayResult:
    result = ReplayResult(state or PartitionState())
    st = result.state
    attempts: list[bytes] = []
    diagnostics: list[bytes] = []
    executed = 0

    def emit(outputs: list[Output]) -> None:
        nonlocal executed
        for output in outputs:
            if isinstance(output, dict):
                attempts.append(orjson.dumps(output))  # an attempt is a wire dict: straight to JSON
                if output["decision"] == "EXECUTE":
                    executed += 1
                if tally:
                    leader = output["followedUserId"]
                    counts = result.tallies.get(leader)
                    if counts is None:
                        counts = result.tallies[leader] = LeaderTally()
                    counts.observe(output)
            elif isinstance(output, WireOutput):  # the frequent ones
                attempts.append(orjson.dumps(output.wire))
                result.book_events += 1
            elif output.kind in BOOK_EVENT_KINDS:
                attempts.append(encode(output))  # book events go with the attempts, in order
                result.book_events += 1
            else:
                diagnostics.append(encode(output))
                if output.kind == "configRejected":
                    result.config_rejected += 1
                elif output.kind == "configWarning":
                    result.config_warnings += 1
                else:
                    result.reports_ignored += 1

    events = trades = written = 0
    for offset, line in enumerate(lines):
        if len(line) < 8 and not line.strip():  # blank lines are skipped (only short lines are stripped)
            continue
        events += 1
        try:
            event = decode_event(line)
        except DecodeError as exc:
            result.dead_letters += 1
            raw = line.strip()
            letter = dead_letter(
                topic_for_raw(raw, "replay"), 0, offset, key_for_raw(raw), raw, str(exc), st.clock_ms
            )
            diagnostics.append(encode(letter))
        else:
            if type(event) is LeaderTrade:
                trades += 1
            outputs = process(st, event)
            if outputs:
                emit(outputs)
                if len(attempts) >= FLUSH_EVERY:
                    written += len(attempts)
                    attempts_out.write(b"\n".join(attempts) + b"\n")
                    attempts.clear()
        if diagnostics:
            diagnostics_out.write(b"\n".join(diagnostics) + b"\n")
            diagnostics.clear()
    if end_of_input:
        emit(finish(st))
    written += len(attempts)
    if attempts:
        attempts_out.write(b"\n".join(attempts) + b"\n")
    if diagnostics:
        diagnostics_out.write(b"\n".join(diagnostics) + b"\n")
    result.events, result.trades, result.executed = events, trades, executed
    result.attempts = written - result.book_events
    return result
