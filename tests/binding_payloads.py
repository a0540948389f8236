"""JSON payloads of the ``hub.cmd.binding.*`` commands, shared by the tests
and the flash-sale bench.

Built as plain dicts (what a NATS client sends), not domain structs, so the
tests go through the boundary's decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from domain.policy import PolicyBook
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


#: The events of ``to_active`` on a platform with a special requirement.
ACTIVE_EVENTS = [
    "BindingRequested",
    "SubjectVerified",
    "QualificationPassed",
    "SpecialRequirementMet",
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


def to_active(
    platform: str, shop_id: str = SHOP, mapped_data: Sequence[str] = ()
) -> list[tuple[str, dict[str, Any]]]:
    """Every command taking a fresh binding on ``platform`` to active; the
    authorisation maps ``mapped_data`` when given."""
    mapped = {"mapped_data": list(mapped_data)} if mapped_data else {}
    return [
        *to_requirements_met(platform, shop_id),
        ("binding.authorise", keys(platform, shop_id) | mapped),
        ("binding.activate", keys(platform, shop_id)),
    ]


def book_with_douyin_orders() -> PolicyBook:
    """The bundled policy book, but Douyin bindings may read orders and users
    (its bundled data scope is product information only)."""
    book = load_policy_book()
    profiles = dict(book.profiles)
    profiles["douyin_shop"] = msgspec.structs.replace(
        profiles["douyin_shop"], data_scope="orders_and_users_full"
    )
    return msgspec.structs.replace(book, profiles=profiles)
