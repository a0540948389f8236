"""The dashboard pages on the hub's HTTP port, their JSON, and who may see them.

Pages (HTML shells drawn by ``static/dashboard.js`` from the JSON beside them):

* ``/dashboard``: the live-session dashboard: GMV, orders, conversion, average
  order value and refunds of the current (or most recent, or a chosen) live
  session, with charts per minute or hour, platform and streamer, refreshed
  every 2 seconds; figures from the ``sales`` projection
  (:mod:`projections.sales`, defined in ``docs/dashboard.md``);
* ``/dashboard/bindings``: every binding's status, review deadline and
  qualification failures;
* ``/dashboard/stock``: every SKU's stock states, each platform's drift and the
  stock pushes that were dead-lettered;
* ``/dashboard/health``: the hub's tasks (as ``/health``), and per platform the
  outbound queue, the dead letters and the webhook answers (as ``/metrics``).

Their JSON is under ``/dashboard/api/…``. A person signs in at
``/dashboard/login`` (a user added by ``hub users add NAME``, the password kept
as its scrypt hash); the session is a random token in a signed, HttpOnly,
SameSite=Strict cookie, kept (hashed) in ``dashboard_sessions`` so signing out
ends it. A program sends ``Authorization: Bearer`` with a JWT of scope
``dashboard:read`` (``hub token issue --scope dashboard:read``). Without either,
a page redirects to the login and the JSON answers 401.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

import psycopg
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from eventlog.supervision import Supervisor
from hub.entry.bearer import bearer_refusal, error
from hub.entry.health import health_report
from hub.entry.metrics import WEBHOOKS, WebhookCounts, stock_push_counts
from projections import sales

#: The scope a program's token needs.
DASHBOARD_READ = "dashboard:read"
#: The session cookie's name.
COOKIE = "hub_dashboard"
#: How long a sign-in lasts.
SESSION_TTL = timedelta(hours=12)
#: scrypt's cost parameters for new password hashes (about 16 MiB, ~50 ms).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
#: Most minutes a chart shows per minute; a longer span is shown per hour.
MAX_MINUTES = 360

Clock = Callable[[], datetime]


# -- users and passwords ------------------------------------------------------------


class UserError(ValueError):
    """A user name or password breaks a rule; the message names it."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The scrypt hash of ``password``, with its salt and parameters, as text."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return "$".join(
        (
            "scrypt",
            str(SCRYPT_N),
            str(SCRYPT_R),
            str(SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        )
    )


def password_matches(password: str, stored: str) -> bool:
    """Whether ``password`` hashes to ``stored`` (constant-time comparison)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return kind == "scrypt" and hmac.compare_digest(got, expected)


def check_new_user(username: str, password: str) -> None:
    """Refuse an empty or odd user name and a short password.

    Raises:
        UserError: naming the value and the rule.
    """
    if not username or len(username) > 64 or not username.isprintable():
        raise UserError(
            f"user name {username!r}: 1 to 64 printable characters, no spaces"
        )
    if any(c.isspace() for c in username):
        raise UserError(f"user name {username!r} has a space (none allowed)")
    if len(password) < 8:
        raise UserError(
            f"password of {len(password)} characters is too short (at least 8)"
        )


async def add_user(database_url: str, username: str, password: str) -> bool:
    """Add a dashboard user, or give an existing one a new password.

    Returns whether the user is new.

    Raises:
        UserError: the name or the password breaks a rule.
    """
    check_new_user(username, password)
    hashed = await asyncio.to_thread(hash_password, password)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "INSERT INTO dashboard_users (username, password_hash) VALUES (%s, %s) "
            "ON CONFLICT (username) DO UPDATE "
            "SET password_hash = EXCLUDED.password_hash "
            "RETURNING (xmax = 0)",
            (username, hashed),
        )
        row = await cur.fetchone()
        # A new password ends the user's sessions.
        await conn.execute(
            "DELETE FROM dashboard_sessions WHERE username = %s", (username,)
        )
    return bool(row and row[0])


# -- sessions -----------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Sessions:
    """Signed-in sessions: create, check, end. The cookie value is
    ``token.signature`` (HMAC-SHA256 under the key in ``dashboard_keys``)."""

    database_url: str
    clock: Clock
    _key: bytes | None = None

    async def key(self, conn: psycopg.AsyncConnection[Any]) -> bytes:
        """The cookie signing key, made once for every hub process."""
        if self._key is None:
            await conn.execute(
                "INSERT INTO dashboard_keys (name, key) VALUES ('cookie', %s) "
                "ON CONFLICT (name) DO NOTHING",
                (secrets.token_bytes(32),),
            )
            cur = await conn.execute(
                "SELECT key FROM dashboard_keys WHERE name = 'cookie'"
            )
            row = await cur.fetchone()
            assert row is not None
            self._key = bytes(row[0])
        return self._key

    def _sign(self, key: bytes, token: str) -> str:
        mac = hmac.new(key, token.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    async def sign_in(self, username: str, password: str) -> str | None:
        """The cookie value of a new session, or None for a wrong name or password."""
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            cur = await conn.execute(
                "SELECT password_hash FROM dashboard_users WHERE username = %s",
                (username,),
            )
            row = await cur.fetchone()
            # A missing user costs as much as a wrong password.
            stored = str(row[0]) if row else hash_password("", salt=b"\0" * 16)
            ok = await asyncio.to_thread(password_matches, password, stored)
            if not (ok and row):
                return None
            token = secrets.token_urlsafe(32)
            await conn.execute(
                "INSERT INTO dashboard_sessions (token_hash, username, expires_at) "
                "VALUES (%s, %s, %s)",
                (_token_hash(token), username, self.clock() + SESSION_TTL),
            )
            return f"{token}.{self._sign(await self.key(conn), token)}"

    async def user_of(self, cookie: str | None) -> str | None:
        """The user a cookie value signs in, or None (unsigned, unknown, expired)."""
        if not cookie or "." not in cookie:
            return None
        token, _, signature = cookie.rpartition(".")
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            if not hmac.compare_digest(
                signature, self._sign(await self.key(conn), token)
            ):
                return None
            cur = await conn.execute(
                "SELECT username FROM dashboard_sessions "
                "WHERE token_hash = %s AND expires_at > %s",
                (_token_hash(token), self.clock()),
            )
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def sign_out(self, cookie: str | None) -> None:
        """End the session of a cookie value (if it is one)."""
        if not cookie or "." not in cookie:
            return
        token = cookie.rpartition(".")[0]
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            await conn.execute(
                "DELETE FROM dashboard_sessions "
                "WHERE token_hash = %s OR expires_at <= %s",
                (_token_hash(token), self.clock()),
            )


# -- reads --------------------------------------------------------------------------


class BadQueryError(ValueError):
    """A query parameter breaks its rule; the message names it."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _session_json(found: sales.LiveSessionInfo, now: datetime) -> dict[str, Any]:
    return {
        "channel_account": found.channel_account,
        "session_id": found.session_id,
        "starts_at": found.starts_at.isoformat(),
        "ends_at": found.ends_at.isoformat(),
        "streamers": list(found.streamers),
        "platforms": list(found.platforms),
        "live": found.starts_at <= now < found.ends_at,
    }


def _chosen(
    request: Request, found: list[sales.LiveSessionInfo], now: datetime
) -> tuple[sales.Selection, sales.LiveSessionInfo | None]:
    """The selection a request asks for: ``session`` (an id, ``all``, ``none``;
    default: the live or most recent session) and ``account``."""
    account = request.query_params.get("account") or None
    wanted = request.query_params.get("session", "")
    if wanted == "all":
        return sales.Selection(channel_account=account), None
    if wanted == "none":
        return sales.Selection(
            channel_account=account, session_id=sales.NO_SESSION
        ), None
    candidates = [s for s in found if account is None or s.channel_account == account]
    if wanted:
        for s in candidates:
            if s.session_id == wanted:
                return sales.Selection(s.channel_account, s.session_id), s
        raise BadQueryError(
            f"session={wanted!r}: no such live session (known: "
            f"{', '.join(s.session_id for s in candidates) or 'none'}; or all, none)"
        )
    started = [s for s in candidates if s.starts_at <= now]
    pick = started[0] if started else (candidates[-1] if candidates else None)
    if pick is None:
        return sales.Selection(channel_account=account), None
    return sales.Selection(pick.channel_account, pick.session_id), pick


def _figures_json(rows: Sequence[sales.Figures]) -> list[dict[str, Any]]:
    return [row.to_json() for row in rows]


async def overview(
    database_url: str, request: Request, now: datetime
) -> dict[str, Any]:
    """Everything ``/dashboard`` shows, for the selection the request asks for."""
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True
    ) as conn:
        found = await sales.sessions(conn)
        selection, session = _chosen(request, found, now)
        grain = request.query_params.get("grain") or (
            "minute"
            if session is not None
            and session.ends_at - session.starts_at <= timedelta(minutes=MAX_MINUTES)
            else "hour"
        )
        if grain not in ("minute", "hour"):
            raise BadQueryError(f"grain={grain!r}: minute or hour")
        figures = await sales.summary(conn, selection)
        return {
            "now": now.isoformat(),
            "selection": {
                "channel_account": selection.channel_account,
                "session_id": selection.session_id,
                "session": None if session is None else _session_json(session, now),
            },
            "sessions": [_session_json(s, now) for s in found],
            "figures": figures.to_json(),
            "grain": grain,
            "series": _figures_json(
                await sales.series(conn, selection, grain)  # type: ignore[arg-type]
            ),
            "by_platform": _figures_json(
                await sales.breakdown(conn, selection, "platform")
            ),
            "by_streamer": _figures_json(
                await sales.breakdown(conn, selection, "streamer")
            ),
            "by_session": _figures_json(
                await sales.breakdown(
                    conn, sales.Selection(selection.channel_account), "session_id"
                )
            ),
        }


async def _rows(conn: psycopg.AsyncConnection[Any], query: str) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query)
        return [_jsonable(dict(row)) for row in await cur.fetchall()]


async def _read_all(database_url: str, queries: dict[str, str]) -> dict[str, Any]:
    """Each query's rows, by its name, in one connection."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        return {name: await _rows(conn, query) for name, query in queries.items()}


async def bindings_view(database_url: str) -> dict[str, Any]:
    """Every binding: status, review deadline, qualification failures."""
    return await _read_all(
        database_url,
        {
            "bindings": "SELECT channel_account, platform, shop_id, status, "
            "requested_on, review_days_max, review_due_on, data_scope, "
            "failure_reasons, updated_at FROM bindings "
            "ORDER BY platform, shop_id, channel_account",
        },
    )


async def stock_view(database_url: str) -> dict[str, Any]:
    """Every SKU's stock states, each platform's drift, dead-lettered pushes."""
    return await _read_all(
        database_url,
        {
            "stock": "SELECT sku, on_hand, committed, reserved, safety, available, "
            "low_stock_threshold, low_stock_alert, updated_at FROM inventory "
            "ORDER BY sku",
            "drift": "SELECT sku, platform, shop_id, reported, expected, drift, "
            "tolerance, detected_at FROM stock_drift "
            "ORDER BY sku, platform, shop_id",
            "dead_letters": "SELECT platform, shop_id, sku, quantity, attempts, "
            "code, message, updated_at FROM stock_pushes "
            "WHERE status = 'dead_lettered' ORDER BY updated_at DESC LIMIT 200",
        },
    )


async def health_view(
    database_url: str, supervisor: Supervisor, webhooks: WebhookCounts
) -> dict[str, Any]:
    """The hub's tasks, and per platform its bindings (all, active), outbound
    queue, pushes sent, dead letters and webhook answers."""
    report = health_report(supervisor.health())
    platforms: dict[str, dict[str, int]] = {}

    def of(platform: str) -> dict[str, int]:
        return platforms.setdefault(
            platform,
            {
                "bindings": 0,
                "bindings_active": 0,
                "queued": 0,
                "sent": 0,
                "dead_lettered": 0,
                "webhooks_2xx": 0,
                "webhooks_4xx": 0,
                "webhooks_5xx": 0,
            },
        )

    bound = await _read_all(
        database_url,
        {
            "bindings": "SELECT platform, status, count(*) AS n FROM bindings "
            "GROUP BY platform, status"
        },
    )
    for row in bound["bindings"]:
        of(row["platform"])["bindings"] += row["n"]
        if row["status"] == "active":
            of(row["platform"])["bindings_active"] += row["n"]
    for platform, push_status, count in await stock_push_counts(database_url):
        row = of(platform)
        if push_status in ("requested", "failed"):
            row["queued"] += count
        elif push_status in ("sent", "dead_lettered"):
            row[push_status] += count
    for (platform, answer), count in webhooks.answered.items():
        key = f"webhooks_{min(max(answer // 100, 2), 5)}xx"
        of(platform)[key if key in of(platform) else "webhooks_4xx"] += count
    return {
        "ok": report.ok,
        "tasks": [
            {
                "name": t.name,
                "state": t.state,
                "since": t.since,
                "last_error": t.last_error,
                "failures": t.failures,
            }
            for t in report.tasks
        ],
        "platforms": [
            {"platform": name, **counts} for name, counts in sorted(platforms.items())
        ],
    }


# -- pages --------------------------------------------------------------------------

_PAGES = {
    "": ("Live sessions 直播看板", "overview"),
    "bindings": ("Bindings 绑定", "bindings"),
    "stock": ("Stock 库存", "stock"),
    "health": ("Health 运行状态", "health"),
}


def _nav(current: str) -> str:
    links = []
    for path, (title, _) in _PAGES.items():
        href = "/dashboard" + (f"/{path}" if path else "")
        mark = ' aria-current="page"' if path == current else ""
        links.append(f'<a href="{href}"{mark}>{html.escape(title)}</a>')
    return "".join(links)


def _page(current: str, user: str) -> str:
    title, kind = _PAGES[current]
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · hub</title>
<link rel="stylesheet" href="/dashboard/static/dashboard.css">
</head><body data-page="{kind}">
<header><span class="brand">hub</span><nav>{_nav(current)}</nav>
<form method="post" action="/dashboard/logout" class="who">
<span>{html.escape(user)}</span><button type="submit">Sign out 退出</button></form>
</header>
<main id="main"><p class="muted">Loading…</p></main>
<script src="/dashboard/static/dashboard.js"></script>
</body></html>"""


def _login_page(message: str = "", next_path: str = "/dashboard") -> str:
    note = (
        f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    )
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in 登录 · hub</title>
<link rel="stylesheet" href="/dashboard/static/dashboard.css">
</head><body class="login">
<form method="post" action="/dashboard/login" class="card">
<h1>hub dashboard 登录</h1>{note}
<label>User 用户名 <input name="username" autocomplete="username" required></label>
<label>Password 密码 <input name="password" type="password"
 autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{html.escape(next_path)}">
<button type="submit">Sign in 登录</button>
</form></body></html>"""


def _safe_next(path: str) -> str:
    """A redirect target inside the dashboard only (never another site)."""
    if path.startswith("/dashboard") and not path.startswith("//"):
        return path
    return "/dashboard"


#: The longest login form read.
MAX_FORM_BYTES = 4096


async def _login_form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded login form (no multipart: a login has none)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    return {name: values[0] for name, values in fields.items()}


def _static(name: str) -> bytes:
    return resources.files("hub.entry").joinpath("static", name).read_bytes()


_STATIC_TYPES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


def dashboard_routes(
    database_url: str,
    supervisor: Supervisor,
    *,
    clock: Clock = lambda: datetime.now(UTC),
    jwt_key: bytes | None = None,
    webhooks: WebhookCounts = WEBHOOKS,
    secure_cookie: bool = False,
) -> list[BaseRoute]:
    """The dashboard's routes, to mount on the hub's HTTP app.

    Args:
        database_url: The hub's PostgreSQL (projections and users).
        supervisor: Whose tasks ``/dashboard/health`` shows.
        clock: Now, for sessions and the "current" live session.
        jwt_key: Checks programs' tokens (None: ``HUB_JWT_KEY``, read per request).
        webhooks: The webhook answers counted by the HTTP app.
        secure_cookie: Mark the cookie ``Secure`` (behind HTTPS).
    """
    sessions = Sessions(database_url, clock)

    async def who(request: Request) -> tuple[str | None, Response | None]:
        """The signed-in user or the program, or the refusal of a bad token."""
        authorization = request.headers.get("authorization")
        if authorization:
            refused = bearer_refusal(
                authorization, key=jwt_key, scope=DASHBOARD_READ, now=clock()
            )
            return (None, refused) if refused else ("(token)", None)
        return await sessions.user_of(request.cookies.get(COOKIE)), None

    def page(current: str) -> Callable[[Request], Awaitable[Response]]:
        async def show(request: Request) -> Response:
            user, refused = await who(request)
            if refused is not None:
                return refused
            if user is None:
                return RedirectResponse(
                    "/dashboard/login?next=" + quote(request.url.path), 303
                )
            return HTMLResponse(
                _page(current, user), headers={"Cache-Control": "no-store"}
            )

        return show

    def api(
        read: Callable[[Request], Awaitable[dict[str, Any]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            user, refused = await who(request)
            if refused is not None:
                return refused
            if user is None:
                response = error(
                    401,
                    "unauthorized",
                    "sign in at /dashboard/login or send Authorization: Bearer "
                    f"with scope {DASHBOARD_READ}",
                )
                response.headers["WWW-Authenticate"] = 'Bearer realm="hub"'
                return response
            try:
                body = await read(request)
            except BadQueryError as exc:
                return error(400, "bad_query", str(exc))
            return JSONResponse(body, headers={"Cache-Control": "no-store"})

        return answer

    async def login_form(request: Request) -> Response:
        return HTMLResponse(
            _login_page(next_path=_safe_next(request.query_params.get("next", "")))
        )

    async def login(request: Request) -> Response:
        form = await _login_form(request)
        username = form.get("username", "")
        password = form.get("password", "")
        target = _safe_next(form.get("next", ""))
        cookie = await sessions.sign_in(username, password)
        if cookie is None:
            return HTMLResponse(
                _login_page("Wrong user name or password 用户名或密码错误", target),
                status_code=401,
            )
        response = RedirectResponse(target, 303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(SESSION_TTL.total_seconds()),
            path="/dashboard",
            httponly=True,
            samesite="strict",
            secure=secure_cookie,
        )
        return response

    async def logout(request: Request) -> Response:
        await sessions.sign_out(request.cookies.get(COOKIE))
        response = RedirectResponse("/dashboard/login", 303)
        response.delete_cookie(
            COOKIE, path="/dashboard", httponly=True, samesite="strict"
        )
        return response

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC_TYPES:
            return error(404, "not_found", f"no static file {name!r}")
        return Response(_static(name), media_type=_STATIC_TYPES[name])

    async def read_overview(request: Request) -> dict[str, Any]:
        return await overview(database_url, request, clock())

    async def read_bindings(request: Request) -> dict[str, Any]:
        return await bindings_view(database_url)

    async def read_stock(request: Request) -> dict[str, Any]:
        return await stock_view(database_url)

    async def read_health(request: Request) -> dict[str, Any]:
        return await health_view(database_url, supervisor, webhooks)

    return [
        Route("/dashboard/login", login_form, methods=["GET"]),
        Route("/dashboard/login", login, methods=["POST"]),
        Route("/dashboard/logout", logout, methods=["POST"]),
        Route("/dashboard/static/{name}", static, methods=["GET"]),
        Route("/dashboard/api/overview", api(read_overview), methods=["GET"]),
        Route("/dashboard/api/bindings", api(read_bindings), methods=["GET"]),
        Route("/dashboard/api/stock", api(read_stock), methods=["GET"]),
        Route("/dashboard/api/health", api(read_health), methods=["GET"]),
        *(
            Route("/dashboard" + (f"/{path}" if path else ""), page(path))
            for path in _PAGES
        ),
    ]


def with_dashboard(
    database_url: str,
    supervisor: Supervisor,
    rest: ASGIApp | None = None,
    **options: Any,
) -> Starlette:
    """The dashboard's routes, and everything else from ``rest`` when given."""
    routes = dashboard_routes(database_url, supervisor, **options)
    if rest is not None:
        routes.append(Mount("/", app=rest))
    return Starlette(routes=routes)
