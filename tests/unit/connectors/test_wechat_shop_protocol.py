"""WeChat Shop message push (safe mode) and token rules, against published vectors."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.common import TokenState, token_state_from_grant
from connectors.wechat_shop import protocol as wechat
from connectors.wechat_shop.protocol import (
    DecryptError,
    InvalidAESKeyError,
    SignatureError,
)

# Published vector: wechatpy/wechatpy tests/test_utils.py
# (test_check_signature_should_ok): the URL-check signature of token "test",
# timestamp "1410685589", nonce "test".
URL_CHECK = {
    "token": "test",
    "timestamp": "1410685589",
    "nonce": "test",
    "signature": "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff",
}

# Published vector: WeChat's official message-crypto sample (token "spamtest",
# appid "wx2c2769f8efd9abc2"), reproduced in fotock/WXbizMsgCrypt-Node
# README.md ("测试解密接口"): the pushed Encrypt text and its msg_signature. The
# sample publishes the outer XML (ToUserName gh_10f6c3c3ac5a, Content abcdteT,
# MsgId 6054768590064713728); the exact inner bytes below were checked to carry
# those same fields.
MP_SAMPLE_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
MP_SAMPLE = {
    "token": "spamtest",
    "app_id": "wx2c2769f8efd9abc2",
    "timestamp": "1409735669",
    "nonce": "1320562132",
    "msg_signature": "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
    "encrypt": (
        "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87w"
        "zQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328"
        "HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3y"
        "t+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpA"
        "e+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl"
        "9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
    ),
}
MP_SAMPLE_PLAINTEXT = (
    b"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"
    b"<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n"
    b"<CreateTime>1409735668</CreateTime>\n"
    b"<MsgType><![CDATA[text]]></MsgType>\n"
    b"<Content><![CDATA[abcdteT]]></Content>\n"
    b"<MsgId>6054768590064713728</MsgId>\n"
    b"</xml>"
)

# Published vector: the C# WXBizMsgCrypt sample, Sample.cs (copy in
# 2830499544/VipCard Chain.Wechat/Tencent/Sample.cs): token "QDG6eK", appid
# "wx5823bf96d3bd56c7", msg_signature and Encrypt of a text message "hello".
CS_SAMPLE = {
    "token": "QDG6eK",
    "app_id": "wx5823bf96d3bd56c7",
    "encoding_aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
    "timestamp": "1409659813",
    "nonce": "1372623149",
    "msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6",
    "encrypt": (
        "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWf"
        "rf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLY"
        "L42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+Ltw"
        "Gc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA"
        "9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4X"
        "XZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe"
        "0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
    ),
}

# Published vectors: the official Java sample's WXBizMsgCryptTest (copy in
# Wyl015/wuyiling work-test/src/main/resources/Utils/aes/WXBizMsgCryptTest.java):
# with random16 "aaaabbbbccccdddd", appid "wxb11529c136998cb6" and the key
# below, these plaintexts encrypt to exactly these texts.
JAVA_SAMPLE_APP_ID = "wxb11529c136998cb6"
JAVA_SAMPLE_RANDOM = b"aaaabbbbccccdddd"
JAVA_SAMPLE_VECTORS = [
    (
        "我是中文abcd123".encode(),
        "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832W"
        "zZGMhkP72vVOfg==",
    ),
    (
        (
            "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]>"
            "</ToUserName><FromUserName><![CDATA[gh_7f083739789a]]></FromUserName>"
            "<CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType>"
            "<Video><MediaId><![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6"
            "Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA[testCallBackReply"
            "Video]]></Title><Description><![CDATA[testCallBackReplyVideo]]>"
            "</Description></Video></xml>"
        ).encode(),
        "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4R"
        "sLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAb"
        "ExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9en"
        "GIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQ"
        "NSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92"
        "vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042Ol"
        "Ub1/slTwo4RscuQ+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqR"
        "s+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP"
        "5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb",
    ),
]


def _flip_byte_in_last_block(encrypt: str) -> str:
    raw = bytearray(base64.b64decode(encrypt))
    raw[-5] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


# ----------------------------------------------------------------- signatures


def test_url_check_signature_matches_wechatpy_vector() -> None:
    got = wechat.signature(
        URL_CHECK["token"], URL_CHECK["timestamp"], URL_CHECK["nonce"]
    )
    assert got == URL_CHECK["signature"]


def test_url_check_signature_is_sha1_of_sorted_values() -> None:
    # Independent construction: hashlib over the sorted, joined values.
    expected = hashlib.sha1(b"".join(sorted([b"tok", b"1700000000", b"n0nce"])))
    assert wechat.signature("tok", "1700000000", "n0nce") == expected.hexdigest()


@pytest.mark.parametrize("sample", [MP_SAMPLE, CS_SAMPLE], ids=["mp", "csharp"])
def test_msg_signature_matches_official_samples(sample: dict[str, str]) -> None:
    got = wechat.msg_signature(
        sample["token"], sample["timestamp"], sample["nonce"], sample["encrypt"]
    )
    assert got == sample["msg_signature"]
    wechat.verify_msg_signature(
        sample["token"],
        sample["timestamp"],
        sample["nonce"],
        sample["encrypt"],
        sample["msg_signature"],
    )


def test_verify_signature_accepts_the_published_url_check() -> None:
    wechat.verify_signature(
        URL_CHECK["token"],
        URL_CHECK["timestamp"],
        URL_CHECK["nonce"],
        URL_CHECK["signature"],
    )


def test_wrong_url_signature_is_rejected() -> None:
    # wechatpy's should_fail case: the last hex digit changed.
    with pytest.raises(SignatureError, match="WeChat signature mismatch"):
        wechat.verify_signature(
            "test", "1410685589", "test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443fe"
        )


def test_msg_signature_over_a_tampered_encrypt_is_rejected() -> None:
    tampered = _flip_byte_in_last_block(MP_SAMPLE["encrypt"])
    with pytest.raises(SignatureError, match="msg_signature mismatch"):
        wechat.verify_msg_signature(
            MP_SAMPLE["token"],
            MP_SAMPLE["timestamp"],
            MP_SAMPLE["nonce"],
            tampered,
            MP_SAMPLE["msg_signature"],
        )


# ----------------------------------------------------------------- decryption


def test_decrypt_official_mp_sample() -> None:
    got = wechat.decrypt(MP_SAMPLE_KEY, MP_SAMPLE["encrypt"], MP_SAMPLE["app_id"])
    assert got == MP_SAMPLE_PLAINTEXT


def test_decrypt_official_csharp_sample() -> None:
    got = wechat.decrypt(
        CS_SAMPLE["encoding_aes_key"], CS_SAMPLE["encrypt"], CS_SAMPLE["app_id"]
    )
    assert got.startswith(b"<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]>")
    assert b"<Content><![CDATA[hello]]></Content>" in got


@pytest.mark.parametrize(("plaintext", "published"), JAVA_SAMPLE_VECTORS)
def test_encrypt_reproduces_official_java_sample(
    plaintext: bytes, published: str
) -> None:
    got = wechat.encrypt(
        MP_SAMPLE_KEY, plaintext, JAVA_SAMPLE_APP_ID, random16=JAVA_SAMPLE_RANDOM
    )
    assert got == published
    assert wechat.decrypt(MP_SAMPLE_KEY, published, JAVA_SAMPLE_APP_ID) == plaintext


def test_ciphertext_is_padded_to_32_byte_blocks() -> None:
    for size in range(70):
        encrypted = wechat.encrypt(MP_SAMPLE_KEY, b"x" * size, "wxapp", b"r" * 16)
        assert len(base64.b64decode(encrypted)) % 32 == 0


def test_wrong_appid_is_rejected_with_both_ids_named() -> None:
    with pytest.raises(
        DecryptError,
        match=(
            r"appid mismatch: got 'wx2c2769f8efd9abc2', "
            r"expected 'wx0000000000000000'"
        ),
    ):
        wechat.decrypt(MP_SAMPLE_KEY, MP_SAMPLE["encrypt"], "wx0000000000000000")


def test_flipped_byte_in_ciphertext_is_rejected() -> None:
    tampered = _flip_byte_in_last_block(MP_SAMPLE["encrypt"])
    with pytest.raises(DecryptError, match="padding"):
        wechat.decrypt(MP_SAMPLE_KEY, tampered, MP_SAMPLE["app_id"])


def test_wrong_key_is_rejected() -> None:
    other_key = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg"
    with pytest.raises(DecryptError):
        wechat.decrypt(other_key, MP_SAMPLE["encrypt"], MP_SAMPLE["app_id"])


def _encrypt(body: bytes) -> str:
    """``body`` encrypted as it stands (no padding added) under the sample key."""
    key = wechat.aes_key(MP_SAMPLE_KEY)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(body) + encryptor.finalize()).decode()


@pytest.mark.parametrize("last_byte", [0, 33, 255])
def test_invalid_32_byte_padding_is_rejected(last_byte: int) -> None:
    # Build the ciphertext by hand so that only the padding is wrong.
    body = b"r" * 16 + (12).to_bytes(4, "big") + b"hello world!" + b"wxapp"
    body += bytes(63 - len(body)) + bytes([last_byte])
    with pytest.raises(DecryptError, match="bad PKCS#7 padding"):
        wechat.decrypt(MP_SAMPLE_KEY, _encrypt(body), "wxapp")


def test_padding_to_16_byte_blocks_is_rejected() -> None:
    # 44 bytes padded PKCS#5-style to 48 (4 x 0x04) is valid for a 16-byte
    # block but not whole 32-byte blocks, so it is not WeChat's scheme.
    body = b"r" * 16 + (19).to_bytes(4, "big") + b"nineteen bytes long" + b"wxapp"
    assert len(body) == 44
    body += bytes([4]) * 4
    with pytest.raises(DecryptError, match="bad PKCS#7 padding"):
        wechat.decrypt(MP_SAMPLE_KEY, _encrypt(body), "wxapp")


def test_length_field_beyond_the_message_is_rejected() -> None:
    body = b"r" * 16 + (1000).to_bytes(4, "big") + b"short" + b"wxapp"
    body += bytes([32 - len(body) % 32]) * (32 - len(body) % 32)
    with pytest.raises(DecryptError, match="length field says 1000 bytes"):
        wechat.decrypt(MP_SAMPLE_KEY, _encrypt(body), "wxapp")


def test_non_base64_encrypt_is_rejected() -> None:
    with pytest.raises(DecryptError, match="not valid Base64"):
        wechat.decrypt(MP_SAMPLE_KEY, "not base64 at all!", "wxapp")


@pytest.mark.parametrize(
    "bad_key",
    ["short", MP_SAMPLE_KEY + "A", "abcdefghijklmnopqrstuvwxyz0123456789ABCDE!"],
)
def test_malformed_encoding_aes_key_is_rejected(bad_key: str) -> None:
    with pytest.raises(InvalidAESKeyError):
        wechat.aes_key(bad_key)


def test_random16_must_be_16_bytes() -> None:
    with pytest.raises(ValueError, match="random16 is 15 bytes"):
        wechat.encrypt(MP_SAMPLE_KEY, b"x", "wxapp", random16=b"r" * 15)


def test_encrypt_without_random16_uses_fresh_randomness() -> None:
    first = wechat.encrypt(MP_SAMPLE_KEY, b"same", "wxapp")
    second = wechat.encrypt(MP_SAMPLE_KEY, b"same", "wxapp")
    assert first != second
    assert wechat.decrypt(MP_SAMPLE_KEY, first, "wxapp") == b"same"


_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@settings(max_examples=60)
@given(
    key=st.text(_KEY_ALPHABET, min_size=43, max_size=43),
    plaintext=st.binary(max_size=300),
    app_id=st.text(min_size=1, max_size=40),
    random16=st.binary(min_size=16, max_size=16),
)
def test_encrypt_then_decrypt_round_trips(
    key: str, plaintext: bytes, app_id: str, random16: bytes
) -> None:
    encrypted = wechat.encrypt(key, plaintext, app_id, random16)
    assert wechat.decrypt(key, encrypted, app_id) == plaintext


# ----------------------------------------------------------------- tokens

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _fresh_token() -> TokenState:
    return token_state_from_grant(
        access_token="ACCESS", expires_in_s=wechat.ACCESS_TOKEN_TTL_S, now=NOW
    )


def test_fresh_token_does_not_need_refresh() -> None:
    assert not wechat.needs_refresh(_fresh_token(), NOW + timedelta(minutes=30))


def test_token_needs_refresh_five_minutes_before_expiry() -> None:
    state = _fresh_token()
    assert state.access_expires_at == NOW + timedelta(seconds=7200)
    assert not wechat.needs_refresh(state, NOW + timedelta(seconds=7200 - 301))
    assert wechat.needs_refresh(state, NOW + timedelta(seconds=7200 - 300))
    assert wechat.needs_refresh(state, NOW + timedelta(hours=3))


@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
def test_expired_token_errcodes_trigger_refresh(errcode: int) -> None:
    assert wechat.is_token_expired_code(errcode)


@pytest.mark.parametrize("errcode", [0, -1, 40013, 45009])
def test_other_errcodes_do_not_trigger_refresh(errcode: int) -> None:
    assert not wechat.is_token_expired_code(errcode)


@pytest.mark.parametrize("errcode", [45009, 45011, 10020112])
def test_rate_limit_errcodes_are_recognised(errcode: int) -> None:
    assert wechat.is_rate_limited_code(errcode)
    assert not wechat.is_rate_limited_code(40001)
