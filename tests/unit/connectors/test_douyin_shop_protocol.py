"""Douyin Shop request signing, push verification and token rules.

No published input/output vector was found for Douyin's ``sign`` or
``event-sign`` (searched the op.jinritemai.com docs and public SDKs such as
minibear2021/doudian ``doudian/core.py``, which confirm the constructions but
publish no digests). The expectations below are therefore computed
independently: literal digests produced with the OpenSSL command line
(``openssl dgst -sha256 -hmac`` / ``openssl dgst -md5``) over the documented
sign pattern, and the same constructions again with hashlib/hmac in the tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.common import token_state_from_grant
from connectors.douyin_shop import protocol as douyin
from connectors.douyin_shop.protocol import SignatureError, UnsupportedSignMethodError
from tests.unit.connectors.grants import fresh_grant

APP_KEY = "3409409348479354011"
APP_SECRET = "2d9aa5e8-5c1c-4b8f-9a2b-fb7e0e4b7c31"
METHOD = "order.orderDetail"
PARAM_JSON = '{"shop_order_id":"4781320682406083640"}'
TIMESTAMP = "2024-01-01 12:00:00"

# No published vector: computed with
#   printf '%s' "$SECRET""app_key$KEY""method$METHOD""param_json$PJ"\
#     "timestamp$TS""v2$SECRET" | openssl dgst -sha256 -hmac "$SECRET"
# and the same pattern piped to `openssl dgst -md5`.
SIGN_HMAC_SHA256 = "bf209e2b036ae55b9cb3d22ce23106a26b8bdb30342d3ca10023688aa8c2b277"
SIGN_MD5 = "2f16f97cb4ee42d5b1b96c701f4093ab"

# No published vector: printf '%s' "$KEY$BODY$SECRET" | openssl dgst -md5
PUSH_BODY = (
    b'[{"tag":"101","msg_id":"7265432109876543210",'
    b'"data":"{\\"p_id\\":4781320682406083640,\\"shop_id\\":123456}"}]'
)
PUSH_EVENT_SIGN = "3e1d99b309d3749e12bae49fb3e74699"


def _reference_pattern(param_json: str, timestamp: str, v: str = "2") -> bytes:
    return (
        APP_SECRET
        + "app_key"
        + APP_KEY
        + "method"
        + METHOD
        + "param_json"
        + param_json
        + "timestamp"
        + timestamp
        + "v"
        + v
        + APP_SECRET
    ).encode()


# ----------------------------------------------------------------- param_json


def test_param_json_sorts_keys_at_every_level_and_is_compact() -> None:
    params = {
        "size": 20,
        "page": 0,
        "filter": {"status": 2, "create_time_start": "1700000000"},
        "items": [{"b": 1, "a": 2}],
    }
    assert douyin.canonical_param_json(params) == (
        '{"filter":{"create_time_start":"1700000000","status":2},'
        '"items":[{"a":2,"b":1}],"page":0,"size":20}'
    )


def test_param_json_keeps_non_ascii_text_as_is() -> None:
    assert douyin.canonical_param_json({"title": "短袖 T恤"}) == '{"title":"短袖 T恤"}'


def test_param_json_of_no_params_is_empty_object() -> None:
    assert douyin.canonical_param_json({}) == "{}"


def test_param_json_is_the_same_whatever_the_key_order() -> None:
    one = douyin.canonical_param_json({"b": {"y": 1, "x": 2}, "a": "1"})
    two = douyin.canonical_param_json({"a": "1", "b": {"x": 2, "y": 1}})
    assert one == two


@settings(max_examples=60)
@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=5), children, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=5,
    )
)
def test_param_json_decodes_back_to_the_params(params: dict[str, Any]) -> None:
    text = douyin.canonical_param_json(params)
    assert json.loads(text) == params
    assert douyin.canonical_param_json(json.loads(text)) == text


# ----------------------------------------------------------------- sign


def test_sign_hmac_sha256_matches_openssl_reference() -> None:
    assert (
        douyin.sign(APP_KEY, APP_SECRET, METHOD, PARAM_JSON, TIMESTAMP)
        == SIGN_HMAC_SHA256
    )


def test_sign_md5_matches_openssl_reference() -> None:
    got = douyin.sign(
        APP_KEY, APP_SECRET, METHOD, PARAM_JSON, TIMESTAMP, sign_method="md5"
    )
    assert got == SIGN_MD5


def test_sign_is_hmac_keyed_with_the_secret_over_the_documented_pattern() -> None:
    expected = hmac.new(
        APP_SECRET.encode(), _reference_pattern(PARAM_JSON, TIMESTAMP), hashlib.sha256
    ).hexdigest()
    assert douyin.sign(APP_KEY, APP_SECRET, METHOD, PARAM_JSON, TIMESTAMP) == expected


def test_sign_md5_is_plain_md5_of_the_documented_pattern() -> None:
    expected = hashlib.md5(_reference_pattern(PARAM_JSON, TIMESTAMP)).hexdigest()
    got = douyin.sign(
        APP_KEY, APP_SECRET, METHOD, PARAM_JSON, TIMESTAMP, sign_method="md5"
    )
    assert got == expected


def test_sign_covers_version_timestamp_and_params() -> None:
    base = douyin.sign(APP_KEY, APP_SECRET, METHOD, PARAM_JSON, TIMESTAMP)
    assert (
        douyin.sign(APP_KEY, APP_SECRET, METHOD, PARAM_JSON, TIMESTAMP, v="1") != base
    )
    assert (
        douyin.sign(APP_KEY, APP_SECRET, METHOD, PARAM_JSON, "2024-01-01 12:00:01")
        != base
    )
    assert (
        douyin.sign(APP_KEY, APP_SECRET, METHOD, '{"shop_order_id":"1"}', TIMESTAMP)
        != base
    )
    assert douyin.sign(APP_KEY, "other-secret", METHOD, PARAM_JSON, TIMESTAMP) != base


def test_sign_over_unicode_params_signs_utf8_bytes() -> None:
    param_json = douyin.canonical_param_json({"title": "短袖"})
    expected = hmac.new(
        APP_SECRET.encode(), _reference_pattern(param_json, TIMESTAMP), hashlib.sha256
    ).hexdigest()
    got = douyin.sign(APP_KEY, APP_SECRET, METHOD, param_json, TIMESTAMP)
    assert got == expected


def test_unknown_sign_method_is_rejected() -> None:
    with pytest.raises(UnsupportedSignMethodError, match="'sha1' is not one of"):
        douyin.sign(APP_KEY, APP_SECRET, METHOD, PARAM_JSON, TIMESTAMP, "2", "sha1")


# ----------------------------------------------------------------- event-sign


def test_event_sign_matches_openssl_reference() -> None:
    assert douyin.event_sign(APP_KEY, PUSH_BODY, APP_SECRET) == PUSH_EVENT_SIGN


def test_event_sign_is_md5_of_key_raw_body_and_secret() -> None:
    body = '[{"tag":"0","msg_id":"1","data":"{\\"标题\\":\\"短袖\\"}"}]'.encode()
    expected = hashlib.md5(APP_KEY.encode() + body + APP_SECRET.encode()).hexdigest()
    assert douyin.event_sign(APP_KEY, body, APP_SECRET) == expected


def test_verify_event_sign_accepts_a_genuine_push() -> None:
    douyin.verify_event_sign(APP_KEY, PUSH_BODY, APP_SECRET, PUSH_EVENT_SIGN)


def test_verify_event_sign_accepts_upper_case_hex() -> None:
    douyin.verify_event_sign(APP_KEY, PUSH_BODY, APP_SECRET, PUSH_EVENT_SIGN.upper())


def test_push_with_a_flipped_body_byte_is_rejected() -> None:
    tampered = bytearray(PUSH_BODY)
    tampered[20] ^= 0x01
    with pytest.raises(SignatureError, match="event-sign header mismatch"):
        douyin.verify_event_sign(APP_KEY, bytes(tampered), APP_SECRET, PUSH_EVENT_SIGN)


def test_push_with_a_wrong_signature_is_rejected() -> None:
    wrong = PUSH_EVENT_SIGN[:-1] + ("0" if PUSH_EVENT_SIGN[-1] != "0" else "1")
    with pytest.raises(SignatureError):
        douyin.verify_event_sign(APP_KEY, PUSH_BODY, APP_SECRET, wrong)


def test_push_signed_with_another_secret_is_rejected() -> None:
    forged = douyin.event_sign(APP_KEY, PUSH_BODY, "not-the-secret")
    with pytest.raises(SignatureError):
        douyin.verify_event_sign(APP_KEY, PUSH_BODY, APP_SECRET, forged)


def test_non_ascii_signature_header_is_rejected_not_crashing() -> None:
    with pytest.raises(SignatureError):
        douyin.verify_event_sign(APP_KEY, PUSH_BODY, APP_SECRET, "签名")


@settings(max_examples=60)
@given(body=st.binary(max_size=200), flip=st.integers(min_value=0, max_value=199))
def test_any_body_change_breaks_the_event_sign(body: bytes, flip: int) -> None:
    signature = douyin.event_sign(APP_KEY, body, APP_SECRET)
    douyin.verify_event_sign(APP_KEY, body, APP_SECRET, signature)
    if body:
        tampered = bytearray(body)
        tampered[flip % len(body)] ^= 0x80
        with pytest.raises(SignatureError):
            douyin.verify_event_sign(APP_KEY, bytes(tampered), APP_SECRET, signature)


# ----------------------------------------------------------------- tokens

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_token_lifetimes_are_seven_and_fourteen_days() -> None:
    assert douyin.ACCESS_TOKEN_TTL_S == 604_800
    assert douyin.REFRESH_TOKEN_TTL_S == 1_209_600


def test_access_token_is_refreshed_a_day_before_expiry() -> None:
    state = fresh_grant(douyin, NOW)
    assert not douyin.needs_refresh(state, NOW + timedelta(days=5, hours=23))
    assert douyin.needs_refresh(state, NOW + timedelta(days=6))
    assert not douyin.needs_reauthorization(state, NOW + timedelta(days=13))
    assert douyin.needs_reauthorization(state, NOW + timedelta(days=14))


def test_shop_without_refresh_token_must_reauthorize() -> None:
    state = token_state_from_grant(access_token="A", expires_in_s=60, now=NOW)
    assert douyin.needs_reauthorization(state, NOW)


@pytest.mark.parametrize(
    ("code", "limited"), [(60000, True), ("60000", True), (10000, False)]
)
def test_rate_limit_code(code: int | str, limited: bool) -> None:
    assert douyin.is_rate_limited_code(code) is limited
