"""``copybot demo`` on the session's broker: both scenarios end to end, as an operator runs them.

The demo finds the broker through COPYBOT_KAFKA_PORT / COPYBOT_KAFKA_DATA (it uses a running broker and
leaves it running), makes its own topic prefix, and waits on conditions with deadlines; so do these tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from streams.devbroker import broker
from streams.devbroker.broker import free_ports
from streams.devbroker.harness import ROOT

pytestmark = pytest.mark.integration


def _demo(kafka_broker: broker.BrokerSettings, *args: str) -> subprocess.CompletedProcess[str]:
    (api_port,) = free_ports(1)
    env = {
        **os.environ,
        "COPYBOT_KAFKA_PORT": str(kafka_broker.port),
        "COPYBOT_KAFKA_CONTROLLER_PORT": str(kafka_broker.effective_controller_port),
        "COPYBOT_KAFKA_DATA": str(kafka_broker.data_dir),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "demo",
            "--partitions",
            "4",
            "--api-port",
            str(api_port),
            *args,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_the_paper_demo_shows_a_settlement_freeing_alices_hard_budget_and_pnl_per_leader(
    kafka_broker: broker.BrokerSettings,
) -> None:
    result = _demo(kafka_broker)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "live decisions equal the decision core's replay of each partition: yes" in out
    freed = (
        r"a settlement freed a HARD budget: market-1-a resolved \(won\), Alice's .* headroom \$0\.\d\d -> \$3"
    )
    assert re.search(freed, out), out
    pnl = next(line for line in out.splitlines() if line.startswith("PnL per leader"))
    assert all(label in pnl for label in ("Alice +$", "Bob -$", "Carol -$", "Whale "))
    header = next(line for line in out.splitlines() if line.startswith("leader "))
    assert {"realized", "unrealized", "reserved"} <= set(header.split())


def test_the_reports_demo_answers_every_execute_and_shows_expiries_and_open_orders(
    kafka_broker: broker.BrokerSettings,
) -> None:
    result = _demo(kafka_broker, "--scenario", "reports", "--seed", "11")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # the replay is of the partition logs as stored, reports included: live equals it
    assert "live decisions equal the decision core's replay of each partition log: yes" in out
    executor = re.search(
        r"executor \(seed 11\): answered ([\d,]+) EXECUTEs with ([\d,]+) execution reports", out
    )
    assert executor is not None, out
    executes = int(executor[1].replace(",", ""))
    counts = re.search(r"\(([\d,]+) EXECUTE, [\d,]+ SKIP\)", out)
    assert counts is not None, out
    assert int(counts[1].replace(",", "")) == executes > 100
    for plan in ("filled", "partialFilled", "partialCancelled", "partialOnly", "rejected", "late", "never"):
        assert re.search(rf"\b{plan} \d", out), plan
    orders = re.search(
        r"orders: ([\d,]+) expired \(([\d,]+) of them partly filled\), ([\d,]+) still open", out
    )
    assert orders is not None, out
    assert int(orders[1].replace(",", "")) > 0
    assert int(orders[2].replace(",", "")) > 0
    header = next(line for line in out.splitlines() if line.startswith("leader "))
    assert {"orders", "reserved"} <= set(header.split())
