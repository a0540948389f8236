"""Access tokens for the finance API: JWTs signed with ``HUB_JWT_KEY`` (HS256).

A token names its issuer (``iss``), its audience (``aud``), when it expires
(``exp``) and what it may do (``scope``, space-separated, e.g. ``ledger:read``).
:func:`verify` checks all four and the signature, and refuses with the HTTP
status and a reason: 401 for a token that is missing, malformed, unsigned
(``alg: none``), badly signed, expired, or for another issuer or audience; 403
for a good token without the scope asked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

#: The environment variable holding the signing key.
KEY_ENV = "HUB_JWT_KEY"
ISSUER = "hub"
AUDIENCE = "hub-finance"
ALGORITHM = "HS256"
#: The scope the finance API asks for.
LEDGER_READ = "ledger:read"
#: Shortest key accepted (HS256 wants at least 256 bits).
MIN_KEY_BYTES = 32

_TTL = re.compile(r"^([1-9][0-9]*)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class AccessKeyError(ValueError):
    """The signing key is unset or too short; the message names the setting."""


class TokenRejectedError(Exception):
    """A request's token was refused: ``status`` (401/403) and the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def signing_key(env: Mapping[str, str] | None = None) -> bytes:
    """The key of ``HUB_JWT_KEY``.

    Raises:
        AccessKeyError: unset, or shorter than :data:`MIN_KEY_BYTES` bytes.
    """
    value = (os.environ if env is None else env).get(KEY_ENV, "")
    if not value:
        raise AccessKeyError(
            f"{KEY_ENV} is not set: set it to a secret of at least {MIN_KEY_BYTES} "
            "bytes to issue and check finance API tokens"
        )
    key = value.encode()
    if len(key) < MIN_KEY_BYTES:
        raise AccessKeyError(
            f"{KEY_ENV} is {len(key)} bytes long; it must be at least "
            f"{MIN_KEY_BYTES} bytes"
        )
    return key


def parse_ttl(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"1h"``, ``"2d"`` as a duration.

    Raises:
        ValueError: naming the text and the form expected.
    """
    match = _TTL.match(text.strip())
    if match is None:
        raise ValueError(
            f"ttl {text!r} is not a positive whole number followed by s, m, h or d "
            "(e.g. 1h)"
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def issue(
    key: bytes,
    *,
    scopes: list[str],
    ttl: timedelta,
    now: datetime,
    subject: str = "finance",
) -> str:
    """A token for ``scopes``, valid from ``now`` for ``ttl``."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "scope": " ".join(scopes),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


@dataclass(frozen=True)
class Grant:
    """What a verified token allows."""

    subject: str
    scopes: frozenset[str]
    expires_at: int


def verify(
    authorization: str | None, key: bytes, *, scope: str, now: datetime
) -> Grant:
    """Check an ``Authorization: Bearer …`` header for ``scope``.

    Raises:
        TokenRejectedError: 401 naming what is wrong with the token, or 403
            naming the missing scope.
    """
    if not authorization:
        raise TokenRejectedError(401, "missing Authorization: Bearer token")
    kind, _, token = authorization.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise TokenRejectedError(401, "Authorization is not a Bearer token")
    token = token.strip()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as exc:
        raise TokenRejectedError(401, f"malformed token: {exc}") from None
    if header.get("alg") != ALGORITHM:
        raise TokenRejectedError(
            401, f"token algorithm {header.get('alg')!r} is not accepted ({ALGORITHM})"
        )
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            # Expiry is checked below against the injected ``now``.
            options={"require": ["exp", "iss", "aud", "scope"], "verify_exp": False},
        )
    except jwt.InvalidAudienceError:
        raise TokenRejectedError(401, f"token audience is not {AUDIENCE!r}") from None
    except jwt.InvalidIssuerError:
        raise TokenRejectedError(401, f"token issuer is not {ISSUER!r}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRejectedError(401, f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise TokenRejectedError(401, "token signature does not verify") from None
    except jwt.InvalidTokenError as exc:
        raise TokenRejectedError(401, f"invalid token: {exc}") from None
    if int(claims["exp"]) <= int(now.timestamp()):
        raise TokenRejectedError(
            401, f"token expired at {datetime.fromtimestamp(int(claims['exp']), UTC)}"
        )
    scopes = frozenset(str(claims.get("scope", "")).split())
    if scope not in scopes:
        raise TokenRejectedError(
            403, f"token scope {' '.join(sorted(scopes)) or '(none)'!r} lacks {scope}"
        )
    return Grant(
        subject=str(claims.get("sub", "")), scopes=scopes, expires_at=int(claims["exp"])
    )
