"""The manual order sync over NATS (hub.cmd.sync.orders) and HTTP (/sync/orders).

Kuaishou's orders come only when pulled by hand: over NATS and over HTTP the
hub pulls the shop's recent orders and answers the pull's report.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import nats
import pytest

from domain import order as order_domain
from hub.entry.sync_api import SUBJECT, answer_on_nats
from hub.infra.access_tokens import issue
from hub.service.commands import ORDER_RULES
from tests.e2e import test_connectors_e2e as connectors_e2e
from tests.e2e.test_connectors_e2e import LISTED, Rig

pytestmark = pytest.mark.e2e

#: The connectors' rig: a running hub, its platforms side and the sandbox.
rig = connectors_e2e.rig
JWT_KEY = "s" * 40
PLATFORM = "kuaishou_shop"


async def _placed(rig: Rig) -> str:
    shop = rig.shop(PLATFORM)
    _, sku_id = LISTED["SKU-A"][PLATFORM]
    placed = await rig.control.create_order(
        PLATFORM, shop.shop_id, [{"sku_id": sku_id, "quantity": 1}]
    )
    # The hub's sync clock moves past the order.
    rig.schedule_now.append(datetime.now(UTC) + timedelta(minutes=1))
    return str(placed["order_id"])


async def test_the_manual_sync_runs_over_nats(rig: Rig) -> None:
    order_id = await _placed(rig)
    assert rig.hub.nats_url is not None
    responder = await answer_on_nats(rig.hub.nats_url, rig.platforms.scheduler)
    nc = await nats.connect(rig.hub.nats_url)
    try:
        bad = await nc.request(SUBJECT, b'{"platform": "kuaishou_shop"}', timeout=10)
        assert msgspec.json.decode(bad.data)["error"]["code"] == "invalid_command"
        body = {"platform": PLATFORM, "shop_id": rig.shop(PLATFORM).shop_id}
        msg = await nc.request(SUBJECT, msgspec.json.encode(body), timeout=30)
    finally:
        await nc.close()
        await responder.close()
    report = msgspec.json.decode(msg.data)
    assert report["ok"] and report["orders"] == 1, report
    oid = order_domain.order_id(PLATFORM, order_id)
    assert await rig.hub.committer.load(ORDER_RULES, oid) is not None


async def test_the_manual_sync_runs_over_http_for_an_operator(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_JWT_KEY", JWT_KEY)
    order_id = await _placed(rig)
    assert rig.platforms.http is not None
    url = f"{rig.platforms.http.url}/sync/orders"
    body = {"platform": PLATFORM, "shop_id": rig.shop(PLATFORM).shop_id, "hours": 2}
    token = issue(
        JWT_KEY.encode(),
        scopes=["bindings:write"],
        ttl=timedelta(hours=1),
        now=datetime.now(UTC),
    )
    async with httpx.AsyncClient(timeout=30) as http:
        anonymous = await http.post(url, json=body)
        assert anonymous.status_code == 401
        unknown = await http.post(
            url,
            json=body | {"shop_id": "nope"},
            headers={"authorization": f"Bearer {token}"},
        )
        assert unknown.status_code == 404
        answer = await http.post(
            url, json=body, headers={"authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] and answer.json()["orders"] == 1
    oid = order_domain.order_id(PLATFORM, order_id)
    assert await rig.hub.committer.load(ORDER_RULES, oid) is not None
