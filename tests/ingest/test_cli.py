"""``copybot ingest polymarket`` as a person runs it: the leaders file, --once --dry-run, --record, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streams.cli.main import main
from streams.ingest.leaders import Leader, LeadersError, parse_leaders
from tests.ingest import scenario
from tests.ingest.fake_polymarket import FakePolymarket

LEADERS_FILE = f"""
interval = 5

[leaders]
alice = "{scenario.ALICE.upper().replace("0X", "0x")}"

[leaders.bob]
wallet = "{scenario.BOB}"
interval = 1.5
"""


def test_the_leaders_file_maps_names_to_lower_case_wallets_with_optional_intervals() -> None:
    import tomllib

    leaders, default = parse_leaders(tomllib.loads(LEADERS_FILE))
    assert default == 5.0
    assert leaders == [Leader("alice", scenario.ALICE, None), Leader("bob", scenario.BOB, 1.5)]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({}, "needs a \\[leaders\\] table"),
        ({"leaders": {"a": "0x12"}}, "not a proxy wallet"),
        ({"leaders": {"a": scenario.ALICE, "b": scenario.ALICE}}, "also leader 'a'"),
        ({"leaders": {"a": {"wallet": scenario.ALICE, "interval": 0}}}, "interval"),
        ({"leaders": {"a": {"wallet": scenario.ALICE, "every": 3}}}, "unknown keys"),
        ({"leaders": {"a": scenario.ALICE}, "speed": 1}, "unknown keys"),
    ],
)
def test_a_bad_leaders_file_is_refused_with_the_entry_named(doc: dict[str, object], reason: str) -> None:
    with pytest.raises(LeadersError, match=reason):
        parse_leaders(doc)


@pytest.fixture
def fake() -> Iterator[FakePolymarket]:
    with FakePolymarket() as running:
        scenario.round_one(running)
        running.state.scripted.clear()
        yield running


def test_once_dry_run_prints_the_events_and_records_a_tape(
    fake: FakePolymarket, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    leaders = tmp_path / "leaders.toml"
    leaders.write_text(LEADERS_FILE)
    tape = tmp_path / "tape.jsonl"
    args = ["ingest", "polymarket", "--leaders", str(leaders), "--once", "--dry-run", "--record", str(tape)]
    args += ["--data-api", fake.url, "--gamma-api", fake.gamma_url, "--since", str(scenario.T0)]
    assert main(args) == 0
    captured = capsysbinary.readouterr()
    events = [orjson.loads(line) for line in captured.out.splitlines()]
    assert sorted(e["tradeId"] for e in events if e["kind"] == "leaderTrade") == sorted(
        scenario.ID[k] for k in ("A1", "A2", "A3", "A4", "A5", "A6", "B1")
    )
    assert sum(e["kind"] == "portfolioSnapshot" for e in events) == 2
    assert b'"deadLetter"' in captured.err  # bob's malformed row, reported on stderr in a dry run
    recorded = [orjson.loads(line) for line in tape.read_bytes().splitlines()]
    assert [e for e in recorded if e["kind"] != "tick"] == events
    assert recorded[-1]["kind"] == "tick"


def test_an_unreadable_leaders_file_exits_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "polymarket", "--leaders", str(tmp_path / "missing.toml"), "--dry-run"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_bad_since_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leaders = tmp_path / "leaders.toml"
    leaders.write_text(LEADERS_FILE)
    assert main(["ingest", "polymarket", "--leaders", str(leaders), "--since", "yesterday", "--dry-run"]) == 2
    assert "--since" in capsys.readouterr().err
