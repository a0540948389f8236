"""Marketing commands: campaigns (coupons, fission) and membership sync.

``hub.cmd.marketing.*`` run on two aggregates of ``domain/marketing.py``:
a campaign per channel account, shop and campaign code (:data:`CAMPAIGN_RULES`)
and a membership per follower of a binding (:class:`MembershipRules`, reading
the platform's profile policy from the policy book).

From Python (e.g. ``hub demo``)::

    from domain.marketing import CartLine, RedeemCoupon, price_order
    priced = price_order(lines, campaign.offers())      # pure, no I/O
    await hub.execute("marketing.redeem", RedeemCoupon(...))

:func:`read_campaign` loads a campaign's state from the log, and
:func:`member_command` seals a follower's plain profile into the
:class:`domain.marketing.EnrollMember` the membership takes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain import marketing
from domain.events import Context, Event, project
from domain.personal import ProfilePolicy
from domain.policy import PolicyBook
from hub.service.inventory import aggregate_history
from hub.service.personal import PersonalData, profile_policies

if TYPE_CHECKING:
    from connectors.common import BuyerPersonalData


class CampaignRules:
    """How the committer runs campaign commands."""

    def aggregate_id(self, command: marketing.CampaignCommand) -> uuid.UUID:
        """Campaigns are keyed by channel account, platform, shop and code."""
        return marketing.campaign_id(
            command.channel_account, command.platform, command.shop_id, command.campaign
        )

    def decide(
        self,
        state: marketing.Campaign | None,
        command: marketing.CampaignCommand,
        ctx: Context,
    ) -> list[Event]:
        """Delegate to :func:`domain.marketing.decide`."""
        return marketing.decide(state, command, ctx)

    def mutate(self, event: Event, state: marketing.Campaign | None) -> Any:
        """Delegate to :func:`domain.marketing.mutate`."""
        return marketing.mutate(event, state)

    def request_key(self, command: marketing.CampaignCommand) -> str | None:
        """A claim's idempotency key (the other commands are idempotent by
        their keys: the order redeemed, the friend credited, the terms)."""
        return (
            command.request_id if isinstance(command, marketing.ClaimCoupon) else None
        )


CAMPAIGN_RULES = CampaignRules()


class MembershipRules:
    """How the committer runs ``marketing.enroll_member``: under the platform's
    profile policy (``sync.user_profile`` of the book; none: no personal data)."""

    def __init__(self, book: PolicyBook | None = None) -> None:
        """Rules reading ``book`` (``None``: every platform keeps no profile)."""
        self.book = book
        self._policies = profile_policies(book) if book is not None else {}

    def with_book(self, book: PolicyBook) -> MembershipRules:
        """Membership rules reading ``book``."""
        return MembershipRules(book)

    def policy(self, platform: str) -> ProfilePolicy | None:
        """The platform's profile policy, if its book gives one."""
        return self._policies.get(platform)

    def aggregate_id(self, command: marketing.EnrollMember) -> uuid.UUID:
        """One membership per binding and follower."""
        return marketing.member_id(
            command.channel_account,
            command.platform,
            command.shop_id,
            command.subject_id,
        )

    def decide(
        self,
        state: marketing.Member | None,
        command: marketing.EnrollMember,
        ctx: Context,
    ) -> list[Event]:
        """Delegate to :func:`domain.marketing.decide_membership`."""
        return marketing.decide_membership(
            state, command, ctx, self.policy(command.platform)
        )

    def mutate(self, event: Event, state: marketing.Member | None) -> Any:
        """Delegate to :func:`domain.marketing.mutate_member`."""
        return marketing.mutate_member(event, state)


MEMBERSHIP_RULES = MembershipRules()


async def member_command(
    personal: PersonalData,
    policy: ProfilePolicy | None,
    *,
    channel_account: str,
    platform: str,
    shop_id: str,
    follower: BuyerPersonalData,
    followed_at: datetime,
) -> marketing.EnrollMember:
    """The enrolment of a follower reported in the clear, sealed at the door.

    The subject id and the sealed fields come from :class:`PersonalData` under
    the platform's profile policy (so a follower who also buys is the same
    subject); with no policy the member is named by the hash of the open id and
    no field is sealed.

    Raises:
        ValueError: the follower has neither a phone nor an open id.
    """
    ref = follower.phone or follower.buyer_ref
    if not ref:
        raise ValueError(
            f"follower of {channel_account}/{platform}/{shop_id}: neither phone "
            "nor buyer_ref (a member needs an identifier)"
        )
    order_id = f"follow:{channel_account}"
    profile = None
    if policy is not None:
        profile = await personal.seal(
            policy,
            platform=platform,
            shop_id=shop_id,
            order_id=order_id,
            buyer=follower,
        )
    subject = (
        profile.subject_id
        if profile is not None
        else personal.subject_id(f"account:{platform}/{shop_id}:{ref}")
    )
    return marketing.EnrollMember(
        channel_account=channel_account,
        platform=platform,
        shop_id=shop_id,
        subject_id=subject,
        followed_at=followed_at,
        profile=profile,
    )


class CampaignNotFoundError(LookupError):
    """A campaign reference names nothing in the log."""


def parse_campaign_ref(ref: str) -> uuid.UUID:
    """A campaign's id from its id or ``[campaign:]CHANNEL:PLATFORM:SHOP:CODE``.

    Raises:
        CampaignNotFoundError: ``ref`` has neither form.
    """
    try:
        return uuid.UUID(ref)
    except ValueError:
        pass
    parts = ref.removeprefix("campaign:").split(":")
    if len(parts) != 4 or not all(parts):
        raise CampaignNotFoundError(
            f"campaign reference {ref!r} is neither an id nor "
            "campaign:CHANNEL_ACCOUNT:PLATFORM:SHOP_ID:CAMPAIGN"
        )
    return marketing.campaign_id(*parts)


async def read_campaign(database_url: str, ref: str) -> marketing.Campaign:
    """The campaign ``ref`` names, folded from the log.

    Raises:
        CampaignNotFoundError: no such campaign.
    """
    cid = parse_campaign_ref(ref)
    events = [event for _, event in await aggregate_history(database_url, cid)]
    state: marketing.Campaign | None = project(marketing.mutate, None, events)
    if state is None:
        raise CampaignNotFoundError(f"no campaign {ref!r} in the log (id {cid})")
    return state
