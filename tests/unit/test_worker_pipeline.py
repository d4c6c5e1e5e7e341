"""Pipelined saving (streams/worker/app.py ``Runtime.hand_over``/``settle``, decisions.md 36): at most one
batch completes in the background, and whoever waits for it cannot cancel it half-way.

The ordering the revoke path relies on is Faust's; these tests pin it, so an upgrade that moves it fails
here instead of handing over a partition with a batch half-saved.
"""

from __future__ import annotations

import asyncio
import inspect

import faust
from faust.app import base as faust_app

from streams.settings import Settings
from streams.worker.app import PIPELINED, Runtime


def _runtime() -> Runtime:
    return Runtime(faust.App("pipeline-test", broker="kafka://127.0.0.1:1", store="memory://"), Settings())


def test_pipelining_is_on() -> None:
    assert PIPELINED is True


def test_faust_suspends_the_flow_and_waits_for_acks_before_the_revoke_signal() -> None:
    source = inspect.getsource(faust_app.App._on_partitions_revoked)
    suspend = source.index("self.flow_control.suspend")
    wait_empty = source.index("self._consumer_wait_empty")
    signal = source.index("self.on_partitions_revoked.send")
    assert suspend < wait_empty < signal


def test_faust_sends_before_shutdown_while_the_producer_still_runs() -> None:
    source = inspect.getsource(faust_app.App.on_stop)
    assert source.index("self.on_before_shutdown.send") < source.index("self._producer_flush")


async def test_settle_waits_for_the_completion_in_flight() -> None:
    rt = _runtime()
    release = asyncio.Event()
    done: list[str] = []

    async def completion() -> None:
        await release.wait()
        done.append("saved")

    rt.in_flight = asyncio.ensure_future(completion())
    settling = asyncio.ensure_future(rt.settle())
    await asyncio.sleep(0)  # let settle start waiting (not a synchronisation wait: nothing is released)
    assert not settling.done()
    release.set()
    await asyncio.wait_for(settling, 5)
    assert done == ["saved"]
    assert rt.in_flight is None


async def test_a_cancelled_waiter_does_not_cancel_the_completion() -> None:
    rt = _runtime()
    release = asyncio.Event()

    async def completion() -> None:
        await release.wait()

    flight = rt.in_flight = asyncio.ensure_future(completion())
    settling = asyncio.ensure_future(rt.settle())
    await asyncio.sleep(0)
    settling.cancel()
    await asyncio.gather(settling, return_exceptions=True)
    assert not flight.cancelled()
    release.set()
    await asyncio.wait_for(rt.settle(), 5)
    assert flight.done()
    assert not flight.cancelled()
    assert rt.in_flight is None


async def test_settle_with_nothing_in_flight_returns_at_once() -> None:
    rt = _runtime()
    await asyncio.wait_for(rt.settle(), 1)
    assert rt.in_flight is None


def test_forget_drops_only_the_named_partitions() -> None:
    rt = _runtime()
    rt.applied.update({0: 10, 1: 20})
    rt.forget([0, 5])
    assert rt.applied == {1: 20}
