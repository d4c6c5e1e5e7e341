"""The API keeps the contract it publishes (issue 9): schemathesis against its OpenAPI document, and every
example of the README's API section, both against ``copybot api`` serving a seeded database and publishing
config changes to the session's real broker.

The database is the sample tape replayed by the decision core and projected (tests/projections/sample.py);
the API runs as its own process (``python -m projections.api``) with a write token, so the auth checks run
too. The schemathesis report goes to ``out/test-artifacts/schemathesis.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams.kafka.admin import ensure_topics
from streams.settings import Settings
from tests.integration.conftest import free_ports
from tests.integration.live import wait_until
from tests.projections.sample import Sample

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "out" / "test-artifacts"
TOKEN = "contract-test-token"
CASES_PER_OPERATION = 300
"""schemathesis ``--max-examples``: generated cases per operation and phase (fuzzing, stateful)."""


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("contract") / "seed.db"
    Sample().project_into(str(path))
    return path


@pytest.fixture
def api_url(kafka_bootstrap: str, seeded_db: Path, tmp_path: Path) -> Iterator[str]:
    """``copybot api`` over a copy of the seeded database, writing to fresh topics on the session broker."""
    db = tmp_path / "projection.db"
    shutil.copy(seeded_db, db)
    env = {
        **os.environ,
        "COPYBOT_BOOTSTRAP": kafka_bootstrap,
        "COPYBOT_TOPIC_PREFIX": f"c{uuid.uuid4().hex[:10]}",
        "COPYBOT_API_TOKEN": TOKEN,
    }
    asyncio.run(ensure_topics(Settings.from_env(env)))
    (port,) = free_ports(1)
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "projections.api", "--db", str(db), "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited:\n{(tmp_path / 'api.log').read_text()[-4000:]}")
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, 60, "the API to answer /healthz")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


# --- the README's examples ----------------------------------------------------------------------------

EXAMPLE = re.compile(r"^(curl .+)\n# (\d{3}) (.+)$", re.MULTILINE)


def readme_examples() -> list[tuple[str, int, Any]]:
    """(curl command, status, expected JSON) of each example in the README's "HTTP API" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## HTTP API and dashboard", 1)[1].split("\n## ", 1)[0]
    return [(cmd, int(status), json.loads(body)) for cmd, status, body in EXAMPLE.findall(section)]


def send(base: str, command: str) -> httpx.Response:
    """Send what a README ``curl`` line sends (-X, -H, -d and the URL; $TOKEN is the server's token)."""
    args = shlex.split(command.replace("$COPYBOT_API_TOKEN", TOKEN))[1:]
    method, headers, data, url = "GET", {}, None, ""
    while args:
        arg = args.pop(0)
        if arg == "-X":
            method = args.pop(0)
        elif arg == "-H":
            name, _, value = args.pop(0).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            data, method = args.pop(0), "POST" if method == "GET" else method
        elif arg.startswith("-"):
            continue  # -s and the like
        else:
            url = arg
    path = url.split("127.0.0.1:8000", 1)[1]
    return httpx.request(method, base + path, headers=headers, content=data, timeout=30)


def matches(expected: Any, actual: Any) -> bool:
    """The README's JSON describes the answer: "..." matches anything, an object lists some of the keys."""
    if expected == "...":
        return True
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and matches(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return False
        if expected[-1:] == ["..."]:  # these items first, then any number more
            expected, actual = expected[:-1], actual[: len(expected) - 1]
        return len(actual) == len(expected) and all(
            matches(e, a) for e, a in zip(expected, actual, strict=True)
        )
    return bool(expected == actual)


def test_every_example_of_the_readme_api_section_answers_what_the_readme_says(api_url: str) -> None:
    examples = readme_examples()
    assert len(examples) >= 8, "the README's API section lost its examples"
    for command, status, expected in examples:
        response = send(api_url, command)
        assert response.status_code == status, (command, response.text)
        assert matches(expected, response.json()), (command, response.text)


# --- schemathesis -----------------------------------------------------------------------------------


def test_schemathesis_finds_no_failure_against_the_openapi_document(api_url: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = ARTIFACTS / "schemathesis.json"
    report.unlink(missing_ok=True)
    command = [
        sys.executable,
        str(Path(__file__).with_name("schemathesis_cli.py")),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "--no-color",
        "run",
        f"{api_url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(CASES_PER_OPERATION),
        "--seed",
        "20261201",
        "--workers",
        "2",
        "--generation-database",
        "none",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert report.exists(), result.stdout[-6000:] + result.stderr[-3000:]
    summary = json.loads(report.read_text())
    print(f"schemathesis: {summary['test_cases']} in {summary['running_time']:.0f}s", file=sys.stderr)
    assert summary["failures"] == [], result.stdout[-12000:]
    assert summary["errors"] == [], result.stdout[-12000:]
    assert summary["operations"]["tested"] == summary["operations"]["total"] == 13
    assert all(p["status"] == "success" for p in summary["phases"].values()), summary["phases"]
    assert summary["test_cases"]["generated"] >= CASES_PER_OPERATION * 13
    assert result.returncode == 0, result.stdout[-6000:]
