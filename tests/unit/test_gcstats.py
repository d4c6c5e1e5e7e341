"""The worker's garbage-collector pause counter and thresholds (streams/worker/gcstats.py)."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator

import pytest

from streams.worker.gcstats import THRESHOLDS, GcPauses, tune_gc


@pytest.fixture
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_collections_are_counted_per_generation_with_their_pauses() -> None:
    pauses = GcPauses().install()
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        pauses.uninstall()
    assert pauses.count[0] >= 1
    assert pauses.count[2] == 2
    assert 0 < pauses.longest_s <= sum(pauses.total_s)
    gc.collect(2)  # uninstalled: no longer counted
    assert pauses.count[2] == 2
    assert re.fullmatch(
        r"GC \d+/\d+/2 collections \(gen 0/1/2\), \d+ ms in all, longest \d+ ms", pauses.summary()
    )


def test_install_is_idempotent() -> None:
    pauses = GcPauses().install().install()
    try:
        gc.collect(1)
    finally:
        pauses.uninstall()
    assert pauses.count[1] == 1
    assert pauses._callback not in gc.callbacks


def test_the_worker_collects_young_objects_less_often(thresholds: None) -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == THRESHOLDS
    assert THRESHOLDS[0] > 700
