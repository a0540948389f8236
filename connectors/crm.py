"""The profile transfer to a merchant's CRM: encrypted and signed (pure).

A profile travels as ``POST {crm_url}/profiles`` with a JSON body
``{"ref", "nonce", "ciphertext"}``: the profile's JSON sealed with AES-256-GCM
under the encryption key derived from the shared CRM key (the reference is the
associated data, so a body cannot be replayed under another reference), and a
header ``X-Hub-Signature: sha256=<hex>``, an HMAC-SHA256 of the body under the
signing key derived from the same shared key. The CRM answers 200 with
``{"ref"}`` once it holds the profile; the same reference sent again is
answered the same (the hub retries). Both sides use these functions: the hub
to send, the sandbox's CRM to check and open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SIGNATURE_HEADER = "X-Hub-Signature"
_NONCE_BYTES = 12


class CrmProtocolError(ValueError):
    """A body that is not signed, not sealed, or not for this key."""


class CrmEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """The body of one transfer."""

    ref: str
    nonce: str
    ciphertext: str


def _derived(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, purpose, hashlib.sha256).digest()


def seal_profile(key: bytes, ref: str, profile: dict[str, Any]) -> tuple[bytes, str]:
    """The body and the signature header's value of one profile transfer."""
    nonce = os.urandom(_NONCE_BYTES)
    aead = AESGCM(_derived(key, b"crm encrypt v1"))
    ciphertext = aead.encrypt(nonce, msgspec.json.encode(profile), ref.encode())
    body = msgspec.json.encode(
        CrmEnvelope(
            ref=ref,
            nonce=base64.b64encode(nonce).decode(),
            ciphertext=base64.b64encode(ciphertext).decode(),
        )
    )
    return body, sign(key, body)


def sign(key: bytes, body: bytes) -> str:
    """``sha256=`` and the hex HMAC of ``body`` under the signing key."""
    digest = hmac.new(_derived(key, b"crm sign v1"), body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def open_profile(key: bytes, body: bytes, signature: str) -> tuple[str, dict[str, Any]]:
    """The reference and the profile of a transfer.

    Raises:
        CrmProtocolError: a bad signature, a malformed body, or a ciphertext
            that does not open under the key.
    """
    if not hmac.compare_digest(sign(key, body), signature or ""):
        raise CrmProtocolError(f"{SIGNATURE_HEADER} does not match the body")
    try:
        envelope = msgspec.json.decode(body, type=CrmEnvelope)
        aead = AESGCM(_derived(key, b"crm encrypt v1"))
        plain = aead.decrypt(
            base64.b64decode(envelope.nonce),
            base64.b64decode(envelope.ciphertext),
            envelope.ref.encode(),
        )
        profile = msgspec.json.decode(plain, type=dict[str, Any])
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, InvalidTag):
        raise CrmProtocolError("the body is not a sealed profile") from None
    return envelope.ref, profile
