"""Buyers' personal data: masks, profile policies and subject identities."""

from __future__ import annotations

import os

import pytest

from connectors.common import BuyerPersonalData
from domain.personal import (
    CUSTOM_MAPPING,
    DE_IDENTIFIED_MERGE,
    ENCRYPTED_TRANSFER_TO_CRM,
    STORED_SEPARATELY,
    UnknownProfileModeError,
    mask,
    mask_phone,
    profile_policy,
    subject_identity,
)
from hub.service.personal import open_field, plain_fields, seal_field


def test_a_phone_is_masked_to_its_first_three_and_last_four_digits() -> None:
    assert mask_phone("13812341234") == "138****1234"
    assert mask("name", "张三丰") == "张**"
    assert mask("address", "广东省 广州市 海珠区 新港中路 1 号") == "广东省 ***"
    assert mask("buyer_ref", "oBUYER42") == "oB***42"


def test_each_mode_keeps_what_its_policy_says() -> None:
    merged = profile_policy(DE_IDENTIFIED_MERGE)
    assert merged.merge and "address" in merged.fields
    assert not profile_policy(STORED_SEPARATELY).merge
    assert profile_policy(ENCRYPTED_TRANSFER_TO_CRM).mode == ENCRYPTED_TRANSFER_TO_CRM
    custom = profile_policy(CUSTOM_MAPPING, fields=("phone",), merge=True)
    assert (custom.fields, custom.merge) == (("phone",), True)
    assert profile_policy(CUSTOM_MAPPING).fields == ("name", "phone")
    with pytest.raises(UnknownProfileModeError, match="'share_all'"):
        profile_policy("share_all")


def _identity(mode: str, platform: str, shop: str, **buyer: str | None) -> str:
    return subject_identity(
        profile_policy(mode),
        platform=platform,
        shop_id=shop,
        order_id="o-1",
        phone=buyer.get("phone"),
        buyer_ref=buyer.get("buyer_ref"),
    )


def test_merged_buyers_are_one_person_by_phone_across_platforms_and_shops() -> None:
    wechat = _identity(DE_IDENTIFIED_MERGE, "wechat_shop", "a", phone="13800001111")
    other = _identity(
        DE_IDENTIFIED_MERGE, "youzan", "b", phone="+86 138 0000 1111", buyer_ref="x"
    )
    assert wechat == other == "phone:13800001111"


def test_separate_buyers_are_one_subject_per_platform_account() -> None:
    one = _identity(STORED_SEPARATELY, "douyin_shop", "a", phone="13800001111")
    two = _identity(STORED_SEPARATELY, "douyin_shop", "b", phone="13800001111")
    assert one != two
    assert _identity(STORED_SEPARATELY, "douyin_shop", "a") == (
        "order:douyin_shop/a:o-1"
    )


def test_a_sealed_field_opens_only_under_its_key_subject_and_field() -> None:
    key = os.urandom(32)
    sealed = seal_field(key, "sub_1", "phone", "13800001111")
    assert "13800001111" not in sealed
    assert open_field(key, "sub_1", "phone", sealed) == "13800001111"
    assert open_field(os.urandom(32), "sub_1", "phone", sealed) is None
    assert open_field(key, "sub_2", "phone", sealed) is None
    assert open_field(key, "sub_1", "name", sealed) is None


def test_only_the_kept_non_empty_fields_are_taken() -> None:
    buyer = BuyerPersonalData(name="张三", phone="", address="北京市 朝阳区")
    assert plain_fields(buyer, ("name", "phone")) == {"name": "张三"}
