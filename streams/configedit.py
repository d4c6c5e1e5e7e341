"""``copybot config``: show the effective configuration, and change it safely.

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

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from models.config import RULES, SECTIONS_OF_SCOPE, ChangeOutcome, ConfigStore, Docs, Scope, apply_change
from models.events import SECTION_NAMES, ConfigChange
from streams.cli.terminal import table, usd
from streams.kafka.client import CopybotClient, KafkaUnavailable, quiet_kafka_logs
from streams.serde import DecodeError, decode_event
from streams.settings import CONFIG_CHANGES, Settings, SettingsError

EXIT_REJECTED = 2


class AssignmentError(ValueError):
    """A ``section.key=value`` argument that cannot be understood; the message says why."""


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
            doc[a.key] = a.value
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


def format_show(result: Fold, leader: str | None) -> str:
    """The ``config show`` output."""
    store = result.store
    effective = store.global_effective if leader is None else store.for_leader(leader)
    scope = "GLOBAL" if leader is None else f"leader {leader}"
    lines = [
        f"effective config of {scope}",
        f"configVersion: {store.version or '— (no change accepted yet)'}",
        f"Budgeted Dynamic active: {'yes' if effective.budgeted_dynamic_active else 'no'}"
        + (f" ({effective.budget_enforcement.upper()})" if effective.budgeted_dynamic_active else ""),
    ]
    if leader is not None and leader not in store.user_docs:
        lines.append(f"{leader} has no USER documents: everything is inherited")
    lines += ["", table(["key", "value", "from"], effective_rows(store, leader), [False, False, False]), ""]
    lines.append(
        f"folded {result.accepted + result.rejected + result.invalid:,} messages of config-changes: "
        f"{result.accepted:,} accepted, {result.rejected:,} rejected, {result.invalid:,} invalid"
    )
    return "\n".join(lines)


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


# --- command line -------------------------------------------------------------------------------------

ASSIGNMENT_HELP = (
    "section.key=value edits; values are JSON (sizing.budgetUsdcMicros=30000000, "
    "guardrails.maxBuyCostPerShareMicros=950000, system.copyEngineEnabled=false); enum and string keys also "
    "take plain text (sizing.sizingMode=budgetedDynamic); section.key= (nothing after =) removes the key so "
    "it inherits"
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``copybot config {show,set-global,set-user}``."""
    cmd = subparsers.add_parser(
        "config",
        help="show or change the live configuration (GLOBAL and per leader)",
        description=(
            "Show or change copybot's configuration, which lives in the config-changes topic. Reading folds "
            "every change from the beginning exactly as the worker does. Changes are validated locally "
            "before they are published: an invalid change is not published (exit code 2)."
        ),
    )
    actions = cmd.add_subparsers(title="actions", metavar="ACTION")

    show = actions.add_parser(
        "show",
        help="print the effective config of GLOBAL or of one leader",
        description=(
            "Print the effective config (defaults < GLOBAL < USER) of GLOBAL, or of a leader with --leader: "
            "each section.key, its value and where it comes from (default, GLOBAL or USER), plus the "
            "configVersion (the newest accepted changeId)."
        ),
    )
    show.add_argument("--leader", metavar="U", help="show the effective config of leader U (followedUserId)")
    show.set_defaults(func=_cmd_show)

    for name, scope in (("set-global", "GLOBAL"), ("set-user", "USER")):
        what = "the GLOBAL defaults" if scope == "GLOBAL" else "one leader's overrides (USER scope)"
        act = actions.add_parser(
            name,
            help=f"change {what}",
            description=(
                f"Change {what}. The change carries the current stored document of each touched section with "
                "the edits applied (a section in a change replaces the stored one), gets a new changeId, and "
                "is validated against the current config first: if it would be rejected, the errors are "
                "printed, nothing is published and the exit code is 2. Warnings (e.g. a USER "
                "sizing.budgetedDynamicEnabled, which is GLOBAL only) are printed after publishing."
            ),
        )
        if scope == "USER":
            act.add_argument("leader", metavar="LEADER", help="the leader (followedUserId) to change")
        act.add_argument("assignments", nargs="*", metavar="section.key=value", help=ASSIGNMENT_HELP)
        act.add_argument(
            "--unset",
            action="append",
            default=[],
            metavar="section.key",
            help="remove this key from the scope's document so it inherits (repeatable)",
        )
        act.set_defaults(func=_cmd_set, scope=scope)
    cmd.set_defaults(func=lambda args: _no_action(cmd))


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _settings(name: str) -> Settings | None:
    quiet_kafka_logs()
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return None


def _cmd_show(args: argparse.Namespace) -> int:
    name = "copybot config show"
    settings = _settings(name)
    if settings is None:
        return 2

    async def run() -> Fold:
        async with CopybotClient(settings, client_id="copybot-config") as client:
            return await read_store(client)

    try:
        result = asyncio.run(run())
    except KafkaUnavailable as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    print(format_show(result, args.leader))
    return 0


def _cmd_set(args: argparse.Namespace) -> int:
    scope: Scope = args.scope
    leader: str | None = getattr(args, "leader", None)
    name = f"copybot config {'set-global' if scope == 'GLOBAL' else 'set-user'}"
    try:
        assignments = [parse_assignment(a) for a in args.assignments] + [parse_unset(u) for u in args.unset]
        if not assignments:
            raise AssignmentError(
                "nothing to change: give at least one section.key=value or --unset section.key"
            )
        if leader is not None and not leader.strip():
            raise AssignmentError("LEADER must be a non-empty followedUserId")
    except AssignmentError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    settings = _settings(name)
    if settings is None:
        return 2

    async def run() -> SetResult:
        async with CopybotClient(settings, client_id="copybot-config") as client:
            return await set_config(client, scope, leader, assignments)

    try:
        result = asyncio.run(run())
    except KafkaUnavailable as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    target = "GLOBAL" if leader is None else f"leader {leader}"
    if not result.outcome.accepted:
        print(f"{name}: the change to {target} would be rejected; nothing was published:", file=sys.stderr)
        for error in result.outcome.errors:
            print(f"  {error}", file=sys.stderr)
        return EXIT_REJECTED
    print(f"published configChange {result.change_id} ({target}) at {result.published_at}")
    for key, before, after in result.changes:
        print(f"  {key}: {before} -> {after}")
    for warning in result.outcome.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
