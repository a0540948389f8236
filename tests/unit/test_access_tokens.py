"""Finance API tokens: issued from HUB_JWT_KEY, every bad variant refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from hub.entry.cli import main
from hub.infra.access_tokens import (
    AUDIENCE,
    ISSUER,
    LEDGER_READ,
    AccessKeyError,
    TokenRejectedError,
    issue,
    parse_ttl,
    signing_key,
    verify,
)

KEY = b"k" * 32
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def good(**changes: object) -> str:
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "finance",
        "exp": int((NOW + timedelta(hours=1)).timestamp()),
        "scope": LEDGER_READ,
    }
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, KEY)


def unsigned() -> str:
    def part(data: dict[str, object]) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int((NOW + timedelta(hours=1)).timestamp()),
        "scope": LEDGER_READ,
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_an_issued_token_grants_its_scope() -> None:
    token = issue(KEY, scopes=[LEDGER_READ], ttl=parse_ttl("1h"), now=NOW)
    grant = verify(f"Bearer {token}", KEY, scope=LEDGER_READ, now=NOW)
    assert grant.scopes == {LEDGER_READ}


@pytest.mark.parametrize(
    ("header", "status", "reason"),
    [
        (None, 401, "missing Authorization"),
        ("Basic abc", 401, "not a Bearer token"),
        ("Bearer not.a.jwt", 401, "malformed token"),
        (f"Bearer {unsigned()}", 401, "algorithm 'none' is not accepted"),
        (f"Bearer {jwt.encode({'scope': LEDGER_READ}, b'x' * 32)}", 401, "signature"),
        (
            f"Bearer {good(exp=int(NOW.timestamp()) - 1)}",
            401,
            "token expired at 2026-11-27 07:59:59",
        ),
        (f"Bearer {good(aud='someone-else')}", 401, "audience is not 'hub-finance'"),
        (f"Bearer {good(iss='evil')}", 401, "issuer is not 'hub'"),
        (f"Bearer {good(exp=None)}", 401, "lacks the 'exp' claim"),
        (f"Bearer {good(scope='stock:read')}", 403, "'stock:read' lacks ledger:read"),
        (f"Bearer {good(scope=None)}", 401, "lacks the 'scope' claim"),
    ],
)
def test_every_bad_token_is_refused_with_its_reason(
    header: str | None, status: int, reason: str
) -> None:
    with pytest.raises(TokenRejectedError) as refused:
        verify(header, KEY, scope=LEDGER_READ, now=NOW)
    assert refused.value.status == status
    assert reason in refused.value.reason


def test_the_key_is_refused_clearly_when_unset_or_short() -> None:
    with pytest.raises(AccessKeyError, match="HUB_JWT_KEY is not set"):
        signing_key({})
    with pytest.raises(AccessKeyError, match="HUB_JWT_KEY is 5 bytes long"):
        signing_key({"HUB_JWT_KEY": "short"})
    assert signing_key({"HUB_JWT_KEY": "k" * 32}) == KEY


def test_token_issue_verb_prints_a_token_or_refuses_without_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HUB_JWT_KEY", raising=False)
    assert main(["token", "issue", "--scope", LEDGER_READ]) == 2
    assert "HUB_JWT_KEY is not set" in capsys.readouterr().err
    monkeypatch.setenv("HUB_JWT_KEY", KEY.decode())
    assert main(["token", "issue", "--scope", LEDGER_READ, "--ttl", "15m"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, KEY, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["scope"] == LEDGER_READ
    assert claims["exp"] - claims["iat"] == 15 * 60


def test_a_ttl_names_its_form() -> None:
    assert parse_ttl("2d") == timedelta(days=2)
    with pytest.raises(ValueError, match="ttl '1 hour'"):
        parse_ttl("1 hour")
