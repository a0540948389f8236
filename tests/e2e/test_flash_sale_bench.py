"""The flash-sale benchmark's core, at a tiny size: it sells out, accounts for
every unit and measures propagation (``bench/flash_sale.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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


def test_propagation_takes_the_first_sync_at_or_after_the_orders_version() -> None:
    class Commit:  # propagation() reads only the commit's stock version
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
    latencies, unmeasured = flash_sale.propagation(
        pushes, {"youzan:E1": Commit(5)}, syncs
    )
    assert [round(ms) for ms in latencies] == [10, 30]
    assert unmeasured == 1


@pytest.mark.parametrize(
    "sandbox_in_process", [False, True], ids=["sandbox-process", "sandbox-thread"]
)
async def test_a_tiny_sale_sells_out_without_overselling_and_times_propagation(
    database_url: str, nats_url: str, sandbox_in_process: bool
) -> None:
    config = flash_sale.SaleConfig(
        units=30,
        orders_per_s=10.0,
        event_driven=True,
        buyers_per_platform=2,
        sale_timeout_s=30.0,
        sandbox_in_process=sandbox_in_process,
    )
    result = await flash_sale.run_sale(config, database_url, nats_url)

    # The platforms' own order records: no unit sold beyond the stock (the
    # outbound headroom guard never lets a raise land before the reductions
    # that make room for it), and the hub holds every order.
    assert result.oversold == 0 and result.platform_units == 30
    assert result.negative_listings == 0
    assert result.orders_missing_in_hub == 0
    assert result.sold == 30 and result.unsold == 0
    assert len(result.latencies_ms) >= 10
    assert all(ms > 0 for ms in result.latencies_ms)
    assert result.percentile(50) <= result.percentile(99)
