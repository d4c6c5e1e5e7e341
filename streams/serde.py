"""Serialisation in one place: JSON bytes <-> wire models. Topics and files carry raw bytes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from models.events import (
    INPUT_EVENT,
    DeadLetter,
    InputEvent,
    WireOutput,
)
from streams.errors import DecodeError
from streams.topology import REPLAY_PREFIX, TOPIC_OF_KIND

__all__ = ["DecodeError", "InputEvent"]  # importable from here, where the edges have always found them
_VALIDATE_JSON = INPUT_EVENT.validator.validate_json  # pydantic-core directly: skips a Python layer
MAX_DEAD_LETTER_VALUE = 1000
"""Characters of the raw input kept in a dead letter."""


_TICK_MAX_BYTES = 64
"""Inputs up to this long are looked up in :data:`_TICKS` (a tick is ~40 bytes; a trade, ~400)."""
_TICKS: dict[bytes | str, InputEvent] = {}
"""Ticks decoded lately, by their raw JSON. A tick goes to every decision partition, so a worker that
owns several decodes the same bytes once per partition; its model is frozen, so one can be shared."""
_TICKS_KEPT = 4096


def decode_event(raw: bytes | str) -> InputEvent:
    """Strictly decode one input event; raises :class:`DecodeError` with a readable reason."""
    short = len(raw) <= _TICK_MAX_BYTES
    if short and (tick := _TICKS.get(raw)) is not None:
        return tick
    try:
        # camelCase only: the Python field names are not part of the wire contract.
        event: InputEvent = _VALIDATE_JSON(raw, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise DecodeError(describe_validation_error(exc)) from None
    if short and event.kind == "tick":
        if len(_TICKS) >= _TICKS_KEPT:
            _TICKS.clear()
        _TICKS[raw] = event
    return event


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each offending field, e.g. ``leaderTrade.priceMicros: Input should be ...``."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return "; ".join(parts)


def encode(output: BaseModel | WireOutput | Mapping[str, Any]) -> bytes:
    """The wire JSON of an output or event (camelCase, compact); attempts arrive as wire dicts,
    leaderBooks and orderUpdates as wrapped wire dicts."""
    if isinstance(output, WireOutput):  # first: the many book events
        return orjson.dumps(output.wire)
    if isinstance(output, BaseModel):
        return output.model_dump_json(by_alias=True).encode()
    return orjson.dumps(output)


def dead_letter(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | str | None,
    raw: bytes | None,
    error: str,
    at_ms: int,
) -> DeadLetter:
    """The ``deadLetter`` record of an input that failed to decode: where it was, its raw value (first
    1000 characters) and the reason."""
    text = (raw or b"").decode("utf-8", errors="replace")
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key,
        value=text[:MAX_DEAD_LETTER_VALUE],
        error=error,
        at_ms=at_ms,
    )


EventT = TypeVar("EventT", bound=BaseModel)


def decode_expecting(raw: bytes | str, kind: type[EventT]) -> EventT:
    """Decode an input that must be of one kind (a topic carries one kind); DecodeError otherwise."""
    event = decode_event(raw)
    if not isinstance(event, kind):
        wanted = kind.__name__[0].lower() + kind.__name__[1:]
        raise DecodeError(f"expected a {wanted} on this topic, got {event.kind}")
    return event


def dumps(value: Any) -> bytes:
    """Plain JSON for non-model values (reports, tables)."""
    return orjson.dumps(value)


def peek(raw: bytes | str) -> dict[str, Any] | None:
    """The raw JSON object, if the input parses as one (used to route and key dead letters)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def topic_for_raw(raw: bytes | str, default: str) -> str:
    """The (replay-prefixed) topic an input would belong to by its ``kind``, or `default` when unknown."""
    obj = peek(raw)
    kind = obj.get("kind") if obj else None
    base = TOPIC_OF_KIND.get(kind) if isinstance(kind, str) else None
    return default if base is None else f"{REPLAY_PREFIX}.{base}"


def key_for_raw(raw: bytes | str) -> str | None:
    """The Kafka key an input would carry (its leader id, or GLOBAL), when it can be read."""
    obj = peek(raw)
    if obj is None:
        return None
    leader = obj.get("followedUserId")
    if isinstance(leader, str):
        return leader
    if obj.get("kind") == "marketResolved" and isinstance(obj.get("assetId"), str):
        return str(obj["assetId"])  # resolutions are keyed by asset (SPEC 13.8.8)
    if obj.get("kind") == "configChange" and obj.get("scope") == "GLOBAL":
        return "GLOBAL"
    return None
