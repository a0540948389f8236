"""The flash-sale benchmark's core, at a tiny size: it sells out, accounts for
every unit and measures propagation (``bench/flash_sale.py``), on a quiet
machine and on a starved one."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.e2e


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "flash_sale.py"
    spec = importlib.util.spec_from_file_location("bench_flash_sale", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


flash_sale = _bench()

#: How long each ledger save takes on the starved machine: a loaded database's
#: round trip (the plan → claim gap once measured under load: median 24 ms,
#: p90 97 ms, max 198 ms). With a claim recorded only after its save, this
#: variant oversold in 2 of 3 runs.
SLOW_SAVE_S = 0.2
#: Processes that do nothing but burn a CPU beside the starved sale.
CPU_HOGS = 2


class SlowLedgerStore(flash_sale.LedgerStore):
    """The ledger store, with every save as slow as a loaded database's."""

    async def save(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(SLOW_SAVE_S)  # the slow round trip, not a wait
        await super().save(*args, **kwargs)


@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """``count`` processes spinning on a CPU each, killed on the way out."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def _tiny_sale(**changes: Any) -> Any:
    """The tiny sale: 30 units, 10 orders a second, two buyers a platform."""
    config = flash_sale.SaleConfig(
        units=30,
        orders_per_s=10.0,
        event_driven=True,
        buyers_per_platform=2,
        sale_timeout_s=30.0,
    )
    for name, value in changes.items():
        setattr(config, name, value)
    return config


def _sold_out_without_overselling(result: Any) -> None:
    # The platforms' own order records: no unit sold beyond the stock (the
    # outbound headroom guard never lets a raise land before the reductions
    # that make room for it), and the hub holds every order.
    assert result.oversold == 0 and result.platform_units == 30
    assert result.negative_listings == 0
    assert result.orders_missing_in_hub == 0
    assert result.sold == 30 and result.unsold == 0


def test_propagation_takes_the_first_sync_at_or_after_the_orders_version() -> None:
    class Commit:  # pair_latencies() reads only the commit's stock version
        def __init__(self, version: int) -> None:
            self.originator_version = version

    pushes = [
        {
            "platform": "youzan",
            "event": "trade_TradeCreate",
            "order_id": "E1",
            "at": 10.0,
        }
    ]
    syncs = {
        "wechat_shop": [(4, 10.5), (5, 10.02), (9, 10.01)],  # v4 is too old
        "douyin_shop": [(6, 10.03)],
        "kuaishou_shop": [],  # never brought up to date
        "youzan": [(5, 10.001)],  # the order's own platform is not counted
    }
    pairs, unmeasured = flash_sale.pair_latencies(
        pushes, {"youzan:E1": Commit(5)}, syncs
    )
    assert [(round(ms), order, other) for ms, order, other in pairs] == [
        (10, "youzan:E1", "wechat_shop"),
        (30, "youzan:E1", "douyin_shop"),
    ]
    assert unmeasured == 1
    assert flash_sale.slowest_pairs(pairs, {"youzan:E1": (4.0, 1.0)})[0] == (
        "youzan:E1 → douyin_shop 30 ms (push → order 4, → stock 1, → write 25)"
    )


@pytest.mark.parametrize(
    "sandbox_in_process", [False, True], ids=["sandbox-process", "sandbox-thread"]
)
async def test_a_tiny_sale_sells_out_without_overselling_and_times_propagation(
    database_url: str, nats_url: str, sandbox_in_process: bool
) -> None:
    config = _tiny_sale(sandbox_in_process=sandbox_in_process)
    result = await flash_sale.run_sale(config, database_url, nats_url)

    _sold_out_without_overselling(result)
    # The sandbox enforced the bench's budgets; the hub stayed within them.
    assert result.budget_refusals == 0 and result.api_calls > 0
    assert result.hub_cpu_s > 0 and result.orders_stored == result.orders
    assert len(result.latencies_ms) >= 10
    assert all(ms > 0 for ms in result.latencies_ms)
    assert result.percentile(50) <= result.percentile(99)


async def test_a_tiny_sale_on_a_starved_machine_never_oversells(
    database_url: str, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zero oversell however slow the machine: CPU hogs beside the sale, and
    every ledger save as slow as a loaded database's, so the outbound's workers
    interleave wherever they can (a raise planned while another listing's write
    is being saved must still count that write)."""
    monkeypatch.setattr(flash_sale, "LedgerStore", SlowLedgerStore)
    with cpu_hogs(CPU_HOGS):
        result = await flash_sale.run_sale(
            _tiny_sale(sale_timeout_s=90.0), database_url, nats_url
        )

    # No unit sold beyond the stock, by the platforms' own order records. (On
    # a machine this starved the bench's 0.2 s client timeouts can leave an
    # order unheard of by the hub for a while: its units stay off sale, so the
    # sale may end short of selling out; that is under-selling, not this test.)
    assert result.oversold == 0 and result.platform_units <= 30
    assert result.negative_listings == 0
    assert result.platform_units > 0 and result.sold > 0
