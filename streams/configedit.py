"""Show the effective configuration, and change it safely (``copybot config``, the API's config writes).

``config show`` reads config-changes from the beginning and folds every change with
:func:`models.config.apply_change`, exactly as the worker does (invalid envelopes are dead letters and
skipped, rejected changes leave the config as it was), then prints the effective config of GLOBAL or of one
leader: each ``section.key``, its value, and where it comes from (default, GLOBAL or USER).

``config set-global`` / ``config set-user LEADER`` change keys. A section in a change *replaces* the stored
section of that scope wholesale, so the change carries the scope's current stored document of each touched
section (from the fold) with the requested keys set or removed. It is validated locally against the folded
store first; a change that would be rejected is not published (exit code 2, every error named).

The fold is a snapshot: a change published by someone else between the fold and the publish is not seen
(last writer wins per section); the worker validates every change again against its own store.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from models.config import RULES, SECTIONS_OF_SCOPE, ChangeOutcome, ConfigStore, Docs, Scope, apply_change
from models.events import SECTION_NAMES, ConfigChange
from models.units import usd
from streams.errors import AssignmentError
from streams.kafka import CopybotClient
from streams.serde import DecodeError, decode_event
from streams.topology import CONFIG_CHANGES

__all__ = [
    "Assignment",
    "AssignmentError",
    "Fold",
    "SetResult",
    "build_change",
    "effective_rows",
    "fold",
    "parse_assignment",
    "parse_unset",
    "read_store",
    "set_config",
]


@dataclass(frozen=True, slots=True)
class Assignment:
    """One requested edit: set ``section.key`` to `value`, or remove it (`unset`) so it inherits."""

    section: str
    key: str
    value: Any = None
    unset: bool = False

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


def _split_name(name: str, text: str) -> tuple[str, str]:
    section, dot, key = name.strip().partition(".")
    if not dot or not section or not key:
        raise AssignmentError(f"{text!r}: expected section.key=value, e.g. sizing.budgetUsdcMicros=30000000")
    if section not in SECTION_NAMES:
        raise AssignmentError(f"{text!r}: unknown section {section!r} (sections: {', '.join(SECTION_NAMES)})")
    return section, key


def parse_value(section: str, key: str, text: str) -> Any:
    """A value from the command line: JSON, except that string keys (enums, labels) also take plain text."""
    rule = RULES.get(section, {}).get(key)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text  # not JSON: a plain string (validation names the key if a string is wrong here)
    if rule is not None and rule.type in ("enum", "str") and not isinstance(value, str):
        return text  # e.g. leader.label=2024 is the label "2024"
    return value


def parse_assignment(text: str) -> Assignment:
    """Parse ``section.key=value`` (``section.key=`` with nothing after ``=`` removes the key)."""
    name, eq, raw = text.partition("=")
    if not eq:
        raise AssignmentError(f"{text!r}: expected section.key=value, e.g. sizing.budgetUsdcMicros=30000000")
    section, key = _split_name(name, text)
    if raw == "":
        return Assignment(section, key, unset=True)
    return Assignment(section, key, parse_value(section, key, raw))


def parse_unset(text: str) -> Assignment:
    """Parse the argument of ``--unset section.key``."""
    section, key = _split_name(text, text)
    return Assignment(section, key, unset=True)


@dataclass(frozen=True, slots=True)
class Fold:
    """The config store after folding config-changes, and what the fold saw."""

    store: ConfigStore
    accepted: int = 0
    rejected: int = 0
    invalid: int = 0


def fold(values: Iterable[bytes]) -> Fold:
    """Fold raw config-changes values in order with :func:`apply_change`, as the worker does."""
    store = ConfigStore()
    accepted = rejected = invalid = 0
    for value in values:
        try:
            event = decode_event(value)
        except DecodeError:
            invalid += 1
            continue
        if not isinstance(event, ConfigChange):
            invalid += 1
            continue
        outcome = apply_change(store, event)
        if outcome.store is not None:
            store = outcome.store
            accepted += 1
        elif outcome.errors:
            rejected += 1
    return Fold(store, accepted, rejected, invalid)


def stored_docs(store: ConfigStore, scope: Scope, leader: str | None) -> Docs:
    """The stored documents of a scope (only the keys an operator set)."""
    if scope == "GLOBAL":
        return store.global_docs
    assert leader is not None
    return store.user_docs.get(leader, {})


def build_change(
    store: ConfigStore,
    scope: Scope,
    leader: str | None,
    assignments: Sequence[Assignment],
    change_id: str,
    changed_at_ms: int,
) -> tuple[bytes, ConfigChange]:
    """The wire JSON and model of a change that applies `assignments` to the scope's stored documents.

    Each touched section is the current stored document of that section with the edits applied (a
    section in a change replaces the stored one wholesale); untouched sections are left out (unchanged).
    Raises :class:`AssignmentError` when nothing is to be changed.
    """
    if not assignments:
        raise AssignmentError("nothing to change: give at least one section.key=value or --unset section.key")
    current = stored_docs(store, scope, leader)
    sections: dict[str, dict[str, Any]] = {}
    for a in assignments:
        doc = sections.setdefault(a.section, dict(current.get(a.section, {})))
        if a.unset:
            doc.pop(a.key, None)
        else:
            doc[a.key] = _encodable(a)
    wire: dict[str, Any] = {
        "kind": "configChange",
        "changeId": change_id,
        "scope": scope,
        "followedUserId": leader if scope == "USER" else None,
        "changedAtMs": changed_at_ms,
        **sections,
    }
    raw = orjson.dumps(wire)
    event = decode_event(raw)  # the same strict decode the worker applies
    assert isinstance(event, ConfigChange)
    return raw, event


def _encodable(a: Assignment) -> Any:
    """`a`'s value, or :class:`AssignmentError` when it cannot go on the wire (orjson: 64-bit integers)."""
    try:
        orjson.dumps(a.value)
    except orjson.JSONEncodeError as exc:
        raise AssignmentError(
            f"{a.name}: {a.value!r} cannot be sent ({exc}; integers must fit in 64 bits)"
        ) from None
    return a.value


def _source(store: ConfigStore, leader: str | None, section: str, key: str) -> tuple[Any, str]:
    user = store.user_docs.get(leader, {}) if leader is not None else {}
    if key in user.get(section, {}) and not (section == "sizing" and key == "budgetedDynamicEnabled"):
        return user[section][key], "USER"
    if key in store.global_docs.get(section, {}):
        return store.global_docs[section][key], "GLOBAL"
    return RULES[section][key].default, "default"


def _show_value(key: str, value: Any) -> str:
    if value is None:
        return "(not set: off)"
    text = orjson.dumps(value).decode()
    if isinstance(value, bool) or not isinstance(value, int):
        return text
    if key.endswith("Micros"):
        return f"{text}  ({usd(value)})"
    if key.endswith("Bps"):
        return f"{text}  ({value / 100:g}%)"
    if key.endswith("Ms"):
        return f"{text}  ({value / 1000:g} s)"
    return text


def effective_rows(store: ConfigStore, leader: str | None) -> list[list[str]]:
    """Rows ``[section.key, value, from]`` of the effective config of GLOBAL (`leader` None) or a leader."""
    sections = SECTIONS_OF_SCOPE["GLOBAL"] if leader is None else SECTION_NAMES
    rows = []
    for section in sections:
        for key in RULES[section]:
            value, source = _source(store, leader, section, key)
            if leader is not None and section == "leader" and key == "label" and value is None:
                value, source = leader, "default"  # SPEC 2.4: the label defaults to the leader id
            rows.append([f"{section}.{key}", _show_value(key, value), source])
    return rows


async def read_store(client: CopybotClient) -> Fold:
    """Fold config-changes from the beginning to its current end."""
    values = [record.value async for record in client.read(CONFIG_CHANGES, from_beginning=True, follow=False)]
    return fold(values)


@dataclass(frozen=True, slots=True)
class SetResult:
    """What ``config set-*`` did: the change id, the validation outcome, where it was published."""

    change_id: str
    outcome: ChangeOutcome
    published_at: str | None
    changes: tuple[tuple[str, str, str], ...]
    """(section.key, before, after) of each edit, for the report."""


async def set_config(
    client: CopybotClient, scope: Scope, leader: str | None, assignments: Sequence[Assignment]
) -> SetResult:
    """Build the change from the current fold, validate it, and publish it when accepted."""
    result = await read_store(client)
    change_id = str(uuid.uuid4())
    raw, change = build_change(result.store, scope, leader, assignments, change_id, int(time.time() * 1000))
    outcome = apply_change(result.store, change)
    changes = tuple(
        (
            a.name,
            _show_value(a.key, _source(result.store, leader, a.section, a.key)[0]),
            "(inherit)" if a.unset else _show_value(a.key, a.value),
        )
        for a in assignments
        if a.section in RULES and a.key in RULES[a.section]
    )
    if not outcome.accepted:
        return SetResult(change_id, outcome, None, changes)
    (future,) = await client.publish_decoded(change, raw)
    await client.flush()
    meta = future.result()
    return SetResult(change_id, outcome, f"{meta.topic}:{meta.partition}:{meta.offset}", changes)
