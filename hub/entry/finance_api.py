"""The finance API: the commission ledger over HTTP, behind JWT.

Mounted under ``/finance`` by :func:`hub.entry.http.create_app`. Every request
needs ``Authorization: Bearer <token>``, a JWT signed with ``HUB_JWT_KEY``
(``hub token issue --scope ledger:read``) whose signature, ``exp``, ``iss``,
``aud`` and ``ledger:read`` scope are checked (:mod:`hub.infra.access_tokens`);
a refusal is 401 or 403 with ``{"error": {"code", "reason"}}``. The OpenAPI
document at ``/finance/openapi.json`` needs no token.

Reads (times are ISO 8601; a date means that day in China time):

* ``GET /finance/balances?at=&basis=&status=``
* ``GET /finance/accounts/{account}/statement?from=&to=&basis=``
* ``GET /finance/transactions?from=&to=&account=&limit=``
* ``GET /finance/export.csv?from=&to=``
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domain.calendar import CHINA_TIME
from hub.entry.bearer import bearer_refusal
from hub.infra.access_tokens import LEDGER_READ
from projections import ledger as views


class BadQueryError(ValueError):
    """A query parameter breaks its rule; the message names it."""


def _error(status: int, code: str, reason: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "reason": reason}}, status_code=status)


def _instant(request: Request, name: str, default: datetime) -> datetime:
    text = request.query_params.get(name)
    if not text:
        return default
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), CHINA_TIME)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadQueryError(
            f"{name}={text!r} is not an ISO date or time (e.g. 2026-11-27)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA_TIME)


def _choice(request: Request, name: str, allowed: tuple[str, ...]) -> Any:
    value = request.query_params.get(name, allowed[0])
    if value not in allowed:
        raise BadQueryError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _period(request: Request, now: datetime) -> tuple[datetime, datetime]:
    start = _instant(request, "from", now - timedelta(days=30))
    end = _instant(request, "to", now)
    text = request.query_params.get("to", "")
    if len(text) == 10:  # a date "to" includes that day
        end += timedelta(days=1)
    if end < start:
        raise BadQueryError(f"to {end.isoformat()} is before from {start.isoformat()}")
    return start, end


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def finance_app(
    database_url: str,
    *,
    key: bytes | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Starlette:
    """The finance API on ``database_url``'s ledger tables.

    Args:
        database_url: PostgreSQL holding the ledger projection.
        key: The JWT signing key (default: ``HUB_JWT_KEY`` read per request,
            so a hub started without it refuses every request with 503).
        clock: Now, for token expiry and default periods.
    """

    def authorised(request: Request) -> Response | None:
        return bearer_refusal(
            request.headers.get("authorization"),
            key=key,
            scope=LEDGER_READ,
            now=clock(),
        )

    def endpoint(
        read: Callable[[Request, psycopg.AsyncConnection[Any]], Any],
    ) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            refused = authorised(request)
            if refused is not None:
                return refused
            try:
                async with await psycopg.AsyncConnection.connect(database_url) as conn:
                    result = await read(request, conn)
            except BadQueryError as exc:
                return _error(400, "bad_query", str(exc))
            if isinstance(result, Response):
                return result
            return JSONResponse(_jsonable(result))

        return handle

    async def balances(request: Request, conn: psycopg.AsyncConnection[Any]) -> Any:
        at = _instant(request, "at", clock())
        basis = _choice(request, "basis", ("effective", "recorded"))
        status = _choice(request, "status", ("posted", "pending", "voided"))
        rows = await views.balances(conn, at, basis, status)
        return {
            "at": at,
            "basis": basis,
            "status": status,
            "balances": [
                {"account": r.account, "kind": r.kind, "balance_fen": r.balance_fen}
                for r in rows
            ],
        }

    async def statement(request: Request, conn: psycopg.AsyncConnection[Any]) -> Any:
        start, end = _period(request, clock())
        basis = _choice(request, "basis", ("effective", "recorded"))
        return await views.statement(
            conn, request.path_params["account"], start, end, basis
        )

    async def transactions(request: Request, conn: psycopg.AsyncConnection[Any]) -> Any:
        start, end = _period(request, clock())
        text = request.query_params.get("limit", "1000")
        if not text.isdigit() or not 1 <= int(text) <= 10_000:
            raise BadQueryError(f"limit={text!r} is not a whole number in 1..10000")
        rows = await views.transactions(
            conn,
            start,
            end,
            account=request.query_params.get("account") or None,
            limit=int(text),
        )
        return {"from": start, "to": end, "transactions": rows}

    async def export(request: Request, conn: psycopg.AsyncConnection[Any]) -> Any:
        start, end = _period(request, clock())
        out = io.StringIO()
        views.write_csv(out, await views.export_rows(conn, start, end))
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="ledger.csv"'},
        )

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    return Starlette(
        routes=[
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/balances", endpoint(balances), methods=["GET"]),
            Route(
                "/accounts/{account}/statement", endpoint(statement), methods=["GET"]
            ),
            Route("/transactions", endpoint(transactions), methods=["GET"]),
            Route("/export.csv", endpoint(export), methods=["GET"]),
        ]
    )


def _param(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", **schema},
    }


_AT = _param("at", "instant (ISO time, or a date: its start in China time)")
_FROM = _param("from", "period start (ISO time or date); default 30 days ago")
_TO = _param("to", "period end (ISO time, or a date: that day included)")
_BASIS = _param(
    "basis",
    "effective: when money moved; recorded: when the hub knew",
    enum=["effective", "recorded"],
)
_ERRORS = {
    "400": {"$ref": "#/components/responses/Error"},
    "401": {"$ref": "#/components/responses/Error"},
    "403": {"$ref": "#/components/responses/Error"},
}

#: The OpenAPI 3.1 document of the finance API.
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "hub finance API",
        "version": "1",
        "description": "The commission ledger (docs/ledger.md). Amounts are fen; "
        "a balance is debit positive, credit negative.",
    },
    "servers": [{"url": "/finance"}],
    "security": [{"bearer": ["ledger:read"]}],
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "HS256 JWT from `hub token issue --scope ledger:read`"
                " (iss hub, aud hub-finance, exp, scope).",
            }
        },
        "responses": {
            "Error": {
                "description": "refused, with the reason",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "error": {
                                    "type": "object",
                                    "properties": {
                                        "code": {"type": "string"},
                                        "reason": {"type": "string"},
                                    },
                                }
                            },
                        }
                    }
                },
            }
        },
        "schemas": {
            "Balance": {
                "type": "object",
                "properties": {
                    "account": {"type": "string"},
                    "kind": {"type": "string"},
                    "balance_fen": {"type": "integer"},
                },
            }
        },
    },
    "paths": {
        "/balances": {
            "get": {
                "summary": "Every account's balance at an instant",
                "parameters": [
                    _AT,
                    _BASIS,
                    _param(
                        "status",
                        "transactions counted",
                        enum=["posted", "pending", "voided"],
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "balances",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "at": {"type": "string"},
                                        "basis": {"type": "string"},
                                        "status": {"type": "string"},
                                        "balances": {
                                            "type": "array",
                                            "items": {
                                                "$ref": "#/components/schemas/Balance"
                                            },
                                        },
                                    },
                                }
                            }
                        },
                    },
                    **_ERRORS,
                },
            }
        },
        "/accounts/{account}/statement": {
            "get": {
                "summary": "An account's opening balance, postings and closing "
                "balance over a period",
                "parameters": [
                    {
                        "name": "account",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    _FROM,
                    _TO,
                    _BASIS,
                ],
                "responses": {"200": {"description": "statement"}, **_ERRORS},
            }
        },
        "/transactions": {
            "get": {
                "summary": "Transactions effective in a period, with postings",
                "parameters": [
                    _FROM,
                    _TO,
                    _param("account", "only those touching this account"),
                    _param("limit", "at most this many (1..10000)"),
                ],
                "responses": {"200": {"description": "transactions"}, **_ERRORS},
            }
        },
        "/export.csv": {
            "get": {
                "summary": "Postings of a period as CSV",
                "parameters": [_FROM, _TO],
                "responses": {
                    "200": {
                        "description": "CSV",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    **_ERRORS,
                },
            }
        },
    },
}
