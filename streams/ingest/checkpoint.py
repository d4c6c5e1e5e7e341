"""Where each followed wallet's scan stands, so a restart neither misses nor republishes a row.

A checkpoint is one JSON record per wallet, kept in the compacted topic ``copybot.ingest-checkpoints``
(key = the wallet), written after the events it covers were acknowledged by Kafka::

    {"kind": "ingestCheckpoint", "wallet": "0x…", "leader": "alice", "timestampSec": 1764590000,
     "seen": [["pm-…-0", 1764590000], …], "updatedAtMs": 1764590012345}

``timestampSec`` is the newest row published (or, before any row, where the scan started). The next
scan starts at ``timestampSec - lookback`` and skips the ids in ``seen`` (every row published or
dead-lettered at or after that time), so rows at the boundary second are never published twice, and a
row the API indexes a little late (up to the lookback) is still found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.serde import dumps, peek

KIND = "ingestCheckpoint"


class BadCheckpoint(ValueError):
    """A record on the checkpoint topic that is not a checkpoint (it is ignored, with a warning)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One wallet's scan position and the ids already handled near it."""

    wallet: str
    leader: str
    timestamp_sec: int
    seen: tuple[tuple[str, int], ...]
    updated_at_ms: int

    def encode(self) -> bytes:
        return dumps(
            {
                "kind": KIND,
                "wallet": self.wallet,
                "leader": self.leader,
                "timestampSec": self.timestamp_sec,
                "seen": [list(pair) for pair in self.seen],
                "updatedAtMs": self.updated_at_ms,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Checkpoint:
        doc: dict[str, Any] | None = peek(raw)
        if doc is None or doc.get("kind") != KIND:
            raise BadCheckpoint("not an ingestCheckpoint record")
        try:
            seen = tuple((str(i), int(t)) for i, t in doc["seen"])
            return cls(
                wallet=str(doc["wallet"]),
                leader=str(doc["leader"]),
                timestamp_sec=int(doc["timestampSec"]),
                seen=seen,
                updated_at_ms=int(doc["updatedAtMs"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadCheckpoint(f"malformed ingestCheckpoint ({exc!r})") from None
