"""The connectors' HTTP client: the few requests they make, on aiohttp.

The four platform clients send small signed requests (a query string, a JSON
or form body) and read a JSON answer; at a flash sale's rate that is thousands
of calls a minute, and the HTTP client's own cost per call is a large share of
the hub's CPU. ``bench/http_client.py`` measures it against httpx (which the
connectors used before): aiohttp's client costs about a sixth of httpx's CPU
per call on the same loop, server and requests.

:class:`HttpClient` keeps the part of httpx's interface the connectors use
(``get`` / ``post`` with ``params``, ``json``, ``content``, ``data``,
``headers`` and a per-call ``timeout``), so a platform's ``client.py`` reads
the same; an answer is an :class:`HttpAnswer` (status, body, headers), read
whole before it is returned. Failures are :class:`HttpTimeoutError` (no answer
within the timeout) and :class:`HttpError` (the connection failed); both
mean the call may or may not have reached the platform.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import msgspec
from yarl import URL

__all__ = ["HttpAnswer", "HttpClient", "HttpError", "HttpTimeoutError"]

_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"


class HttpError(Exception):
    """The request failed on the way: no connection, a reset, a bad answer."""


class HttpTimeoutError(HttpError):
    """No answer within the timeout (the request may have been applied)."""


class HttpAnswer:
    """One answer, its body read whole.

    Attributes:
        status_code: The HTTP status.
        content: The body as received (decompressed).
        headers: The answer's headers (case-insensitive names).
    """

    __slots__ = ("content", "headers", "status_code")

    def __init__(
        self, status_code: int, content: bytes, headers: Mapping[str, str]
    ) -> None:
        self.status_code = status_code
        self.content = content
        self.headers = headers

    @property
    def text(self) -> str:
        """The body as text (UTF-8; undecodable bytes replaced)."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body decoded as JSON.

        Raises:
            msgspec.DecodeError: The body is not JSON.
        """
        return msgspec.json.decode(self.content)

    def __repr__(self) -> str:
        return f"<HttpAnswer {self.status_code}, {len(self.content)} bytes>"


class HttpClient:
    """A pooled HTTP/1.1 client (aiohttp underneath).

    Its session is made on the first request, in the event loop that sends it,
    and kept (with its connections) until :meth:`aclose`.

    Args:
        timeout: Seconds to wait to connect, and for each read of the answer
            (a silent server for this long is a timeout); each call may give
            its own.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._session: aiohttp.ClientSession | None = None

    def _client_timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        made = self._timeouts.get(seconds)
        if made is None:
            made = aiohttp.ClientTimeout(
                total=None, connect=seconds, sock_connect=seconds, sock_read=seconds
            )
            self._timeouts[seconds] = made
        return made

    def _open(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                timeout=self._client_timeout(self.timeout), auto_decompress=True
            )
            self._session = session
        return session

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpAnswer:
        """Send a GET; see :meth:`request`."""
        return await self.request(
            "GET", url, params=params, headers=headers, timeout=timeout
        )

    async def post(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpAnswer:
        """Send a POST with a JSON body (``json``, encoded here), a form
        (``data``) or raw bytes (``content``); see :meth:`request`."""
        sent_headers = dict(headers or {})
        body: bytes | None = content
        if json is not None:
            body = msgspec.json.encode(json)
            sent_headers.setdefault("Content-Type", _JSON)
        elif data is not None:
            body = urlencode(data, quote_via=quote).encode()
            sent_headers.setdefault("Content-Type", _FORM)
        return await self.request(
            "POST",
            url,
            params=params,
            headers=sent_headers,
            body=body,
            timeout=timeout,
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> HttpAnswer:
        """Send one request and read its answer whole.

        Args:
            method: The HTTP method.
            url: The address, percent-encoded already (sent as it is).
            params: Fields added to its query string (percent-encoded here).
            headers: Extra headers.
            body: The request's body.
            timeout: Seconds (see the class); the client's when None.

        Returns:
            The answer, whatever its status.

        Raises:
            HttpTimeoutError: No answer within the timeout.
            HttpError: The connection failed or the answer was malformed.
        """
        if params:
            joint = "&" if "?" in url else "?"
            url = f"{url}{joint}{urlencode(params, quote_via=quote)}"
        options: dict[str, Any] = {}
        if timeout is not None and timeout != self.timeout:
            options["timeout"] = self._client_timeout(timeout)
        try:
            async with self._open().request(
                method,
                URL(url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
                **options,
            ) as answer:
                content = await answer.read()
                return HttpAnswer(answer.status, content, answer.headers)
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise HttpTimeoutError(f"{method} {_path(url)}: no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise HttpError(f"{method} {_path(url)}: {exc!r}") from exc

    async def aclose(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


def _path(url: str) -> str:
    """The address without its query string (tokens and signatures stay out
    of error messages)."""
    return url.split("?", 1)[0]
