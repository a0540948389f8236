"""Marketing figures: per campaign coupons and discounts, per shop members.

Table ``marketing_campaigns`` has one row per campaign: coupons claimed and
earned by fission, shares credited and refused, redemptions, the sales they
were redeemed on and the discounts given (the shop's reduction and the coupons
apart, in fen). Table ``marketing_members`` counts each shop's followers
enrolled as members, and those whose member record keeps a (sealed) profile.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

import msgspec
import psycopg
from psycopg.rows import class_row

from domain import marketing
from domain.events import Event
from projections.base import Projection, topics_of


def _counting(change: str) -> str:
    return (
        f"UPDATE marketing_campaigns SET {change}, position = %s, updated_at = %s "
        "WHERE campaign_id = %s"
    )


#: The statement each counted event runs on its campaign's row.
_COUNTERS: dict[type[Event], str] = {
    marketing.CouponClaimed: _counting("coupons_claimed = coupons_claimed + 1"),
    marketing.FissionRewardGranted: _counting("fission_rewards = fission_rewards + 1"),
    marketing.ShareRecorded: _counting("shares_credited = shares_credited + 1"),
    marketing.ShareRefused: _counting("shares_refused = shares_refused + 1"),
    marketing.CampaignClosed: _counting("status = 'closed'"),
}


class MarketingProjection(Projection):
    """Tables ``marketing_campaigns`` and ``marketing_members``."""

    name: ClassVar[str] = "marketing"
    tables: ClassVar[tuple[str, ...]] = ("marketing_campaigns", "marketing_members")
    topics: ClassVar[tuple[str, ...]] = topics_of(marketing.CampaignEvent) + topics_of(
        marketing.MembershipEvent
    )

    async def apply(
        self, cur: psycopg.AsyncCursor[object], event: Event, position: int
    ) -> None:
        """Add ``event`` to its campaign's or shop's row."""
        at = event.occurred_at
        if isinstance(event, marketing.CampaignPublished):
            await cur.execute(
                "INSERT INTO marketing_campaigns (campaign_id, channel_account, "
                "platform, shop_id, campaign, title, starts_at, ends_at, position, "
                "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    event.originator_id,
                    event.channel_account,
                    event.platform,
                    event.shop_id,
                    event.campaign,
                    event.title,
                    event.starts_at,
                    event.ends_at,
                    position,
                    at,
                ),
            )
        elif isinstance(event, marketing.CouponRedeemed):
            await cur.execute(
                "UPDATE marketing_campaigns SET coupons_redeemed = "
                "coupons_redeemed + 1, sales_fen = sales_fen + %s, "
                "reduction_fen = reduction_fen + %s, coupon_fen = coupon_fen + %s, "
                "position = %s, updated_at = %s WHERE campaign_id = %s",
                (
                    event.subtotal_fen,
                    event.reduction_fen,
                    event.coupon_fen,
                    position,
                    at,
                    event.originator_id,
                ),
            )
        elif isinstance(event, marketing.MemberEnrolled):
            await cur.execute(
                "INSERT INTO marketing_members AS m (platform, shop_id, members, "
                "with_profile, position, updated_at) VALUES (%s, %s, 1, %s, %s, %s) "
                "ON CONFLICT (platform, shop_id) DO UPDATE SET "
                "members = m.members + 1, "
                "with_profile = m.with_profile + EXCLUDED.with_profile, "
                "position = EXCLUDED.position, updated_at = EXCLUDED.updated_at",
                (
                    event.platform,
                    event.shop_id,
                    1 if event.fields else 0,
                    position,
                    at,
                ),
            )
        elif type(event) in _COUNTERS:
            await cur.execute(
                _COUNTERS[type(event)], (position, at, event.originator_id)
            )


class CampaignRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``marketing_campaigns``."""

    campaign_id: uuid.UUID
    channel_account: str
    platform: str
    shop_id: str
    campaign: str
    title: str
    starts_at: datetime
    ends_at: datetime
    status: str
    coupons_claimed: int
    fission_rewards: int
    shares_credited: int
    shares_refused: int
    coupons_redeemed: int
    sales_fen: int
    reduction_fen: int
    coupon_fen: int
    position: int
    updated_at: datetime

    @property
    def discount_fen(self) -> int:
        """Every discount the campaign's redemptions gave."""
        return self.reduction_fen + self.coupon_fen


async def read_campaign_row(
    database_url: str, campaign_id: uuid.UUID
) -> CampaignRow | None:
    """The campaign's row, if the projection has it."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = conn.cursor(row_factory=class_row(CampaignRow))
        await cur.execute(
            "SELECT * FROM marketing_campaigns WHERE campaign_id = %s", (campaign_id,)
        )
        return await cur.fetchone()
