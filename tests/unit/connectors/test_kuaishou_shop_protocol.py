"""Kuaishou Shop request signing, push decryption, heartbeats and tokens.

Facts come from the open platform's "API调用说明", "消息服务说明" and
"APP授权说明" pages (mirrored in AndersonBY/kwaixiaodian-python-sdk under
``docs/开发指南和规则协议/开发文档/``). The signing page shows an example URL
with ``sign=af2d80958e77e17f1d973003b7b7aec2`` but redacts the sign secret
(``signSecret=xxxxxx``), so it cannot be used as a vector; no published
push ciphertext exists either. Expectations are therefore computed
independently: literals from the OpenSSL command line, plus hashlib/hmac and
cryptography constructions in the tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.common import token_state_from_grant
from connectors.kuaishou_shop import protocol as kuaishou
from connectors.kuaishou_shop.protocol import (
    DecryptError,
    SignatureError,
    UnsupportedSignMethodError,
)
from tests.unit.connectors.grants import fresh_grant

SIGN_SECRET = "testsignsecret"


def _params(sign_method: str) -> dict[str, str]:
    # The parameter set of the documented example, with a concrete method.
    return {
        "access_token": "xxx",
        "appkey": "ks123",
        "method": "open.item.get",
        "param": '{"kwaiItemId":123}',
        "signMethod": sign_method,
        "timestamp": "1583271919000",
        "version": "1",
    }


# No published vector: computed with
#   printf '%s' 'access_token=xxx&appkey=ks123&method=open.item.get&param=
#   {"kwaiItemId":123}&signMethod=HMAC_SHA256&timestamp=1583271919000&version=1
#   &signSecret=testsignsecret' | openssl dgst -sha256 -hmac testsignsecret
#   -binary | base64
# (one line), and the MD5 variant with `openssl dgst -md5`.
SIGN_HMAC_SHA256 = "fSK4bIsPEPe58+zcK/BblNWRVKR7HrGlrt4f9eSwrNU="
SIGN_MD5 = "9c534d36c94355e16f4bbbd1815af2d2"

# No published vector: the message key is Base64 of b"0123456789abcdef", and
# the ciphertext was made with
#   printf '%s' "$PLAINTEXT" | openssl enc -aes-128-cbc
#     -K 30313233343536373839616263646566 -iv 00000000000000000000000000000000
#     | base64 -w0
# The plaintext uses the field values of the documented message example.
MESSAGE_KEY = "MDEyMzQ1Njc4OWFiY2RlZg=="
PUSH_PLAINTEXT = (
    b'{"eventId":"267_2345_147402","bizId":201560025620985,'
    b'"event":"kwaishop_order_addOrder"}'
)
PUSH_BODY = (
    "dfeWYlIikAu1qaaojGdMcEMXubOI0qjqohiEU2r9QrT37r/7U8olXAX6jFtiPstL6ftqgOqrCc/e"
    "QV4KAp19kWbd3VNYBKvgpPfk5XWyQgY888vu8pM/wsmHbGeop5ds"
)


# ----------------------------------------------------------------- sign


def test_sign_base_string_is_sorted_pairs_then_sign_secret() -> None:
    assert kuaishou.sign_base_string(_params("MD5"), SIGN_SECRET) == (
        'access_token=xxx&appkey=ks123&method=open.item.get&param={"kwaiItemId":123}'
        "&signMethod=MD5&timestamp=1583271919000&version=1&signSecret=testsignsecret"
    )


def test_hmac_sha256_sign_matches_openssl_reference() -> None:
    assert kuaishou.sign(_params("HMAC_SHA256"), SIGN_SECRET) == SIGN_HMAC_SHA256


def test_md5_sign_matches_openssl_reference() -> None:
    assert kuaishou.sign(_params("MD5"), SIGN_SECRET) == SIGN_MD5


def test_hmac_sign_is_base64_of_hmac_keyed_with_the_sign_secret() -> None:
    params = _params("HMAC_SHA256") | {"param": '{"title":"短袖","relItemId":123456}'}
    base = "&".join(f"{k}={params[k]}" for k in sorted(params))
    base += f"&signSecret={SIGN_SECRET}"
    digest = hmac.new(SIGN_SECRET.encode(), base.encode(), hashlib.sha256).digest()
    assert kuaishou.sign(params, SIGN_SECRET) == base64.b64encode(digest).decode()


def test_existing_sign_parameter_is_left_out_of_the_signature() -> None:
    params = _params("MD5")
    assert kuaishou.sign(params | {"sign": "whatever"}, SIGN_SECRET) == SIGN_MD5


def test_missing_sign_method_signs_with_md5_as_the_sdk_does() -> None:
    params = _params("MD5")
    del params["signMethod"]
    expected = hashlib.md5(
        kuaishou.sign_base_string(params, SIGN_SECRET).encode()
    ).hexdigest()
    assert kuaishou.sign(params, SIGN_SECRET) == expected


def test_unknown_sign_method_is_rejected() -> None:
    with pytest.raises(UnsupportedSignMethodError, match="'SHA1' is not one of"):
        kuaishou.sign(_params("SHA1"), SIGN_SECRET)


def test_verify_sign_accepts_a_correctly_signed_request() -> None:
    kuaishou.verify_sign(
        _params("HMAC_SHA256") | {"sign": SIGN_HMAC_SHA256}, SIGN_SECRET
    )


def test_request_with_a_changed_parameter_is_rejected() -> None:
    params = _params("HMAC_SHA256") | {"sign": SIGN_HMAC_SHA256, "version": "2"}
    with pytest.raises(SignatureError, match="Kuaishou sign mismatch"):
        kuaishou.verify_sign(params, SIGN_SECRET)


def test_request_without_sign_is_rejected() -> None:
    with pytest.raises(SignatureError, match="no 'sign' parameter"):
        kuaishou.verify_sign(_params("MD5"), SIGN_SECRET)


# ----------------------------------------------------------------- push decryption


def test_decrypt_push_matches_openssl_reference() -> None:
    assert kuaishou.decrypt_push(MESSAGE_KEY, PUSH_BODY) == PUSH_PLAINTEXT


def test_decrypt_push_accepts_bytes_and_a_trailing_newline() -> None:
    body = (PUSH_BODY + "\n").encode()
    assert kuaishou.decrypt_push(MESSAGE_KEY, body) == PUSH_PLAINTEXT


def test_encrypt_push_reproduces_the_reference_ciphertext() -> None:
    # Zero IV and a fixed key make the encryption deterministic.
    assert kuaishou.encrypt_push(MESSAGE_KEY, PUSH_PLAINTEXT) == PUSH_BODY


def test_decrypt_push_is_aes_cbc_with_a_zero_iv() -> None:
    key = base64.b64decode(MESSAGE_KEY)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor()
    padded = decryptor.update(base64.b64decode(PUSH_BODY)) + decryptor.finalize()
    assert padded[: -padded[-1]] == PUSH_PLAINTEXT


def test_flipped_byte_in_push_is_rejected() -> None:
    raw = bytearray(base64.b64decode(PUSH_BODY))
    raw[-3] ^= 0x01
    with pytest.raises(DecryptError, match="bad PKCS#7 padding"):
        kuaishou.decrypt_push(MESSAGE_KEY, base64.b64encode(bytes(raw)).decode())


def test_push_under_another_key_is_rejected() -> None:
    other_key = base64.b64encode(b"fedcba9876543210").decode()
    with pytest.raises(DecryptError):
        kuaishou.decrypt_push(other_key, PUSH_BODY)


def test_push_with_wrong_padding_is_rejected() -> None:
    key = base64.b64decode(MESSAGE_KEY)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    ciphertext = encryptor.update(b'{"test":true}\x00\x00\x03') + encryptor.finalize()
    with pytest.raises(DecryptError, match="bad PKCS#7 padding"):
        kuaishou.decrypt_push(MESSAGE_KEY, base64.b64encode(ciphertext).decode())


def test_push_that_is_not_whole_blocks_is_rejected() -> None:
    body = base64.b64encode(base64.b64decode(PUSH_BODY)[:-1]).decode()
    with pytest.raises(DecryptError, match="not a whole number"):
        kuaishou.decrypt_push(MESSAGE_KEY, body)


def test_push_that_is_not_base64_is_rejected() -> None:
    with pytest.raises(DecryptError, match="not valid Base64"):
        kuaishou.decrypt_push(MESSAGE_KEY, "{not base64}")


@pytest.mark.parametrize(
    "bad_key", ["not base64!", base64.b64encode(b"short").decode()]
)
def test_malformed_message_key_is_rejected(bad_key: str) -> None:
    with pytest.raises(DecryptError, match="message key"):
        kuaishou.decrypt_push(bad_key, PUSH_BODY)


@settings(max_examples=60)
@given(
    key=st.sampled_from([16, 24, 32]).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)
    ),
    plaintext=st.binary(max_size=300),
)
def test_encrypt_push_then_decrypt_round_trips(key: bytes, plaintext: bytes) -> None:
    private_key = base64.b64encode(key).decode()
    body = kuaishou.encrypt_push(private_key, plaintext)
    assert kuaishou.decrypt_push(private_key, body) == plaintext


# ----------------------------------------------------------------- heartbeats


def test_heartbeat_is_recognised_and_answered_with_result_1() -> None:
    heartbeat = json.loads(
        kuaishou.decrypt_push(
            MESSAGE_KEY, kuaishou.encrypt_push(MESSAGE_KEY, b'{"test":true}')
        )
    )
    assert kuaishou.is_heartbeat(heartbeat)
    assert kuaishou.is_heartbeat(kuaishou.HEARTBEAT)
    assert (
        json.loads(kuaishou.PUSH_ACK_BODY) == dict(kuaishou.PUSH_ACK) == {"result": 1}
    )


@pytest.mark.parametrize(
    "message", [{"test": False}, {"test": "true"}, json.loads(PUSH_PLAINTEXT)]
)
def test_business_messages_are_not_heartbeats(message: dict[str, object]) -> None:
    assert not kuaishou.is_heartbeat(message)


def test_heartbeat_constants_cannot_be_mutated() -> None:
    with pytest.raises(TypeError):
        kuaishou.PUSH_ACK["result"] = 0  # type: ignore[index]


# ----------------------------------------------------------------- rate limits


def test_qps_limit_message_from_the_docs_is_recognised() -> None:
    # Quoted from the K1008 "API调用触发限流告警" support page.
    message = (
        "Exceed qps limit, KEY [apiId:open.order.desensitise.batch;"
        "appkey:ks669347498428231705], MAX_QPS [300.0]"
    )
    assert kuaishou.is_rate_limited_message(message)


def test_daily_quota_message_is_not_a_qps_limit() -> None:
    assert not kuaishou.is_rate_limited_message(
        "Exceed quota limit, KEY [appkey:ks6887777777779839]"
    )


# ----------------------------------------------------------------- tokens

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_access_token_lives_48_hours_and_is_refreshed_two_hours_early() -> None:
    state = fresh_grant(kuaishou, NOW)
    assert state.access_expires_at == NOW + timedelta(hours=48)
    assert not kuaishou.needs_refresh(state, NOW + timedelta(hours=45, minutes=59))
    assert kuaishou.needs_refresh(state, NOW + timedelta(hours=46))


def test_refresh_rotates_the_refresh_token_and_keeps_its_expiry() -> None:
    first = fresh_grant(kuaishou, NOW)
    later = NOW + timedelta(hours=46)
    # The refresh answer carries the remaining lifetime of the inherited expiry.
    remaining = int((first.refresh_expires_at - later).total_seconds())  # type: ignore[operator]
    second = token_state_from_grant(
        access_token="A2",
        expires_in_s=kuaishou.ACCESS_TOKEN_TTL_S,
        now=later,
        refresh_token="R2",
        refresh_expires_in_s=remaining,
        previous=first,
    )
    assert second.refresh_token == "R2"
    assert second.refresh_expires_at == first.refresh_expires_at
    assert not kuaishou.needs_reauthorization(second, later)
    assert kuaishou.needs_reauthorization(second, NOW + timedelta(days=180))


def test_refresh_without_expiry_in_the_answer_keeps_the_previous_expiry() -> None:
    first = fresh_grant(kuaishou, NOW)
    second = token_state_from_grant(
        access_token="A2",
        expires_in_s=kuaishou.ACCESS_TOKEN_TTL_S,
        now=NOW + timedelta(days=2),
        refresh_token="R2",
        previous=first,
    )
    assert second.refresh_expires_at == first.refresh_expires_at
