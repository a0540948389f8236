"""Youzan's buyers follow its binding's custom mapping (and the book's mode).

The order intake keeps a buyer only when the shop's binding lets the hub have
users; under ``custom_mapping`` that is the mapping the merchant chose, and
the mode keeps only the fields it names (default: name and phone).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.common import BuyerPersonalData, PlatformOrder
from domain.personal import CUSTOM_MAPPING
from hub.bootstrap import bootstrap
from hub.infra.shops import ShopConfig
from hub.infra.subjects import SubjectKeys
from hub.service.hub import Hub
from hub.service.inbound import OrderIntake
from hub.service.personal import PersonalData, profile_policies
from hub.service.policies import load_policy_book
from tests.binding_payloads import ACCOUNT, activate

YOUZAN = "youzan"
AT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
BUYER = BuyerPersonalData(
    name="赵六合", phone="13566667777", address="上海市 浦东新区", buyer_ref="yz-9"
)


@pytest.fixture
async def hub(database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub whose book gives Youzan the custom-mapping profile mode."""
    data = json.loads(Path("hub/policies.json").read_text())
    youzan: dict[str, Any] = data["profiles"][YOUZAN]
    youzan.setdefault("sync", {}).setdefault("user_profile", {"mode": CUSTOM_MAPPING})
    path = tmp_path / "policies.json"
    path.write_text(json.dumps(data, ensure_ascii=False))
    running = bootstrap(
        database_url=database_url,
        nats_url=None,
        projections=[],
        policy_book=load_policy_book(path),
    )
    await running.start()
    yield running
    await running.stop()


async def _bind(hub: Hub, shop_id: str, mapped: list[str]) -> ShopConfig:
    await activate(hub, YOUZAN, shop_id, mapped)
    return ShopConfig(
        platform=YOUZAN,
        shop_id=shop_id,
        channel_account=ACCOUNT,
        credentials={"client_id": "c", "client_secret": "s"},
    )


def _order(shop_id: str) -> PlatformOrder:
    return PlatformOrder(
        platform=YOUZAN,
        shop_id=shop_id,
        order_id=f"E{shop_id}",
        status="paid",
        platform_status="WAIT_SELLER_SEND_GOODS",
        lines=(),
        total_fen=990,
        created_at=AT,
        updated_at=AT,
        buyer=BUYER,
    )


async def test_a_youzan_mapping_with_users_keeps_only_the_mapped_fields(
    hub: Hub, database_url: str
) -> None:
    master = os.urandom(32)
    personal = PersonalData(SubjectKeys(database_url, master), master)
    assert hub.policy_book is not None
    intake = OrderIntake(
        hub,
        None,  # type: ignore[arg-type]  # sealing reads no shop client
        personal=personal,
        profiles=profile_policies(hub.policy_book),
    )
    with_users = await _bind(hub, "42001", ["orders", "stock", "users"])
    sealed = await intake.sealed_buyer(with_users, _order("42001"))
    assert sealed is not None and sealed.mode == CUSTOM_MAPPING
    assert set(sealed.fields) == {"name", "phone"}
    shown = await personal.show(sealed.subject_id, sealed.key_version, sealed.fields)
    assert shown == {"name": "赵**", "phone": "135****7777"}

    without_users = await _bind(hub, "42002", ["orders", "stock"])
    assert await intake.sealed_buyer(without_users, _order("42002")) is None
