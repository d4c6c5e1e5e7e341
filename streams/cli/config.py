"""``copybot config {show,set-global,set-user}``: the live configuration (see :mod:`streams.configedit`)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from models.config import Scope
from streams.cli.main import command, command_group
from streams.cli.terminal import table
from streams.configedit import (
    Assignment,
    Fold,
    SetResult,
    effective_rows,
    parse_assignment,
    parse_unset,
    read_store,
    set_config,
)
from streams.errors import AssignmentError
from streams.kafka import CopybotClient, quiet_kafka_logs
from streams.settings import Settings

EXIT_REJECTED = 2
"""A change the config would reject is not published; like a bad edit, it exits 2."""

ASSIGNMENT_HELP = (
    "section.key=value edits; values are JSON (sizing.budgetUsdcMicros=30000000, "
    "guardrails.maxBuyCostPerShareMicros=950000, system.copyEngineEnabled=false); enum and string keys also "
    "take plain text (sizing.sizingMode=budgetedDynamic); section.key= (nothing after =) removes the key so "
    "it inherits"
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = command_group(
        subparsers,
        "config",
        help="show or change the live configuration (GLOBAL and per leader)",
        description=(
            "Show or change copybot's configuration, which lives in the config-changes topic. Reading folds "
            "every change from the beginning exactly as the worker does. Changes are validated locally "
            "before they are published: an invalid change is not published (exit code 2)."
        ),
    )

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
    command(show, run_show)

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
        command(act, run_set, scope=scope)


def run_show(args: argparse.Namespace) -> int:
    quiet_kafka_logs()
    settings = Settings.from_env()

    async def show() -> Fold:
        async with CopybotClient(settings, client_id="copybot-config") as client:
            return await read_store(client)

    print(format_show(asyncio.run(show()), args.leader))
    return 0


def _assignments(args: argparse.Namespace) -> list[Assignment]:
    assignments = [parse_assignment(a) for a in args.assignments] + [parse_unset(u) for u in args.unset]
    if not assignments:
        raise AssignmentError("nothing to change: give at least one section.key=value or --unset section.key")
    leader: str | None = getattr(args, "leader", None)
    if leader is not None and not leader.strip():
        raise AssignmentError("LEADER must be a non-empty followedUserId")
    return assignments


def run_set(args: argparse.Namespace) -> int:
    scope: Scope = args.scope
    leader: str | None = getattr(args, "leader", None)
    assignments = _assignments(args)
    quiet_kafka_logs()
    settings = Settings.from_env()

    async def publish() -> SetResult:
        async with CopybotClient(settings, client_id="copybot-config") as client:
            return await set_config(client, scope, leader, assignments)

    result = asyncio.run(publish())
    target = "GLOBAL" if leader is None else f"leader {leader}"
    if not result.outcome.accepted:
        print(
            f"{args.command}: the change to {target} would be rejected; nothing was published:",
            file=sys.stderr,
        )
        for error in result.outcome.errors:
            print(f"  {error}", file=sys.stderr)
        return EXIT_REJECTED
    print(f"published configChange {result.change_id} ({target}) at {result.published_at}")
    for key, before, after in result.changes:
        print(f"  {key}: {before} -> {after}")
    for warning in result.outcome.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


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
