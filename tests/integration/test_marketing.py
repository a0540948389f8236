"""Marketing through ``hub.cmd.marketing.*`` on a real hub, and ``hub marketing``.

A campaign published over NATS: a live-room coupon claimed (the second claim
past the buyer's limit refused), fission earning a coupon at two friends (a
self-invite recorded as refused), a redemption recording every line's discount
(on ``HUB_EVENTS`` too), a follower enrolled under Youzan's custom mapping, and
the ``marketing`` projection's figures. The CLI publishes, shows and prices.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import nats
import psycopg
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from connectors.common import BuyerPersonalData
from domain.marketing import MemberEnrolled, campaign_id
from hub.entry.cli import main
from hub.infra.subjects import SubjectKeys
from hub.messages import STREAM, EventMessage
from hub.service.commit import utc_now
from hub.service.hub import Hub
from hub.service.marketing import member_command
from hub.service.personal import PersonalData, profile_policies
from projections.base import rebuild
from tests.hub_steps import serving_hub

pytestmark = pytest.mark.integration

KEY = {
    "channel_account": "acct-beauty",
    "platform": "youzan",
    "shop_id": "yz-42",
    "campaign": "live-1130",
}
ALICE, BOB, CAROL = ("sub_" + c * 32 for c in "abc")
LINES = [
    {"sku": "LIP-1", "quantity": 2, "unit_price_fen": 15900},
    {"sku": "MASK-3", "quantity": 1, "unit_price_fen": 8900},
]


def _campaign(now: datetime) -> dict[str, Any]:
    return {
        **KEY,
        "title": "Double 12 warm-up",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=1)).isoformat(),
        "reduction": {"tiers": [{"threshold_fen": 30000, "reduction_fen": 5000}]},
        "coupon": {"kind": "amount", "amount_fen": 2000, "min_spend_fen": 20000},
        "per_buyer_limit": 1,
        "total_quantity": 100,
        "fission": {
            "friends_needed": 2,
            "reward": {"kind": "percent", "percent_off": 10, "max_discount_fen": 800},
        },
    }


@pytest.fixture
async def hub(database_url: str, nats_url: str):  # type: ignore[no-untyped-def]
    async with serving_hub(database_url, nats_url, utc_now) as running:
        yield running


async def _events_on_stream(nats_url: str, subject: str) -> list[EventMessage]:
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe(
            subject, stream=STREAM, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        msgs = await sub.fetch(10, timeout=10)
        return [msgspec.json.decode(m.data, type=EventMessage) for m in msgs]
    finally:
        await nc.close()


async def test_a_campaign_over_nats_claims_shares_redeems_and_counts(
    hub: Hub, nats_url: str
) -> None:
    nc = await nats.connect(nats_url)

    async def send(name: str, payload: dict[str, Any]) -> dict[str, Any]:
        msg = await nc.request(f"hub.cmd.{name}", json.dumps(payload).encode(), 10)
        reply: dict[str, Any] = msgspec.json.decode(msg.data)
        return reply

    try:
        published = await send("marketing.publish", _campaign(datetime.now(UTC)))
        assert published["ok"] and published["events"] == ["CampaignPublished"]
        claimed = await send("marketing.claim", {**KEY, "buyer": ALICE})
        assert claimed["ok"] and claimed["events"] == ["CouponClaimed"]
        again = await send("marketing.claim", {**KEY, "buyer": ALICE})
        assert again["error"]["code"] == "coupon_limit"
        assert "claimed 1 of per_buyer_limit 1" in again["error"]["message"]
        phone = await send("marketing.claim", {**KEY, "buyer": "13812341234"})
        assert "$.buyer" in phone["error"]["message"]

        await send("marketing.share", {**KEY, "sharer": ALICE, "friend": BOB})
        rewarded = await send(
            "marketing.share", {**KEY, "sharer": ALICE, "friend": CAROL}
        )
        assert rewarded["events"] == ["ShareRecorded", "FissionRewardGranted"]
        selfish = await send("marketing.share", {**KEY, "sharer": BOB, "friend": BOB})
        assert selfish["events"] == ["ShareRefused"]

        redeemed = await send(
            "marketing.redeem",
            {
                **KEY,
                "buyer": ALICE,
                "order_platform": "youzan",
                "platform_order_id": "E2026113000001",
                "lines": LINES,
            },
        )
        assert redeemed["ok"] and redeemed["events"] == ["CouponRedeemed"]
        # 40700 fen: 300 off 50 at the threshold, then 20 off the 357 left.
        assert redeemed["state"]["discount_fen"] == 5000 + 2000
        assert "holders" not in redeemed["state"]

        member = await send(
            "marketing.enroll_member",
            {
                "channel_account": KEY["channel_account"],
                "platform": "youzan",
                "shop_id": KEY["shop_id"],
                "subject_id": BOB,
                "followed_at": datetime.now(UTC).isoformat(),
                "profile": {
                    "subject_id": BOB,
                    "fields": {"name": "c2Vh", "phone": "c2Vh", "address": "c2Vh"},
                },
            },
        )
        assert member["events"] == ["FollowerJoined", "MemberEnrolled"]
        assert member["state"]["fields"] == ["name", "phone"]
        assert member["state"]["mode"] == "custom_mapping"
    finally:
        await nc.close()

    # Every line's share is published with the redemption.
    assert hub.relay is not None
    head = max(redeemed["positions"] + member["positions"])
    await hub.relay.wait_for(head)
    (message,) = await _events_on_stream(
        nats_url, "hub.events.marketing.CouponRedeemed.youzan"
    )
    assert message.data["line_discounts_fen"] == [5470, 1530]
    assert sum(message.data["line_discounts_fen"]) == 7000

    await hub.projection("marketing").wait_for(head)
    row, members = _figures(hub.database_url)
    assert row == (1, 1, 2, 1, 1, 40700, 5000, 2000)
    assert members == (1, 1)
    # Rebuilt from the log, the figures are the same.
    assert await rebuild(hub.database_url, hub.projection("marketing").projection)
    assert _figures(hub.database_url) == (row, members)


def _figures(database_url: str) -> tuple[Any, Any]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT coupons_claimed, fission_rewards, shares_credited, "
            "shares_refused, coupons_redeemed, sales_fen, reduction_fen, coupon_fen "
            "FROM marketing_campaigns WHERE campaign_id = %s",
            (campaign_id(*KEY.values()),),
        ).fetchone()
        members = conn.execute(
            "SELECT members, with_profile FROM marketing_members "
            "WHERE platform = 'youzan' AND shop_id = %s",
            (KEY["shop_id"],),
        ).fetchone()
    return row, members


def test_the_cli_publishes_shows_and_prices_a_cart(
    database_url: str,
    nats_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_NATS_URL", nats_url)
    campaign = tmp_path / "campaign.json"
    campaign.write_text(json.dumps(_campaign(datetime.now(UTC))))
    assert main(["marketing", "publish", str(campaign)]) == 0
    assert "ok in this process" in capsys.readouterr().out

    ref = "campaign:" + ":".join(KEY.values())
    assert main(["marketing", "show", ref]) == 0
    assert "campaign live-1130 (Double 12 warm-up)" in capsys.readouterr().out

    assert main(["marketing", "price", ref, json.dumps(LINES), "--json"]) == 0
    priced = json.loads(capsys.readouterr().out)
    assert (priced["reduction_fen"], priced["coupon_fen"]) == (5000, 2000)
    assert [line["discount_fen"] for line in priced["lines"]] == [5470, 1530]
    assert priced["payable_fen"] == 40700 - 7000

    assert main(["marketing", "price", ref, '[{"sku": "X", "quantity": 0}]']) == 1
    assert "LINES_JSON: Expected `int` >= 1" in capsys.readouterr().err
    assert main(["marketing", "show", "campaign:nope:youzan:x:y"]) == 1
    assert "no campaign" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("platform", "fields"),
    [("youzan", ["name", "phone"]), ("kuaishou_shop", []), ("wechat_shop", None)],
)
async def test_a_follower_in_the_clear_is_sealed_at_the_door_per_profile_mode(
    hub: Hub, platform: str, fields: list[str] | None
) -> None:
    master = os.urandom(32)
    personal = PersonalData(SubjectKeys(hub.database_url, master), master)
    assert hub.policy_book is not None
    policies = profile_policies(hub.policy_book)
    # WeChat's mode is dropped here to stand for a platform the book gives none.
    policy = None if fields is None else policies[platform]
    follower = BuyerPersonalData(name="赵六合", phone="13566667777", buyer_ref="o-9")
    command = await member_command(
        personal,
        policy,
        channel_account=KEY["channel_account"],
        platform=platform,
        shop_id="shop-1",
        follower=follower,
        followed_at=datetime.now(UTC),
    )
    plain = ("赵六合", "13566667777", "o-9")
    assert not any(text in msgspec.json.encode(command).decode() for text in plain)
    outcome = await hub.execute("marketing.enroll_member", command)
    enrolled = outcome.events[-1]
    assert isinstance(enrolled, MemberEnrolled)
    if fields is None:
        assert enrolled.profile is None
    else:
        assert list(enrolled.fields) == fields
        assert enrolled.mode == policy.mode  # type: ignore[union-attr]


async def test_a_retried_claim_with_its_request_id_is_applied_once(hub: Hub) -> None:
    campaign = _campaign(datetime.now(UTC)) | {"per_buyer_limit": 3}
    assert (await hub.handle("marketing.publish", json.dumps(campaign).encode())).ok
    claim = json.dumps({**KEY, "buyer": ALICE, "request_id": "claim-1"}).encode()
    first = await hub.handle("marketing.claim", claim)
    retry = await hub.handle("marketing.claim", claim)
    assert first.ok and retry.ok
    assert retry.positions == first.positions
    other = {**KEY, "buyer": ALICE, "request_id": "claim-2"}
    second = await hub.handle("marketing.claim", json.dumps(other).encode())
    assert second.state is not None and second.state["claimed"] == 2
