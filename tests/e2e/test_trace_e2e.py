"""The causal trace of one sandbox order: from the order the platform pushed,
through its stock commitment, to the stock pushes on the other platforms, its
payout and the ledger postings the payout made."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from domain import order as order_domain
from domain.stock import ReceiveStock
from eventlog.log import log_head
from hub.service.commands import ORDER_RULES
from hub.service.replay import format_history, trace
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


async def _sell_one(running: Rig, story: tuple[str, ...] = ()) -> str:
    """Three units in stock, one sold on :data:`ORIGIN` (which changes every
    other listing's share) and taken through ``story``, everything settled;
    the order's number."""
    await running.hub.execute("stock.receive", ReceiveStock(sku="SKU-A", quantity=3))
    await _settled(running)
    number = await _order_story(running, ORIGIN, list(story))
    await running.control.flush_pushes()
    oid = order_domain.order_id(ORIGIN, number)

    async def stored() -> bool:
        return await running.hub.committer.load(ORDER_RULES, oid) is not None

    await wait_until(stored)
    await _settled(running)
    return number


async def test_the_trace_of_a_sandbox_order_reaches_every_other_platforms_push(
    rig: Rig,  # noqa: F811  (the fixture imported above)
) -> None:
    number = await _sell_one(rig)

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
        if p != ORIGIN and rig.platforms.outbound.policies[p].stock.pushed_on_change
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


def _samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def test_metrics_show_head_lags_queues_webhooks_and_batches(
    rig: Rig,  # noqa: F811  (the fixture imported above)
) -> None:
    await _sell_one(rig)
    assert rig.platforms.http is not None
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{rig.platforms.http.url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _samples(answer.text)
    async with await psycopg.AsyncConnection.connect(rig.hub.database_url) as conn:
        head = await log_head(conn)
    assert samples["hub_log_head"] >= head
    assert 'hub_consumer_lag_events{consumer="projection inventory"}' in samples
    assert any(
        k.startswith('hub_consumer_lag_seconds{consumer="relay') for k in samples
    )
    assert (
        samples[f'hub_webhook_requests_total{{platform="{ORIGIN}",status="200"}}'] >= 1
    )
    assert samples['hub_stock_pushes{platform="douyin_shop",status="sent"}'] >= 1
    assert samples["hub_commit_batch_events_count"] >= 1
    assert (
        samples['hub_commit_latency_seconds_bucket{le="+Inf"}']
        == samples["hub_commit_latency_seconds_count"]
    )


async def test_the_trace_of_a_paid_order_reaches_its_payout_and_postings(
    rig: Rig,  # noqa: F811  (the fixture imported above)
) -> None:
    number = await _sell_one(rig, ("pay",))
    ref = f"{ORIGIN}:order:{number}"

    async def posted() -> bool:
        events = await trace(rig.hub.database_url, ref)
        return any(e.postings for e in events if e.type == "PayoutScheduled")

    await wait_until(posted)
    events = await trace(rig.hub.database_url, ref)
    types = [e.type for e in events]
    assert types[:2] == ["OrderPlaced", "StockCommitted"], types
    # One input, one trace: the other platforms' pushes, the payout, the ledger.
    realtime = {
        p
        for p in PLATFORMS
        if p != ORIGIN and rig.platforms.outbound.policies[p].stock.pushed_on_change
    }
    sent = {e.payload["platform"] for e in events if e.type == "StockPushSent"}
    assert realtime <= sent, (realtime, sent)
    paid = next(e for e in events if e.type == "OrderPaid")
    payout = next(e for e in events if e.type == "PayoutScheduled")
    assert payout.causation_id == paid.event_id
    assert payout.correlation_id == paid.correlation_id
    by_transaction: dict[str, int] = {}
    for posting in payout.postings:
        by_transaction[posting.transaction] = (
            by_transaction.get(posting.transaction, 0) + posting.amount_fen
        )
    assert by_transaction, "the payout made ledger transactions"
    assert set(by_transaction.values()) == {0}, "each transaction balances"
    assert [e for e in events if e.postings and e.aggregate_type != "payout"] == []
    text = format_history(events)
    assert f"ledger {payout.postings[0].transaction} (" in text
