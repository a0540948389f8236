"""JSON payloads of the ``hub.cmd.binding.*`` commands, and the walks of a
binding to active, shared by the tests and the flash-sale bench.

Built as plain dicts (what a NATS client sends), not domain structs, so the
tests go through the boundary's decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from connectors.common import TokenState
from connectors.sandbox.control_client import SandboxControl
from domain.policy import PolicyBook
from hub.service.authorisation import BindingRoutes, Connection, authorise_on_grant
from hub.service.hub import Hub
from hub.service.policies import load_policy_book

#: The binding tests' clock: Friday 26 September 2025, 10:00 in China (the day
#: ``qualify``'s facts are as of).
NOW = datetime(2025, 9, 26, 2, 0, tzinfo=UTC)
ACCOUNT = "sph_beauty_001"
SHOP = "shop-42"
#: Huawei Technologies Co., Ltd. (public register): a valid credit code.
USCC = "914403001922038216"
NAME = "华为技术有限公司"

MATERIALS: dict[str, list[str]] = {
    "wechat_shop": ["business_licence", "legal_person_id"],
    "douyin_shop": ["business_licence", "shop_logo"],
    "kuaishou_shop": ["id_card_front", "id_card_back", "handheld_id_photo"],
    "youzan": [],
}
#: What a binding maps at authorisation where the platform asks (Youzan's
#: custom mapping), for the rigs that sell on every platform.
MAPPED_DATA: dict[str, list[str]] = {"youzan": ["orders", "stock"]}
REQUIREMENT: dict[str, str] = {
    "wechat_shop": "corporate_bank_account_verification",
    "douyin_shop": "security_deposit",
    "kuaishou_shop": "face_recognition",
}


def keys(platform: str, shop_id: str = SHOP) -> dict[str, Any]:
    """The three keys of a binding."""
    return {"channel_account": ACCOUNT, "platform": platform, "shop_id": shop_id}


def encode(data: dict[str, Any]) -> bytes:
    """JSON bytes of a payload."""
    return msgspec.json.encode(data)


def request(platform: str, **extra: Any) -> dict[str, Any]:
    """``binding.request`` with every material the platform asks for."""
    return keys(platform, **extra) | {"materials": MATERIALS[platform]}


def verify(platform: str, name: str = NAME, **extra: Any) -> dict[str, Any]:
    """``binding.verify_subject``: account and licence subjects (names may differ)."""
    return keys(platform, **extra) | {
        "account_subject": {"kind": "enterprise", "name": NAME, "code": USCC},
        "licence_subject": {"kind": "enterprise", "name": name, "code": USCC},
    }


def qualify(platform: str, shop_id: str = SHOP, **facts: Any) -> dict[str, Any]:
    """``binding.record_qualification`` with good facts, changed by ``facts``."""
    base: dict[str, Any] = {
        "as_of": "2025-09-26",
        "compliance_score": 92,
        "followers": 25_000,
        "last_completed_sale_on": "2025-09-25",
    }
    return keys(platform, shop_id) | {"facts": base | facts}


def meet(platform: str, **extra: Any) -> dict[str, Any]:
    """``binding.meet_requirement`` of the platform's special requirement."""
    return keys(platform, **extra) | {"requirement": REQUIREMENT[platform]}


#: The events of ``activate`` on a platform with a special requirement.
ACTIVE_EVENTS = [
    "BindingRequested",
    "SubjectVerified",
    "QualificationPassed",
    "SpecialRequirementMet",
    "GrantObtained",
    "BindingAuthorised",
    "BindingActivated",
]


def to_requirements_met(
    platform: str, shop_id: str = SHOP
) -> list[tuple[str, dict[str, Any]]]:
    """Every command taking a fresh binding on ``platform`` to "requirements met"."""
    steps = [
        ("binding.request", request(platform, shop_id=shop_id)),
        ("binding.verify_subject", verify(platform, shop_id=shop_id)),
        ("binding.record_qualification", qualify(platform, shop_id)),
    ]
    if platform in REQUIREMENT:
        steps.append(("binding.meet_requirement", meet(platform, shop_id=shop_id)))
    return steps


def platform_grant(platform: str, shop_id: str = SHOP) -> TokenState:
    """The tokens a platform's grant answers with, for a rig with no platform."""
    return TokenState(
        access_token=f"granted-{platform}-{shop_id}",
        access_expires_at=NOW + timedelta(hours=2),
    )


async def activate(
    hub: Hub, platform: str, shop_id: str = SHOP, mapped_data: Sequence[str] = ()
) -> Connection:
    """Take a fresh binding to active the way the hub does, with no platform.

    The commands up to "requirements met", then the route's last step on the
    grant a platform would have given (``platform_grant``): the hub records
    the grant, authorises the binding naming it, and activates it.
    """
    for name, data in to_requirements_met(platform, shop_id):
        reply = await hub.handle(name, encode(data))
        assert reply.ok, (name, reply.error)
    return await authorise_on_grant(
        hub,
        channel_account=ACCOUNT,
        platform=platform,
        shop_id=shop_id,
        grant=platform_grant(platform, shop_id),
        mapped_data=mapped_data,
    )


async def connect_through_route(
    hub: Hub,
    routes: BindingRoutes,
    control: SandboxControl,
    platform: str,
    shop_id: str,
    *,
    mapped_data: Sequence[str] = (),
) -> Connection:
    """Take a fresh binding to active through its route on the sandbox.

    The commands up to "requirements met", then ``routes.connect``; for a code
    flow the sandbox hands out the code its consent page would, and the route
    finishes at its callback with the state it issued.
    """
    for name, data in to_requirements_met(platform, shop_id):
        reply = await hub.handle(name, encode(data))
        assert reply.ok, (name, reply.error)
    connection = await routes.connect(platform, shop_id, mapped_data=mapped_data)
    if connection.status == "consent_needed":
        assert connection.consent_url is not None
        state = parse_qs(urlsplit(connection.consent_url).query)["state"][0]
        code = await control.authorization_code(platform, shop_id)
        connection = await routes.callback(platform, state, code)
    assert connection.status == "active", connection
    return connection


def book_with_douyin_orders() -> PolicyBook:
    """The bundled policy book, but Douyin bindings may read orders and users
    (its bundled data scope is product information only)."""
    book = load_policy_book()
    profiles = dict(book.profiles)
    profiles["douyin_shop"] = msgspec.structs.replace(
        profiles["douyin_shop"], data_scope="orders_and_users_full"
    )
    return msgspec.structs.replace(book, profiles=profiles)
