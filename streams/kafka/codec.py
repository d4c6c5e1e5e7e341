"""Fast LZ4 for the worker's producer: a private hook into aiokafka (tests/unit/test_worker_hooks.py).

aiokafka compresses a producer batch with ``aiokafka.codec.lz4_encode(data)`` at its default
``level=9`` (aiokafka/codec.py:166-178), which is LZ4-HC: ~130 MB/s here, 13 % of the worker's CPU on a
backlog (a batch of 10k log records writes ~5 MB of attempts). Level 1 is LZ4's fast mode (~750 MB/s,
a slightly larger output) and what Kafka's own producer uses unless told otherwise. Both record batch
builders look the function up as a module global on every batch: the Cython one
(aiokafka/record/_crecords/default_records.pyx:59-61, 0.14.0) and the Python fallback
(aiokafka/record/default_records.py:70, 552), so replacing those globals is enough; the frame format
(independent blocks, no content checksum: KIP-57) is unchanged, so any Kafka consumer reads it.
"""

from __future__ import annotations

from typing import Any

import cramjam

LZ4_LEVEL = 1


def lz4_fast(payload: Any, level: int = LZ4_LEVEL) -> bytes:
    """``aiokafka.codec.lz4_encode`` at LZ4's fast level."""
    compressor = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
    compressor.compress(payload)
    return bytes(compressor.finish())


def builders() -> list[Any]:
    """The modules whose ``lz4_encode`` global aiokafka's record batch builders call."""
    import aiokafka.record.default_records as python_builder

    modules: list[Any] = [python_builder]
    try:
        import aiokafka.record._crecords.default_records as cython_builder
    except ImportError:  # no compiled extension (AIOKAFKA_NO_EXTENSIONS): the Python builder is used
        pass
    else:
        modules.append(cython_builder)
    return modules


def use_fast_lz4() -> None:
    """Make every aiokafka producer batch of this process use :func:`lz4_fast` (idempotent)."""
    for module in builders():
        module.lz4_encode = lz4_fast


__all__ = ["LZ4_LEVEL", "builders", "lz4_fast", "use_fast_lz4"]
