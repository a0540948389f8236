"""Youzan cloud (有赞云): push signatures, message decryption, gateway errors.

Pure functions only: no I/O, no clock.

* A push carries ``sign`` = MD5 hex of ``client_id + msg + client_secret``, with
  ``msg`` exactly as received, not URL-decoded (:func:`push_sign`; Youzan's
  "消息推送数据 MD5 校验示例", developers.youzanyun.com/article/1577262013829).
* Encrypted messages (subscription and similar) are URL-encoded Base64 of
  AES-128-CBC with the first 16 characters of the client secret as key, the
  ASCII IV ``"0102030405060708"`` and PKCS#5/7 padding
  (:func:`decrypt_message`; youzan/open-sdk-node ``lib/crypto.js``).
* The API gateway reports its own errors with HTTP 200 and a ``gw_err_resp``
  object holding ``err_code`` and ``err_msg`` (:func:`gateway_error`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote, unquote

from connectors.common import (
    DecryptError,
    ProtocolError,
    SignatureError,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    require_signature,
)

__all__ = [
    "ACCESS_TOKEN_TTL_S",
    "GATEWAY_ERROR_KEY",
    "MESSAGE_IV",
    "REFRESH_MARGIN",
    "DecryptError",
    "ProtocolError",
    "SignatureError",
    "decrypt_message",
    "encrypt_message",
    "gateway_error",
    "message_key",
    "push_sign",
    "verify_push_sign",
]

#: Planning default for the access token lifetime (7 days). Unverified: the
#: token response's ``expires`` is authoritative and is what the hub stores.
ACCESS_TOKEN_TTL_S = 7 * 24 * 3600
#: Refresh a day before expiry, as for Douyin's week-long token.
REFRESH_MARGIN = timedelta(days=1)

#: The fixed AES-CBC IV of encrypted messages.
MESSAGE_IV = b"0102030405060708"
#: The key under which the gateway reports errors in an HTTP 200 body.
GATEWAY_ERROR_KEY = "gw_err_resp"

_KEY_CHARS = 16


def push_sign(client_id: str, msg: str, client_secret: str) -> str:
    """The ``sign`` of a push: MD5 hex of client_id + msg + client_secret.

    Args:
        client_id: The app's client id.
        msg: The push's ``msg`` value exactly as received (still encoded).
        client_secret: The app's client secret.

    Returns:
        The lower-case hex MD5.
    """
    return hashlib.md5(f"{client_id}{msg}{client_secret}".encode()).hexdigest()


def verify_push_sign(
    client_id: str, msg: str, client_secret: str, received: str
) -> None:
    """Check a push's ``sign`` in constant time.

    Args:
        client_id: The app's client id.
        msg: The push's ``msg`` value exactly as received.
        client_secret: The app's client secret.
        received: The push's ``sign`` value.

    Raises:
        SignatureError: If it does not match.
    """
    require_signature(
        push_sign(client_id, msg, client_secret),
        received,
        what="Youzan push sign",
        ignore_case=True,
    )


def message_key(client_secret: str) -> bytes:
    """The AES-128 key of encrypted messages: the secret's first 16 characters.

    Args:
        client_secret: The app's client secret.

    Returns:
        The 16-byte key.

    Raises:
        DecryptError: If the secret's first 16 characters are not 16 bytes.
    """
    key = client_secret[:_KEY_CHARS].encode("utf-8")
    if len(key) != _KEY_CHARS:
        raise DecryptError(
            f"client secret gives a {len(key)}-byte key; AES-128 needs its first "
            f"{_KEY_CHARS} characters to be {_KEY_CHARS} ASCII bytes"
        )
    return key


def decrypt_message(client_secret: str, message: str) -> bytes:
    """Decrypt an encrypted message as Youzan sends it.

    Args:
        client_secret: The app's client secret.
        message: The URL-encoded Base64 text, exactly as received.

    Returns:
        The plaintext bytes (JSON).

    Raises:
        DecryptError: If the text is not Base64 after URL decoding, or the
            padding is wrong (wrong secret or tampering).
    """
    key = message_key(client_secret)
    try:
        ciphertext = base64.b64decode(unquote(message), validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise DecryptError("Youzan message is not URL-encoded Base64") from None
    return aes_cbc_decrypt(key, MESSAGE_IV, ciphertext)


def encrypt_message(client_secret: str, plaintext: bytes) -> str:
    """Encrypt a message as Youzan does (for the sandbox and tests).

    Args:
        client_secret: The app's client secret.
        plaintext: The message bytes.

    Returns:
        URL-encoded Base64 text (``+``, ``/`` and ``=`` percent-encoded).
    """
    key = message_key(client_secret)
    encoded = base64.b64encode(aes_cbc_encrypt(key, MESSAGE_IV, plaintext))
    return quote(encoded.decode("ascii"), safe="")


def gateway_error(payload: Mapping[str, Any]) -> tuple[int, str] | None:
    """The gateway error inside an HTTP 200 response, if there is one.

    Args:
        payload: The decoded response body.

    Returns:
        ``(err_code, err_msg)`` when the body holds a ``gw_err_resp`` object,
        else None. A missing or non-numeric ``err_code`` is reported as -1 so
        the error is never mistaken for success.
    """
    error = payload.get(GATEWAY_ERROR_KEY)
    if not isinstance(error, Mapping):
        return None
    raw_code = error.get("err_code")
    code = -1
    if isinstance(raw_code, int) and not isinstance(raw_code, bool):
        code = raw_code
    elif isinstance(raw_code, str | float):
        try:
            code = int(raw_code)
        except (ValueError, OverflowError):
            code = -1
    message = error.get("err_msg")
    return code, "" if message is None else str(message)


# --------------------------------------------------------------------------- codes
# Gateway ``err_code`` values for tokens. Not found in public documentation:
# the sandbox's convention and what the client reads, kept here once.

#: ``err_code`` of an unknown access token.
GATEWAY_TOKEN_INVALID = 4201
#: ``err_code`` of an expired access token.
GATEWAY_TOKEN_EXPIRED = 4203
#: ``err_code`` values meaning "refresh the access token and retry".
GATEWAY_TOKEN_CODES: frozenset[int] = frozenset(
    {GATEWAY_TOKEN_INVALID, GATEWAY_TOKEN_EXPIRED}
)
