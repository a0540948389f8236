"""Youzan push signatures, message decryption and gateway errors."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.youzan import protocol as youzan
from connectors.youzan.protocol import DecryptError, SignatureError

# Published vector: youzan/open-sdk-php examples/decrypt.php: a subscription
# message, the client secret that decrypts it, and the JSON it decrypts to
# (printed in the example's closing comment).
SDK_CLIENT_SECRET = "def00000b1228e0f6ba8ef96be9"
SDK_MESSAGE = (
    "zanO3UZzEA5Fm6qKsCq6rJ70VoKdiqXDfgdqGvzOfIZ%2FVNB%2FUHuG7%2F6TxdL6NQIVkO8CF"
    "m20whTivoPj4%2B6nXLAoe9J%2BZc42nRAbkTg5GruMl8RohxSDS0%2F99FwGtLW9TmMbxs554Z"
    "WVaRaiB5KaHF%2FNTzuLHyEtrLB2xu8Y%2BAnMN%2FVVVO9PPgO8o1BSAuvJdNXa1%2ButpG%2BR"
    "SSSMbxXrvCkRC34X7kCK1z5Xg51r%2Fym8nxrrSFn2c4R3rMRxKQAMmzRfGBkcQ9XayS31oT5DN"
    "y0h5pWzP8W5pe9naUguCiPIIAqGmBo8etlIn1Y1FHAU"
)
SDK_PLAINTEXT = (
    '{"appId":110,"buyerId":123456,"buyerPhone":"13800138000","env":"PROD",'
    '"kdtId":160,"orderNo":"E201905060000001","payTime":1557138032000,"price":42,'
    '"skuIntervalText":"7","skuVersionText":"试用版","status":20,'
    '"type":"APP_SUBSCRIBE"}'
).encode()

# No published vector for the push sign (Youzan's "消息推送数据 MD5 校验示例",
# developers.youzanyun.com/article/1577262013829, gives the construction with
# placeholders only). Computed with
#   printf '%s' "6a4b3c2d1e0f${SDK_MESSAGE}def00000b1228e0f6ba8ef96be9"
#     | openssl dgst -md5
CLIENT_ID = "6a4b3c2d1e0f"
PUSH_SIGN = "1e049abecc3e8b96dafb3d236cdfd5b7"


# ----------------------------------------------------------------- decryption


def test_decrypt_message_matches_the_sdk_example() -> None:
    assert youzan.decrypt_message(SDK_CLIENT_SECRET, SDK_MESSAGE) == SDK_PLAINTEXT


def test_encrypt_message_reproduces_the_sdk_example_exactly() -> None:
    # Fixed key and IV make the encryption deterministic, URL encoding included.
    assert youzan.encrypt_message(SDK_CLIENT_SECRET, SDK_PLAINTEXT) == SDK_MESSAGE


def test_key_is_the_first_16_characters_of_the_secret() -> None:
    assert youzan.message_key(SDK_CLIENT_SECRET) == b"def00000b1228e0f"
    longer_secret = SDK_CLIENT_SECRET + "-ignored-tail"
    assert youzan.decrypt_message(longer_secret, SDK_MESSAGE) == SDK_PLAINTEXT


def test_plus_signs_survive_url_decoding() -> None:
    # "+" is Base64, not a form-encoded space: a message whose Base64 has "+"
    # left unencoded must still decrypt.
    partly_decoded = SDK_MESSAGE.replace("%2B", "+")
    assert youzan.decrypt_message(SDK_CLIENT_SECRET, partly_decoded) == SDK_PLAINTEXT


def test_flipped_byte_in_message_is_rejected() -> None:
    raw = bytearray(
        base64.b64decode(SDK_MESSAGE.replace("%2F", "/").replace("%2B", "+"))
    )
    raw[-2] ^= 0x01
    tampered = quote(base64.b64encode(bytes(raw)).decode(), safe="")
    with pytest.raises(DecryptError, match="bad PKCS#7 padding"):
        youzan.decrypt_message(SDK_CLIENT_SECRET, tampered)


def test_message_under_another_secret_is_rejected() -> None:
    with pytest.raises(DecryptError):
        youzan.decrypt_message("ffffffffffffffffffffffffff", SDK_MESSAGE)


def test_message_with_wrong_padding_is_rejected() -> None:
    key = youzan.message_key(SDK_CLIENT_SECRET)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(youzan.MESSAGE_IV)).encryptor()
    ciphertext = (
        encryptor.update(b'{"a":1}' + bytes(8) + b"\x05") + encryptor.finalize()
    )
    message = quote(base64.b64encode(ciphertext).decode(), safe="")
    with pytest.raises(DecryptError, match="bad PKCS#7 padding"):
        youzan.decrypt_message(SDK_CLIENT_SECRET, message)


def test_message_that_is_not_base64_is_rejected() -> None:
    with pytest.raises(DecryptError, match="not URL-encoded Base64"):
        youzan.decrypt_message(SDK_CLIENT_SECRET, "%%%not-base64%%%")


def test_secret_shorter_than_16_characters_is_rejected() -> None:
    with pytest.raises(DecryptError, match="AES-128 needs"):
        youzan.decrypt_message("short", SDK_MESSAGE)


@settings(max_examples=60)
@given(
    secret=st.text("abcdef0123456789", min_size=16, max_size=40),
    plaintext=st.binary(max_size=300),
)
def test_encrypt_message_then_decrypt_round_trips(
    secret: str, plaintext: bytes
) -> None:
    message = youzan.encrypt_message(secret, plaintext)
    assert "+" not in message and "/" not in message and "=" not in message
    assert youzan.decrypt_message(secret, message) == plaintext


# ----------------------------------------------------------------- push sign


def test_push_sign_matches_openssl_reference() -> None:
    assert youzan.push_sign(CLIENT_ID, SDK_MESSAGE, SDK_CLIENT_SECRET) == PUSH_SIGN


def test_push_sign_is_md5_of_id_msg_secret() -> None:
    msg = '{"kdt_id":160,"type":"TRADE_ORDER_STATE","msg":"%7B%22tid%22%3A%22E1%22%7D"}'
    expected = hashlib.md5(f"{CLIENT_ID}{msg}{SDK_CLIENT_SECRET}".encode()).hexdigest()
    assert youzan.push_sign(CLIENT_ID, msg, SDK_CLIENT_SECRET) == expected


def test_verify_push_sign_accepts_genuine_and_upper_case_signs() -> None:
    youzan.verify_push_sign(CLIENT_ID, SDK_MESSAGE, SDK_CLIENT_SECRET, PUSH_SIGN)
    youzan.verify_push_sign(
        CLIENT_ID, SDK_MESSAGE, SDK_CLIENT_SECRET, PUSH_SIGN.upper()
    )


def test_push_sign_over_decoded_msg_is_rejected() -> None:
    # The sign covers msg as received; decoding it first must not verify.
    decoded = SDK_MESSAGE.replace("%2F", "/")
    with pytest.raises(SignatureError, match="Youzan push sign mismatch"):
        youzan.verify_push_sign(CLIENT_ID, decoded, SDK_CLIENT_SECRET, PUSH_SIGN)


def test_push_sign_from_another_app_is_rejected() -> None:
    with pytest.raises(SignatureError):
        youzan.verify_push_sign(
            "other-client", SDK_MESSAGE, SDK_CLIENT_SECRET, PUSH_SIGN
        )


# ----------------------------------------------------------------- gateway errors


def test_gateway_error_is_found_in_an_http_200_body() -> None:
    payload = {"gw_err_resp": {"err_msg": "token校验失败", "err_code": 4203}}
    assert youzan.gateway_error(payload) == (4203, "token校验失败")


@pytest.mark.parametrize("raw_code", ["5001", 5001.0])
def test_gateway_error_code_given_as_text_or_float_is_an_int(raw_code: object) -> None:
    payload = {"gw_err_resp": {"err_msg": "busy", "err_code": raw_code}}
    assert youzan.gateway_error(payload) == (5001, "busy")


@pytest.mark.parametrize("raw_code", [None, "abc", True, float("nan"), [4203]])
def test_gateway_error_without_a_usable_code_is_still_an_error(
    raw_code: object,
) -> None:
    payload = {"gw_err_resp": {"err_code": raw_code}}
    assert youzan.gateway_error(payload) == (-1, "")


@pytest.mark.parametrize(
    "payload",
    [
        {"success": True, "code": 200, "data": {"is_success": True}},
        {"gw_err_resp": None, "success": True},
        {"gw_err_resp": "unexpected text"},
        {},
    ],
)
def test_responses_without_gateway_error_give_none(payload: dict[str, object]) -> None:
    assert youzan.gateway_error(payload) is None
