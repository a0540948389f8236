"""A platform's token state fresh from a grant, for the protocol tests."""

from __future__ import annotations

from datetime import datetime
from types import ModuleType

from connectors.common import TokenState, token_state_from_grant


def fresh_grant(
    protocol: ModuleType,
    now: datetime,
    access_token: str = "A1",
    refresh_token: str = "R1",
) -> TokenState:
    """The state after a grant with the lifetimes ``protocol`` names.

    ``protocol`` is a platform's protocol module, with its
    ``ACCESS_TOKEN_TTL_S`` and ``REFRESH_TOKEN_TTL_S``.
    """
    return token_state_from_grant(
        access_token=access_token,
        expires_in_s=protocol.ACCESS_TOKEN_TTL_S,
        now=now,
        refresh_token=refresh_token,
        refresh_expires_in_s=protocol.REFRESH_TOKEN_TTL_S,
    )
