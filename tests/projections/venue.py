"""A venue tape (SPEC 13) replayed by the decision core, and projected as the consumer projects it.

Paper fills of one leader in two markets that then resolve (one won, one lost); then ``fillModel: reports``
with orders of another leader that fill in part, in full, are rejected, expire and stay open, with a stale
and a stray report; the kill switch flips twice. The executions are published as an executor would, but
the projector reads only the core's outputs. The reports name the attempt ids the core gives, so the
tape is built in two passes (the ids are deterministic).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import BaseModel

from models.events import BOOK_EVENT_KINDS
from models.state import PartitionState
from models.summary import LeaderSummary, summarize
from projections.consumer import Decoded, decode_output, project_batch
from projections.store import ProjectionStore
from streams.replay import ReplayResult, replay
from streams.settings import CONFIG_CHANGES, COPY_ATTEMPTS
from streams.topology import BOOK_EVENTS, EXECUTIONS
from tests.factories import BUDGETED, T0, USD, global_change, report, resolution, tick, trade

SYSTEM = {"aggregationWindowMs": 0}
REPORTS = {**SYSTEM, "fillModel": "reports", "orderTimeoutMs": 5_000}
BUDGET = {**BUDGETED, "budgetUsdcMicros": 60 * USD, "budgetEnforcement": "hard"}


def _lines(events: Sequence[BaseModel]) -> list[bytes]:
    return [e.model_dump_json(by_alias=True, exclude_unset=True).encode() for e in events]


def _trading() -> list[BaseModel]:
    """Everything before the reports: paper fills, the switch to reports, four orders."""
    return [
        global_change("v-paper", system=SYSTEM),
        trade("u2", at=T0, asset="won", market="m-won", trade_id="p1"),
        trade("u2", at=T0 + 1, asset="lost", market="m-lost", trade_id="p2"),
        trade("u2", at=T0 + 2, asset="won", market="m-won", price=600_000, trade_id="p3"),
        global_change("v-reports", system=REPORTS, sizing=BUDGET),
        *(trade("u1", at=T0 + 10 + i, asset=f"a{i}", trade_id=f"o{i}") for i in range(1, 4)),
    ]


def _attempt_ids(events: list[BaseModel]) -> dict[str, str]:
    out = io.BytesIO()
    replay(_lines(events), out, io.BytesIO())
    ids = {}
    for line in out.getvalue().splitlines():
        row = orjson.loads(line)
        if row["kind"] == "copyAttempt":
            ids.update(dict.fromkeys(row["tradeIds"], row["attemptId"]))
    return ids


def venue_events() -> list[BaseModel]:
    """The whole tape (see the module docstring)."""
    first = _trading()
    ids = _attempt_ids(first)
    o1, o2, o3 = ids["o1"], ids["o2"], ids["o3"]
    return [
        *first,
        report(o1, "PARTIAL", 4 * USD, 2 * USD, report_id="r1"),
        report(o1, "FILLED", 10 * USD, 5_100_000, report_id="r2"),
        report(o1, "PARTIAL", 1 * USD, 1 * USD, report_id="r-stale"),
        report(o2, "REJECTED", report_id="r3"),
        report(o3, "PARTIAL", 2 * USD, 1_050_000, report_id="r4"),
        report("no-such-attempt", "FILLED", 1 * USD, 1 * USD, report_id="r5"),
        resolution("won", USD, market="m-won"),
        resolution("lost", 0, market="m-lost"),
        tick(T0 + 6_000),  # o3 expires (opened at T0 + 13, timeout 5 s)
        global_change("v-off", system=REPORTS, sizing={**BUDGET, "budgetedDynamicEnabled": False}),
        trade("u1", at=T0 + 7_000, asset="a4", trade_id="o4"),  # stays open: end of tape forces no timeout
        global_change("v-on", system=REPORTS, sizing=BUDGET),
        trade("u1", at=T0 + 8_000, asset="a1", side="SELL", notional=2 * USD, trade_id="o5"),
    ]


class VenueSample:
    """The venue tape (or `events`) replayed: its lines by kind, the core's outputs, the replay's summary."""

    def __init__(self, events: Sequence[BaseModel] | None = None) -> None:
        self.lines = _lines(venue_events() if events is None else events)
        out = io.BytesIO()
        self.result: ReplayResult = replay(self.lines, out, io.BytesIO(), PartitionState(), tally=True)
        self.outputs = [orjson.loads(line) for line in out.getvalue().splitlines()]
        self.output_lines = out.getvalue().splitlines()
        self.summary: dict[str, LeaderSummary] = {
            r.leader_id: r for r in summarize(self.result.state, self.result.tallies)
        }

    def of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        return [o for o in self.outputs if o["kind"] in kinds]

    def messages(self) -> dict[str, list[bytes]]:
        """What the live system's topics would carry: topic base name -> messages in order."""
        kinds = [orjson.loads(line)["kind"] for line in self.lines]
        out = list(zip(self.output_lines, (o["kind"] for o in self.outputs), strict=True))
        return {
            CONFIG_CHANGES: [x for x, k in zip(self.lines, kinds, strict=True) if k == "configChange"],
            EXECUTIONS: [x for x, k in zip(self.lines, kinds, strict=True) if k == "executionReport"],
            COPY_ATTEMPTS: [x for x, k in out if k == "copyAttempt"],
            BOOK_EVENTS: [x for x, k in out if k in BOOK_EVENT_KINDS],
        }

    def project_into(
        self,
        db: str,
        order: tuple[str, ...] = (CONFIG_CHANGES, COPY_ATTEMPTS, BOOK_EVENTS),
        *,
        redelivered: bool = False,
    ) -> None:
        """Project the topics of `order`, each topic one batch (the projector does not read the executions:
        the core's orderUpdated outputs carry every order's state).

        `redelivered`: only the book events again, at later offsets (as a restarted worker emits its outputs
        again)."""
        store = ProjectionStore(db)
        store.create_schema()
        messages = self.messages()
        first = len(self.lines) if redelivered else 0
        topics = (BOOK_EVENTS,) if redelivered else order
        try:
            for topic in topics:
                lines = messages[topic]
                decoded: list[Decoded] = [
                    (topic, 0, first + i, decode_output(topic, line), line.decode())
                    for i, line in enumerate(lines)
                ]
                project_batch(store, decoded, {(topic, 0): first + len(lines)})
        finally:
            store.close()
