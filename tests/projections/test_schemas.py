"""``copybot schema``: the JSON Schemas under docs/schemas/ are current, and the events of the sample tape
and of its replay are valid against them (issue 9)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema_rs
import orjson

from models.state import PartitionState
from projections.contract import wire_event_models
from streams.cli.main import main
from streams.replay import replay
from tests.projections.venue import VenueSample

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "schemas"
SAMPLE_TAPE = ROOT / "examples" / "sample-tape.jsonl"


def test_the_committed_schemas_are_what_copybot_schema_writes(tmp_path: Path) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0
    written = {p.name: p.read_text() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text() for p in COMMITTED.glob("*.json")}
    assert sorted(written) == sorted(committed), "run `copybot schema` and commit docs/schemas/"
    stale = [name for name, text in written.items() if committed[name] != text]
    assert stale == [], f"run `copybot schema` and commit docs/schemas/ ({', '.join(stale)} changed)"


def test_every_wire_kind_has_a_schema_including_the_venue_loop() -> None:
    kinds = set(wire_event_models())
    base = {"leaderTrade", "portfolioSnapshot", "configChange", "tick", "copyAttempt", "deadLetter"}
    assert base | {"configRejected", "configWarning"} <= kinds
    assert {f"{kind}.json" for kind in kinds} <= {p.name for p in COMMITTED.glob("*.json")}


def test_the_sample_tape_and_its_replay_are_valid_against_the_schemas() -> None:
    validators = {
        p.stem: jsonschema_rs.validator_for(json.loads(p.read_text())) for p in COMMITTED.glob("*.json")
    }
    lines = SAMPLE_TAPE.read_bytes().splitlines()
    out, diagnostics = io.BytesIO(), io.BytesIO()
    replay(lines, out, diagnostics, PartitionState())
    seen = set()
    for line in [*lines, *out.getvalue().splitlines(), *diagnostics.getvalue().splitlines()]:
        event = orjson.loads(line)
        if event.get("kind") not in validators:
            continue  # the tape's deliberately malformed lines
        seen.add(event["kind"])
        errors = [e.message for e in validators[event["kind"]].iter_errors(event)]
        assert errors == [], (line[:300], errors)
    assert {"leaderTrade", "portfolioSnapshot", "configChange", "tick", "copyAttempt"} <= seen


def test_the_venue_tapes_outputs_are_valid_against_the_schemas() -> None:
    validators = {
        p.stem: jsonschema_rs.validator_for(json.loads(p.read_text())) for p in COMMITTED.glob("*.json")
    }
    outputs = VenueSample().outputs
    for event in outputs:
        errors = [e.message for e in validators[event["kind"]].iter_errors(event)]
        assert errors == [], (event, errors)
    assert {"orderUpdated", "orderExpired", "positionSettled", "leaderBook"} <= {o["kind"] for o in outputs}
