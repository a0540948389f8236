"""The causal trace of one sandbox order: from the order the platform pushed,
through its stock commitment, to the stock pushes on the other platforms."""

from __future__ import annotations

import pytest

from domain import order as order_domain
from domain.stock import ReceiveStock
from hub.service.commands import ORDER_RULES
from hub.service.replay import trace
from tests.conftest import wait_until
from tests.e2e.test_connectors_e2e import (
    PLATFORMS,
    Rig,
    _order_story,
    _settled,
    rig,  # noqa: F401  (the fixture)
)

pytestmark = pytest.mark.e2e

ORIGIN = "youzan"


async def test_the_trace_of_a_sandbox_order_reaches_every_other_platforms_push(
    rig: Rig,  # noqa: F811  (the fixture imported above)
) -> None:
    # Three units: one sold on Youzan changes every other listing's share.
    await rig.hub.execute("stock.receive", ReceiveStock(sku="SKU-A", quantity=3))
    await _settled(rig)
    number = await _order_story(rig, ORIGIN, [])
    await rig.control.flush_pushes()
    oid = order_domain.order_id(ORIGIN, number)

    async def stored() -> bool:
        return await rig.hub.committer.load(ORDER_RULES, oid) is not None

    await wait_until(stored)
    await _settled(rig)

    events = await trace(rig.hub.database_url, f"{ORIGIN}:order:{number}")
    types = [e.type for e in events]
    assert types[:2] == ["OrderPlaced", "StockCommitted"], types
    assert len({e.correlation_id for e in events}) == 1
    by_id = {e.event_id: e for e in events}
    for event in events[1:]:
        assert event.causation_id in by_id, (event.type, "caused within the trace")
    realtime = {
        p
        for p in PLATFORMS
        if p != ORIGIN and rig.platforms.outbound.policies[p].stock.mode == "realtime"
    }
    assert realtime, "some other platform takes real-time pushes"
    requested = {
        e.payload["platform"] for e in events if e.type == "StockPushRequested"
    }
    sent = {e.payload["platform"] for e in events if e.type == "StockPushSent"}
    assert realtime <= requested, (realtime, requested)
    assert realtime <= sent, (realtime, sent)
    positions = [e.position for e in events]
    assert positions == sorted(positions), "in log order"
