"""WeChat Shop (微信小店) message push in safe mode, and access-token rules.

Pure functions only: no I/O, no clock. The push encryption is WeChat's common
message scheme (the one its ``WXBizMsgCrypt`` samples implement):

* the URL check signs ``token``, ``timestamp`` and ``nonce``: SHA-1 of the three
  sorted and joined (:func:`signature`);
* every pushed message signs the same three plus the ``Encrypt`` text
  (:func:`msg_signature`);
* ``Encrypt`` is Base64 of AES-256-CBC over ``random16 + 4-byte big-endian
  length + message + appid``, PKCS#7-padded to 32-byte blocks; the key is the
  Base64 decoding of the 43-character EncodingAESKey plus ``"="`` and the IV is
  the key's first 16 bytes (:func:`encrypt`, :func:`decrypt`).

Access tokens live 7,200 s; the hub refreshes them before expiry and whenever a
call answers with one of :data:`TOKEN_EXPIRED_CODES`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import struct
from datetime import datetime, timedelta

from connectors.common import (
    DecryptError,
    ProtocolError,
    SignatureError,
    TokenState,
    access_token_due,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    require_signature,
)

__all__ = [
    "ACCESS_TOKEN_TTL_S",
    "ENCODING_AES_KEY_LENGTH",
    "RATE_LIMIT_CODES",
    "REFRESH_MARGIN",
    "TOKEN_EXPIRED_CODES",
    "DecryptError",
    "InvalidAESKeyError",
    "ProtocolError",
    "SignatureError",
    "TokenState",
    "aes_key",
    "decrypt",
    "encrypt",
    "is_rate_limited_code",
    "is_token_expired_code",
    "msg_signature",
    "needs_refresh",
    "signature",
    "verify_msg_signature",
    "verify_signature",
]

#: Lifetime of an access_token as WeChat issues it (``expires_in``), seconds.
ACCESS_TOKEN_TTL_S = 7200
#: Refresh this long before expiry. WeChat keeps the old token valid for a short
#: overlap after a new one is issued, so five minutes leaves room for retries.
REFRESH_MARGIN = timedelta(minutes=5)
#: errcodes meaning the token is invalid or expired: 40001 invalid credential,
#: 40014 invalid access_token, 42001 access_token expired. Refresh, then retry.
TOKEN_EXPIRED_CODES: frozenset[int] = frozenset({40001, 40014, 42001})
#: errcodes meaning "slow down": 45009 daily API quota reached, 45011 per-minute
#: quota reached, 10020112 this SKU's stock was updated too often
#: (developers.weixin.qq.com/doc/store/shop/dev_before/commErrCode.md and the
#: stock_update API page).
RATE_LIMIT_CODES: frozenset[int] = frozenset({45009, 45011, 10020112})
#: Length of the EncodingAESKey set in the WeChat console.
ENCODING_AES_KEY_LENGTH = 43

_RANDOM_BYTES = 16
_LENGTH_BYTES = 4
_PAD_BLOCK_BYTES = 32


class InvalidAESKeyError(ProtocolError, ValueError):
    """The EncodingAESKey is not 43 Base64 characters decoding to 32 bytes."""


def signature(token: str, timestamp: str, nonce: str) -> str:
    """The URL-check signature: SHA-1 hex of token, timestamp, nonce sorted.

    Args:
        token: The Token configured for the push URL.
        timestamp: The ``timestamp`` query parameter, as received.
        nonce: The ``nonce`` query parameter, as received.

    Returns:
        The lower-case hex SHA-1, to compare with the ``signature`` parameter.
    """
    return _sha1_of_sorted(token, timestamp, nonce)


def msg_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """The message signature: SHA-1 hex of the four values sorted and joined.

    Args:
        token: The Token configured for the push URL.
        timestamp: The ``timestamp`` query parameter.
        nonce: The ``nonce`` query parameter.
        encrypt: The ``Encrypt`` text of the message, exactly as received.

    Returns:
        The lower-case hex SHA-1, to compare with ``msg_signature``.
    """
    return _sha1_of_sorted(token, timestamp, nonce, encrypt)


def verify_signature(token: str, timestamp: str, nonce: str, received: str) -> None:
    """Check the URL-check ``signature`` in constant time.

    Args:
        token: The Token configured for the push URL.
        timestamp: The ``timestamp`` query parameter.
        nonce: The ``nonce`` query parameter.
        received: The ``signature`` query parameter.

    Raises:
        SignatureError: If it does not match.
    """
    require_signature(
        signature(token, timestamp, nonce), received, what="WeChat signature"
    )


def verify_msg_signature(
    token: str, timestamp: str, nonce: str, encrypt: str, received: str
) -> None:
    """Check a pushed message's ``msg_signature`` in constant time.

    Args:
        token: The Token configured for the push URL.
        timestamp: The ``timestamp`` query parameter.
        nonce: The ``nonce`` query parameter.
        encrypt: The ``Encrypt`` text of the message, exactly as received.
        received: The ``msg_signature`` query parameter.

    Raises:
        SignatureError: If it does not match.
    """
    require_signature(
        msg_signature(token, timestamp, nonce, encrypt),
        received,
        what="WeChat msg_signature",
    )


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key behind a 43-character EncodingAESKey.

    Args:
        encoding_aes_key: The EncodingAESKey from the console.

    Returns:
        The AES-256 key.

    Raises:
        InvalidAESKeyError: If the key is not 43 Base64 characters for 32 bytes.
    """
    if len(encoding_aes_key) != ENCODING_AES_KEY_LENGTH:
        raise InvalidAESKeyError(
            f"EncodingAESKey has {len(encoding_aes_key)} characters; "
            f"it must have {ENCODING_AES_KEY_LENGTH}"
        )
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise InvalidAESKeyError("EncodingAESKey is not valid Base64") from None
    # 43 Base64 characters plus "=" always decode to exactly 32 bytes.
    return key


def encrypt(
    encoding_aes_key: str,
    plaintext: bytes,
    app_id: str,
    random16: bytes | None = None,
) -> str:
    """Encrypt a message the way WeChat does, for replies and the sandbox.

    Args:
        encoding_aes_key: The 43-character EncodingAESKey.
        plaintext: The message bytes (XML or JSON).
        app_id: The appid appended after the message.
        random16: The 16 leading random bytes; fresh random bytes when None.
            Pass a fixed value only for test vectors.

    Returns:
        The Base64 ``Encrypt`` text.

    Raises:
        InvalidAESKeyError: If the key is malformed.
        ValueError: If ``random16`` is not 16 bytes.
    """
    key = aes_key(encoding_aes_key)
    if random16 is None:
        random16 = secrets.token_bytes(_RANDOM_BYTES)
    if len(random16) != _RANDOM_BYTES:
        raise ValueError(f"random16 is {len(random16)} bytes; it must be 16")
    body = (
        random16
        + struct.pack(">I", len(plaintext))
        + plaintext
        + app_id.encode("utf-8")
    )
    ciphertext = aes_cbc_encrypt(key, key[:16], body, pad_block_bytes=_PAD_BLOCK_BYTES)
    return base64.b64encode(ciphertext).decode("ascii")


def decrypt(encoding_aes_key: str, encrypt: str, app_id: str) -> bytes:
    """Decrypt an ``Encrypt`` text and check that it was meant for ``app_id``.

    Verify :func:`msg_signature` first; this checks the ciphertext itself.

    Args:
        encoding_aes_key: The 43-character EncodingAESKey.
        encrypt: The Base64 ``Encrypt`` text, as received.
        app_id: The appid the message must carry.

    Returns:
        The message bytes.

    Raises:
        InvalidAESKeyError: If the key is malformed.
        DecryptError: If the text is not Base64, the padding is wrong, the
            length field is impossible, or the appid differs
            (``appid mismatch: got 'x', expected 'y'``).
    """
    key = aes_key(encoding_aes_key)
    try:
        ciphertext = base64.b64decode(encrypt, validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise DecryptError("Encrypt is not valid Base64") from None
    body = aes_cbc_decrypt(key, key[:16], ciphertext, pad_block_bytes=_PAD_BLOCK_BYTES)
    header = _RANDOM_BYTES + _LENGTH_BYTES
    if len(body) < header:
        raise DecryptError(
            f"decrypted message is {len(body)} bytes, shorter than its "
            f"{header}-byte header"
        )
    (length,) = struct.unpack(">I", body[_RANDOM_BYTES:header])
    if header + length > len(body):
        raise DecryptError(
            f"length field says {length} bytes but only {len(body) - header} follow"
        )
    message = body[header : header + length]
    received_app_id = body[header + length :].decode("utf-8", "replace")
    if received_app_id != app_id:
        raise DecryptError(
            f"appid mismatch: got {received_app_id!r}, expected {app_id!r}"
        )
    return message


def needs_refresh(token_state: TokenState, now: datetime) -> bool:
    """Whether to fetch a new access_token now (within :data:`REFRESH_MARGIN`).

    Args:
        token_state: The token the hub holds for the shop.
        now: The current time (same timezone awareness as the state).

    Returns:
        True when the token expires within the margin or already has.
    """
    return access_token_due(token_state, now, REFRESH_MARGIN)


def is_token_expired_code(errcode: int) -> bool:
    """Whether an API ``errcode`` means "refresh the token and retry".

    Args:
        errcode: The ``errcode`` of a WeChat API response.

    Returns:
        True for 40001, 40014 and 42001.
    """
    return errcode in TOKEN_EXPIRED_CODES


def is_rate_limited_code(errcode: int) -> bool:
    """Whether an API ``errcode`` means a rate limit or quota was hit.

    Args:
        errcode: The ``errcode`` of a WeChat API response.

    Returns:
        True for 45009, 45011 and 10020112.
    """
    return errcode in RATE_LIMIT_CODES


def _sha1_of_sorted(*values: str) -> str:
    return hashlib.sha1("".join(sorted(values)).encode("utf-8")).hexdigest()
