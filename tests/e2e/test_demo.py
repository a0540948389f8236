"""``hub demo --quick`` on a fresh ``HUB_HOME``: the reference case end to end.

The demo starts its own embedded servers, the sandbox platforms in a child
process and the hub; binds the four shops through their routes; plays a small
live session; and prints one JSON object last. Its figures must hold together:
nothing oversold, the ledger balanced, the dashboard's GMV equal to the
orders' and the ledger's sales.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.infra.embedded import free_port

pytestmark = pytest.mark.e2e

#: Long enough for a slow, busy machine; the test ends as soon as the demo does.
DEADLINE_S = 900


def demo_env(home: Path) -> dict[str, str]:
    """The environment of a demo on its own data folder and free ports."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"HUB_DATABASE_URL", "HUB_NATS_URL", "HUB_CONNECTORS_FILE"}
    }
    return env | {
        "HUB_HOME": str(home),
        "HUB_PG_PORT": str(free_port()),
        "HUB_NATS_PORT": str(free_port()),
        "HUB_HTTP_PORT": str(free_port()),
    }


async def run_demo(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """Run ``hub demo`` to its end: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "demo",
        *args,
        env=demo_env(tmp_path / "home"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(DEADLINE_S):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_quick_demo_binds_sells_and_balances(tmp_path: Path) -> None:
    code, out, err = await run_demo(tmp_path, "--quick")
    assert code == 0, f"hub demo exited {code}:\n{err[-4000:]}"
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert summary["oversold"] == 0
    assert summary["ledger_unbalanced"] == 0
    assert summary["orders"] > 0
    assert summary["gmv_fen"] > 0
    # The dashboard's GMV is the orders' paid amounts and the ledger's sales.
    assert summary["gmv_fen"] == summary["ledger_sales_fen"]
    assert summary["gmv_fen"] == summary["orders_paid_fen"]
    assert summary["gmv_fen"] == summary["dashboard_total_gmv_fen"]
    assert summary["coupons_redeemed"] > 0
    assert 0 < summary["conversion_rate"] < 1
    # Coupons stacked on the spend-threshold reduction took money off.
    assert summary["discount_fen"] > 0
    # The limited item crossed its threshold: an alert was heard on NATS.
    assert summary["stock_alerts"] >= 1
    assert summary["stock_alert_max_s"] is not None
    # Every shop was bound through its route, none from a seeded token.
    for line in ("consent → callback → active", "douyin_api_key → active"):
        assert line in err
