"""Kuaishou Shop (快手小店) open platform: signing, push decryption, tokens.

Pure functions only: no I/O, no clock. Facts from the open platform's
"API调用说明", "消息服务说明" and "APP授权说明" pages
(open.kwaixiaodian.com/zone/new/docs/dev):

* Requests carry ``sign`` over the request parameters without ``sign``, sorted
  by key and joined as ``k=v`` with ``&``, followed by ``&signSecret=`` and the
  sign secret: Base64 of HMAC-SHA256 keyed with the sign secret when
  ``signMethod`` is ``HMAC_SHA256``, lower-case hex MD5 when it is ``MD5``
  (:func:`sign`). The platform's SDK treats a missing ``signMethod`` as MD5.
* Pushes are Base64 of AES-CBC with the Base64-decoded message key, a 16-byte
  zero IV and PKCS#5 padding (:func:`decrypt_push`).
* The platform probes the push URL with ``{"test":true}``; every push, heartbeat
  included, must be answered ``{"result":1}`` within 3 s.
* OAuth access tokens live 48 h; each refresh returns a new refresh token (the
  old one dies within 5 minutes) that inherits the old one's expiry (180 days
  from authorisation).
* A call over the QPS limit fails with a message containing
  ``"Exceed qps limit"``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from types import MappingProxyType
from typing import Any, Final

from connectors.common import (
    DecryptError,
    ProtocolError,
    SignatureError,
    TokenState,
    UnsupportedSignMethodError,
    access_token_due,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    refresh_token_expired,
    require_signature,
)

__all__ = [
    "ACCESS_TOKEN_TTL_S",
    "HEARTBEAT",
    "PUSH_ACK",
    "PUSH_ACK_BODY",
    "QUOTA_LIMIT_MESSAGE",
    "RATE_LIMIT_MESSAGE",
    "REFRESH_MARGIN",
    "REFRESH_TOKEN_TTL_S",
    "SIGN_METHODS",
    "DecryptError",
    "MalformedCiphertextError",
    "ProtocolError",
    "SignatureError",
    "TokenState",
    "UnsupportedSignMethodError",
    "decrypt_ciphertext",
    "decrypt_push",
    "encrypt_push",
    "is_heartbeat",
    "is_rate_limited_message",
    "needs_reauthorization",
    "needs_refresh",
    "push_ciphertext",
    "sign",
    "sign_base_string",
    "verify_sign",
]

#: Signing methods, by the value of the ``signMethod`` parameter.
SIGN_METHODS: tuple[str, ...] = ("HMAC_SHA256", "MD5")
#: The heartbeat the platform pushes to check the URL is alive.
HEARTBEAT: Final[Mapping[str, bool]] = MappingProxyType({"test": True})
#: The answer every push, heartbeat included, must receive.
PUSH_ACK: Final[Mapping[str, int]] = MappingProxyType({"result": 1})
#: :data:`PUSH_ACK` as the compact JSON body to send.
PUSH_ACK_BODY = b'{"result":1}'
#: Phrase in the error message of a call over the per-API QPS limit.
RATE_LIMIT_MESSAGE = "Exceed qps limit"
#: Phrase in the error message of a call over the daily quota (not retryable
#: until the quota resets; kept apart from QPS limits).
QUOTA_LIMIT_MESSAGE = "Exceed quota limit"
#: OAuth access token lifetime: 48 hours (``expires_in`` 172800).
ACCESS_TOKEN_TTL_S = 48 * 3600
#: Refresh token lifetime counted from authorisation: 180 days.
REFRESH_TOKEN_TTL_S = 180 * 24 * 3600
#: Refresh two hours early: rotating refresh tokens make a failed refresh costly
#: to repeat late, and two hours is small against a 48-hour token.
REFRESH_MARGIN = timedelta(hours=2)

_SIGN_PARAM = "sign"
_SIGN_METHOD_PARAM = "signMethod"
_ZERO_IV = bytes(16)


class MalformedCiphertextError(DecryptError):
    """A push body that is no ciphertext at all (not Base64), whatever the key."""


def sign_base_string(params: Mapping[str, str], sign_secret: str) -> str:
    """The text that is signed: sorted ``k=v`` pairs, then ``signSecret``.

    Args:
        params: The request parameters (``sign`` itself is left out).
        sign_secret: The app's sign secret.

    Returns:
        ``"k1=v1&k2=v2&...&signSecret=<secret>"``.
    """
    pairs = [f"{key}={params[key]}" for key in sorted(params) if key != _SIGN_PARAM]
    return "&".join([*pairs, f"signSecret={sign_secret}"])


def sign(params: dict[str, str], sign_secret: str) -> str:
    """The ``sign`` of a request, by the method ``params["signMethod"]`` names.

    Args:
        params: The request parameters as sent (``param`` as its JSON text,
            before URL encoding); a ``sign`` entry is ignored.
        sign_secret: The app's sign secret.

    Returns:
        Base64 HMAC-SHA256 for ``HMAC_SHA256``; lower-case hex MD5 for ``MD5``
        or when ``signMethod`` is absent.

    Raises:
        UnsupportedSignMethodError: If ``signMethod`` names another method.
    """
    method = params.get(_SIGN_METHOD_PARAM, "MD5")
    base = sign_base_string(params, sign_secret).encode("utf-8")
    if method == "HMAC_SHA256":
        digest = hmac.new(sign_secret.encode("utf-8"), base, hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")
    if method == "MD5":
        return hashlib.md5(base).hexdigest()
    raise UnsupportedSignMethodError(
        f"signMethod {method!r} is not one of {', '.join(SIGN_METHODS)}"
    )


def verify_sign(params: dict[str, str], sign_secret: str) -> None:
    """Check the ``sign`` inside ``params`` in constant time (sandbox side).

    Args:
        params: The request parameters including ``sign``.
        sign_secret: The app's sign secret.

    Raises:
        SignatureError: If ``sign`` is missing or does not match.
    """
    received = params.get(_SIGN_PARAM)
    if received is None:
        raise SignatureError("Kuaishou request has no 'sign' parameter")
    require_signature(sign(params, sign_secret), received, what="Kuaishou sign")


def decrypt_push(private_key: str, body: str | bytes) -> bytes:
    """Decrypt a push body with the app's message key.

    Args:
        private_key: The Base64 message key from the app's details page.
        body: The request body as received: Base64 text.

    Returns:
        The JSON message bytes.

    Raises:
        DecryptError: If the key or body is not Base64, the key is not an AES
            key size, or the padding is wrong (wrong key or tampering).
    """
    return decrypt_ciphertext(private_key, push_ciphertext(body))


def push_ciphertext(body: str | bytes) -> bytes:
    """The ciphertext of a push body (Base64 text), before any key is tried.

    Args:
        body: The request body as received.

    Returns:
        The encrypted bytes.

    Raises:
        MalformedCiphertextError: If the body is not Base64 text.
    """
    text = body.decode("ascii", "replace") if isinstance(body, bytes) else body
    try:
        return base64.b64decode(text.strip(), validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise MalformedCiphertextError(
            "Kuaishou push body is not valid Base64"
        ) from None


def decrypt_ciphertext(private_key: str, ciphertext: bytes) -> bytes:
    """Decrypt a push's ciphertext (:func:`push_ciphertext`) with a message key.

    Raises:
        DecryptError: If the key is not Base64 of an AES key size, or the
            padding is wrong (wrong key or tampering).
    """
    return aes_cbc_decrypt(_message_key(private_key), _ZERO_IV, ciphertext)


def encrypt_push(private_key: str, plaintext: bytes) -> str:
    """Encrypt a push body as the platform does (for the sandbox and tests).

    Args:
        private_key: The Base64 message key.
        plaintext: The JSON message bytes.

    Returns:
        The Base64 body text.

    Raises:
        DecryptError: If the key is not Base64 of an AES key size.
    """
    key = _message_key(private_key)
    return base64.b64encode(aes_cbc_encrypt(key, _ZERO_IV, plaintext)).decode("ascii")


def is_heartbeat(message: Mapping[str, Any]) -> bool:
    """Whether a decoded push is the platform's ``{"test":true}`` probe.

    Args:
        message: The decoded push.

    Returns:
        True when ``test`` is ``true``; answer :data:`PUSH_ACK` and stop.
    """
    return message.get("test") is True


def is_rate_limited_message(message: str) -> bool:
    """Whether an error message reports the per-API QPS limit.

    Args:
        message: The error message of a failed call.

    Returns:
        True when it contains :data:`RATE_LIMIT_MESSAGE`.
    """
    return RATE_LIMIT_MESSAGE in message


#: Whether to refresh the access token now: ``needs_refresh(token_state, now)``
#: is True when it expires within :data:`REFRESH_MARGIN` or already has.
needs_refresh = partial(access_token_due, margin=REFRESH_MARGIN)
#: Whether the refresh token is gone, so the merchant must authorise again:
#: ``needs_reauthorization(token_state, now)`` is True when there is none or
#: it has expired.
needs_reauthorization = refresh_token_expired


def _message_key(private_key: str) -> bytes:
    try:
        key = base64.b64decode(private_key, validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise DecryptError("Kuaishou message key is not valid Base64") from None
    if len(key) not in (16, 24, 32):
        raise DecryptError(
            f"Kuaishou message key decodes to {len(key)} bytes; AES needs 16, 24 or 32"
        )
    return key


# --------------------------------------------------------------------------- codes
# ``result`` 1 is success. The other numbers below were not found in public
# documentation; they are the sandbox's convention and what the client
# reads, kept here once. The rate-limit signal that matters is the message
# (:data:`RATE_LIMIT_MESSAGE`), which is documented.

#: ``result`` of a successful call.
RESULT_OK = 1
#: ``result`` of a request whose ``sign`` does not match.
RESULT_SIGN_INVALID = 22
#: ``result`` of an unknown access token.
RESULT_TOKEN_INVALID = 24
#: ``result`` of an expired access token: refresh, then retry.
RESULT_TOKEN_EXPIRED = 28
#: ``result`` of a call over the QPS limit (its message says so too).
RESULT_RATE_LIMITED = 802
#: ``result`` values meaning "refresh the access token and retry".
TOKEN_EXPIRED_RESULTS: frozenset[int] = frozenset(
    {RESULT_TOKEN_INVALID, RESULT_TOKEN_EXPIRED}
)
