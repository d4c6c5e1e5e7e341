"""A make-believe executor for ``copybot demo --scenario reports`` (not part of the decision core).

It does what a real executor does with copybot (README, "Plugging in an executor"): it consumes the copy
attempts, places each EXECUTE on a pretend venue, and publishes what happened as ``executionReport``s keyed by
the leader to ``copybot.executions`` (SPEC 13.3). What the venue does with an order is drawn from a random
generator seeded with ``{seed}:{attemptId}``, so the same seed always answers an attempt the same way, and an
attempt delivered twice is answered once (idempotent by attemptId; report ids are derived from it too, so
even a restarted simulator repeats only reports the worker ignores).

The venue's answers, with realistic prices (a BUY pays up to 1.5 % over the reference price, a SELL receives
up to 1.5 % under it):

================  ======================================================================  ======
plan              reports                                                                 share
================  ======================================================================  ======
filled            FILLED at once                                                          40 %
partialFilled     PARTIAL (30–80 %) at once, then FILLED                                  15 %
partialCancelled  PARTIAL at once, then CANCELLED (the rest never fills)                  10 %
partialOnly       PARTIAL at once, then nothing: the order expires partly filled           5 %
rejected          REJECTED at once, nothing filled                                        10 %
late              FILLED 20–120 s of tape time later (after the order timed out or not)   10 %
never             nothing: the order expires after ``system.orderTimeoutMs``              10 %
================  ======================================================================  ======

Time is the tape's: the simulator's clock is the newest ``decidedAtMs`` it has seen, and a late report is
published once that clock passes its due time (or when the simulator stops).
"""

from __future__ import annotations

import asyncio
import heapq
import random
import threading
from collections import Counter
from typing import Any

from streams.kafka.client import CopybotClient
from streams.settings import Settings

MICROS = 1_000_000
PLANS = (
    ("filled", 40),
    ("partialFilled", 15),
    ("partialCancelled", 10),
    ("partialOnly", 5),
    ("rejected", 10),
    ("late", 10),
    ("never", 10),
)
"""What the pretend venue does with an order, and how often (percent)."""
LATE_MS = (20_000, 120_000)
"""How much tape time a late report lags its attempt."""
MAX_SLIPPAGE_BPS = 150


Report = dict[str, Any]


class ExecutorSim:
    """The simulator's logic, without Kafka: attempts in, reports out (see the module docstring)."""

    def __init__(self, seed: int = 7) -> None:
        self.seed = seed
        self.answered: set[str] = set()
        self.plans: Counter[str] = Counter()
        self.clock_ms = 0
        self._late: list[tuple[int, int, Report]] = []
        self._late_seq = 0

    def plan(self, attempt_id: str) -> tuple[str, random.Random]:
        """The venue's plan for an attempt, and the generator that draws its details (seeded by the id)."""
        rng = random.Random(f"{self.seed}:{attempt_id}")
        roll = rng.randrange(100)
        for name, share in PLANS:
            if roll < share:
                return name, rng
            roll -= share
        raise AssertionError("PLANS shares must add up to 100")

    def on_attempt(self, attempt: dict[str, Any]) -> list[Report]:
        """The reports to publish now that `attempt` arrived (its own, and late ones that became due)."""
        self.clock_ms = max(self.clock_ms, attempt["decidedAtMs"])
        reports = []
        attempt_id = attempt["attemptId"]
        if attempt["decision"] == "EXECUTE" and attempt_id not in self.answered:
            self.answered.add(attempt_id)
            reports = self._answer(attempt)
        return reports + self.due()

    def due(self) -> list[Report]:
        """Late reports whose time has come, in due order."""
        out = []
        while self._late and self._late[0][0] <= self.clock_ms:
            out.append(heapq.heappop(self._late)[2])
        return out

    def remaining(self) -> list[Report]:
        """Every late report not yet published (the simulator is stopping), in due order."""
        out = [report for _, _, report in sorted(self._late)]
        self._late.clear()
        return out

    def _answer(self, attempt: dict[str, Any]) -> list[Report]:
        name, rng = self.plan(attempt["attemptId"])
        self.plans[name] += 1
        shares = attempt["targetShareMicros"]
        price = _fill_price(attempt["theirReferencePriceMicros"], attempt["side"], rng)
        part = shares * rng.randrange(30, 81) // 100
        at = attempt["decidedAtMs"] + rng.randrange(50, 1_500)

        def report(n: int, status: str, filled: int, when: int = at) -> Report:
            return {
                "kind": "executionReport",
                "reportId": f"{attempt['attemptId']}:{n}",
                "attemptId": attempt["attemptId"],
                "followedUserId": attempt["followedUserId"],
                "status": status,
                "filledShareMicros": filled,
                "filledNotionalMicros": filled * price // MICROS,
                "reportedAtMs": when,
            }

        if name == "filled":
            return [report(1, "FILLED", shares)]
        if name == "partialFilled":
            return [report(1, "PARTIAL", part), report(2, "FILLED", shares, at + rng.randrange(100, 2_000))]
        if name == "partialCancelled":
            return [report(1, "PARTIAL", part), report(2, "CANCELLED", part, at + rng.randrange(100, 2_000))]
        if name == "partialOnly":
            return [report(1, "PARTIAL", part)]
        if name == "rejected":
            return [report(1, "REJECTED", 0)]
        if name == "late":
            due = attempt["decidedAtMs"] + rng.randrange(*LATE_MS)
            self._late_seq += 1
            heapq.heappush(self._late, (due, self._late_seq, report(1, "FILLED", shares, due)))
        return []


def _fill_price(reference: int, side: str, rng: random.Random) -> int:
    slip = rng.randrange(MAX_SLIPPAGE_BPS + 1)
    if side == "BUY":
        return min(MICROS, reference * (10_000 + slip) // 10_000)
    return max(1, reference * (10_000 - slip) // 10_000)


class ExecutorThread:
    """The simulator on Kafka, in a thread of its own: reads copy-attempts from the beginning, publishes
    reports with :class:`~streams.kafka.client.CopybotClient`. ``stop()`` publishes the late reports still
    held back and returns once Kafka has acknowledged every report."""

    def __init__(self, settings: Settings, sim: ExecutorSim) -> None:
        self.settings = settings
        self.sim = sim
        self.published = 0
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="demo-executor", daemon=True)

    def start(self, timeout_s: float = 60.0) -> ExecutorThread:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"the demo executor did not connect within {timeout_s:g}s")
        if self.error is not None:
            raise self.error
        return self

    def answered_all(self, attempt_ids: set[str]) -> bool:
        """Whether every one of `attempt_ids` has been answered; raises the simulator's error if it failed."""
        if self.error is not None:
            raise self.error
        return attempt_ids <= self.sim.answered

    def stop(self, timeout_s: float = 60.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the demo executor did not stop within {timeout_s:g}s")
        if self.error is not None:
            raise self.error

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by start()/stop() in the demo's thread
            self.error = exc
        finally:
            self._ready.set()

    async def _run(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with CopybotClient(self.settings, client_id="demo-executor") as client:
            self._ready.set()
            consume = asyncio.create_task(self._consume(client))
            stopping = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait({consume, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if consume in done:
                consume.result()  # the consumer failed: raise its error
            consume.cancel()
            await asyncio.gather(consume, return_exceptions=True)
            await self._publish(client, self.sim.remaining())
            await client.flush()

    async def _consume(self, client: CopybotClient) -> None:
        async for attempt in client.attempts(from_beginning=True, follow=True):
            await self._publish(client, self.sim.on_attempt(attempt))

    async def _publish(self, client: CopybotClient, reports: list[Report]) -> None:
        for report in reports:
            await client.publish(report)
            self.published += 1
        if reports:
            await client.flush()


def run_in_thread(settings: Settings, seed: int) -> ExecutorThread:
    """Start the simulator on the topics of `settings` (see :class:`ExecutorThread`)."""
    return ExecutorThread(settings, ExecutorSim(seed)).start()
