"""The config edits without Kafka (streams.configedit): parsing edits, folding changes, building a change."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from models.config import apply_change
from streams.configedit import (
    Assignment,
    AssignmentError,
    build_change,
    effective_rows,
    fold,
    parse_assignment,
    parse_unset,
)


def change(change_id: str, scope: str = "GLOBAL", user: str | None = None, **sections: Any) -> bytes:
    return orjson.dumps(
        {
            "kind": "configChange",
            "changeId": change_id,
            "scope": scope,
            "followedUserId": user,
            "changedAtMs": 1,
            **sections,
        }
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sizing.budgetUsdcMicros=30000000", Assignment("sizing", "budgetUsdcMicros", 30_000_000)),
        ("system.copyEngineEnabled=false", Assignment("system", "copyEngineEnabled", False)),
        ('sizing.sizingMode="budgetedDynamic"', Assignment("sizing", "sizingMode", "budgetedDynamic")),
        ("sizing.sizingMode=budgetedDynamic", Assignment("sizing", "sizingMode", "budgetedDynamic")),
        ("leader.label=2024", Assignment("leader", "label", "2024")),
        ("leader.label=Alice A", Assignment("leader", "label", "Alice A")),
        ("sizing.budgetUsdcMicros=abc", Assignment("sizing", "budgetUsdcMicros", "abc")),
        (
            "guardrails.maxBuyCostPerShareMicros=",
            Assignment("guardrails", "maxBuyCostPerShareMicros", unset=True),
        ),
        ("sizing.noSuchKey=1", Assignment("sizing", "noSuchKey", 1)),
    ],
)
def test_parse_assignment(text: str, expected: Assignment) -> None:
    assert parse_assignment(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sizing.budgetUsdcMicros", "expected section.key=value"),
        ("budgetUsdcMicros=1", "expected section.key=value"),
        ("sizng.budgetUsdcMicros=1", "unknown section 'sizng'"),
        (".x=1", "expected section.key=value"),
    ],
)
def test_parse_assignment_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(AssignmentError, match=message):
        parse_assignment(text)


def test_parse_unset() -> None:
    assert parse_unset("sizing.budgetUsdcMicros") == Assignment("sizing", "budgetUsdcMicros", unset=True)
    with pytest.raises(AssignmentError):
        parse_unset("sizing")


def test_fold_applies_accepted_changes_and_skips_rejected_and_invalid() -> None:
    result = fold(
        [
            change("c1", sizing={"budgetUsdcMicros": 5}),
            change("c2", sizing={"budgetRMinBps": 500, "budgetRMaxBps": 100}),  # rejected: min > max
            b"{not json",
            orjson.dumps({"kind": "tick", "nowMs": 1}),  # not a config change
            change("c3", "USER", "alice", leader={"label": "Alice"}),
        ]
    )
    assert (result.accepted, result.rejected, result.invalid) == (2, 1, 2)
    assert result.store.version == "c3"
    assert result.store.global_docs["sizing"] == {"budgetUsdcMicros": 5}
    assert result.store.user_docs["alice"] == {"leader": {"label": "Alice"}}


def test_build_change_carries_the_current_section_with_the_edits() -> None:
    store = fold(
        [change("c1", sizing={"budgetUsdcMicros": 5, "budgetRMaxBps": 300}, system={"dedupWindowMs": 60_000})]
    ).store
    raw, built = build_change(
        store,
        "GLOBAL",
        None,
        [parse_assignment("sizing.budgetUsdcMicros=7"), parse_unset("sizing.budgetRMaxBps")],
        "c2",
        123,
    )
    wire = orjson.loads(raw)
    # sizing is replaced wholesale: the stored keys are carried over, edited; system is left out (unchanged)
    assert wire == {
        "kind": "configChange",
        "changeId": "c2",
        "scope": "GLOBAL",
        "followedUserId": None,
        "changedAtMs": 123,
        "sizing": {"budgetUsdcMicros": 7},
    }
    outcome = apply_change(store, built)
    assert outcome.store is not None
    assert outcome.store.global_docs == {
        "sizing": {"budgetUsdcMicros": 7},
        "system": {"dedupWindowMs": 60_000},
    }


def test_build_change_for_a_user_starts_from_that_users_documents() -> None:
    store = fold([change("c1", "USER", "alice", sizing={"budgetUsdcMicros": 9}, leader={"label": "A"})]).store
    raw, built = build_change(store, "USER", "alice", [parse_assignment("leader.enabled=false")], "c2", 1)
    assert orjson.loads(raw)["leader"] == {"label": "A", "enabled": False}
    assert "sizing" not in orjson.loads(raw)
    assert built.followed_user_id == "alice"
    _, fresh = build_change(store, "USER", "bob", [parse_assignment("leader.enabled=false")], "c3", 1)
    assert fresh.leader == {"enabled": False}


def test_an_invalid_edit_is_rejected_with_the_key_named() -> None:
    store = fold([]).store
    _, built = build_change(store, "GLOBAL", None, [parse_assignment("sizing.budgetUsdcMicros=abc")], "c1", 1)
    outcome = apply_change(store, built)
    assert not outcome.accepted
    assert any(e.startswith("sizing.budgetUsdcMicros:") for e in outcome.errors)


def test_an_integer_past_64_bits_is_a_clear_error_not_a_crash() -> None:
    huge = Assignment("sizing", "budgetUsdcMicros", 2**64)  # as the API gets it from a JSON body
    with pytest.raises(AssignmentError, match=r"^sizing.budgetUsdcMicros: .*64 bits"):
        build_change(fold([]).store, "GLOBAL", None, [huge], "c1", 1)


def test_nothing_to_change_is_an_error() -> None:
    with pytest.raises(AssignmentError, match="nothing to change"):
        build_change(fold([]).store, "GLOBAL", None, [], "c1", 1)


def test_effective_rows_show_where_each_value_comes_from() -> None:
    store = fold(
        [
            change("c1", sizing={"budgetUsdcMicros": 5_000_000}),
            change("c2", "USER", "alice", sizing={"budgetUsdcMicros": 7_000_000}),
        ]
    ).store
    glob = {row[0]: row for row in effective_rows(store, None)}
    alice = {row[0]: row for row in effective_rows(store, "alice")}
    assert glob["sizing.budgetUsdcMicros"][1:] == ["5000000  ($5.00)", "GLOBAL"]
    assert glob["sizing.copyPctNotionalBps"][2] == "default"
    assert "leader.enabled" not in glob  # USER-only section
    assert alice["sizing.budgetUsdcMicros"][1:] == ["7000000  ($7.00)", "USER"]
    assert alice["leader.label"][1:] == ['"alice"', "default"]
    assert alice["guardrails.maxBuyCostPerShareMicros"][1] == "(not set: off)"
