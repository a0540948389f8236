"""What every platform's webhook shares: typed results, refusals, bounded decoding.

Each platform package has a ``webhook.py`` that verifies one push with the
credentials of the registered shops and decodes it into a :class:`VerifiedPush`:
which shop signed it and the :class:`~connectors.common.PushEvent` s it says.
The hub's HTTP entry point only moves bytes: it reads the body (at most
:data:`MAX_BODY_BYTES`), hands it to the platform's :class:`Webhook` from the
registry, and answers with the webhook's :class:`Acknowledgement` or the
refusal's status.

Shops are passed in as plain objects with ``platform``, ``shop_id`` and
``credentials`` (:class:`Shop`), so nothing here knows the hub.

Every decode of pushed data goes through :func:`decode_json` or
:func:`decode_xml`: bounded in size (:data:`MAX_BODY_BYTES`), in nesting
(:data:`MAX_DEPTH`) and in the number of containers (:data:`MAX_CONTAINERS`),
and typed (msgspec Structs), so a hostile body is refused with
:class:`MalformedPushError` (400) and never reaches a recursion limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast
from xml.etree import ElementTree

import msgspec

from connectors.common import (
    PlatformCallError,
    ProtocolError,
    PushEvent,
    PushEventKind,
)

#: Pushes larger than this are refused unread (no platform sends more).
MAX_BODY_BYTES = 1 << 20
#: The deepest nesting of objects and arrays (or XML elements) a push may have.
#: The platforms send three or four levels.
MAX_DEPTH = 32
#: The most objects and arrays one decoded document may hold.
MAX_CONTAINERS = 4096
#: Push kinds that announce an order change worth reading.
ORDER_KINDS = frozenset(
    {
        "order_created",
        "order_paid",
        "order_shipped",
        "order_completed",
        "order_cancelled",
    }
)

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


# --------------------------------------------------------------------------- refusals


class PushRejectedError(ProtocolError):
    """A push the hub answers with a 4xx; nothing was stored.

    Attributes:
        status: The HTTP status of the answer.
        code: The machine-readable code of the answer.
    """

    status: ClassVar[int] = 400
    code: ClassVar[str] = "malformed_push"


class MalformedPushError(PushRejectedError):
    """The push is not what the platform sends; the message says what (400)."""


class UnsignedPushError(PushRejectedError):
    """No registered shop signed the push, or it carries no signature (401)."""

    status = 401
    code = "bad_signature"


class StalePushError(PushRejectedError):
    """The signed time of the push is outside the freshness window (401).

    A captured push or URL check replayed later is refused here, before the hub
    stores anything or calls the platform.
    """

    status = 401
    code = "stale_push"


class UrlCheckUnsupportedError(PushRejectedError):
    """The platform checks no URL with a GET: its pushes are POSTs (405)."""

    status = 405
    code = "method_not_allowed"


# --------------------------------------------------------------------------- types


class Shop(Protocol):
    """A registered shop as a webhook sees it (the hub's ``ShopConfig``)."""

    @property
    def platform(self) -> str:
        """The platform code."""
        ...

    @property
    def shop_id(self) -> str:
        """The shop's id on the platform."""
        ...

    @property
    def credentials(self) -> Mapping[str, str]:
        """The shop's credentials (the registry names the fields)."""
        ...


ShopT = TypeVar("ShopT", bound=Shop)


@dataclass(frozen=True)
class PushRequest:
    """One webhook request as received, and when.

    Attributes:
        query: The query parameters.
        headers: The headers (names in lower case).
        body: The body, already bounded by the HTTP layer.
        now: The current Unix time in seconds (injected, for freshness).
    """

    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    now: float = 0.0


@dataclass(frozen=True)
class ShopEvent(Generic[ShopT]):
    """One event of a push and the registered shop it concerns."""

    shop: ShopT
    event: PushEvent


@dataclass(frozen=True)
class VerifiedPush(Generic[ShopT]):
    """An authenticated, decoded push: who sent it and what it announces.

    Attributes:
        platform: The platform code.
        events: Each event with the shop it concerns (none for a heartbeat).
        heartbeat: The push only checks that the URL answers.
    """

    platform: str
    events: tuple[ShopEvent[ShopT], ...] = ()
    heartbeat: bool = False

    def order_events(self) -> Iterator[tuple[ShopT, str, PushEventKind]]:
        """(shop, order id, kind) of every event announcing an order change."""
        for item in self.events:
            if item.event.kind in ORDER_KINDS and item.event.order_id is not None:
                yield item.shop, item.event.order_id, item.event.kind

    def order_changes(self) -> Iterator[tuple[ShopT, str]]:
        """(shop, order id) of every event announcing an order change."""
        for shop, order_id, _ in self.order_events():
            yield shop, order_id


@dataclass(frozen=True)
class Acknowledgement:
    """The answer a platform expects to a push it may stop sending."""

    body: bytes
    media_type: str
    status: int = 200


@dataclass(frozen=True)
class Webhook:
    """One platform's webhook: verify and decode pushes, acknowledge, URL check.

    Subclasses set :attr:`platform`, :attr:`acknowledgement` and
    :attr:`no_such_order_codes`, implement :meth:`verify`, and give
    :attr:`freshness_s` their platform's default.

    Attributes:
        freshness_s: How far (seconds, either way) the time a push is signed
            with may be from now; None where the platform signs no time.
    """

    platform: ClassVar[str] = ""
    acknowledgement: ClassVar[Acknowledgement] = Acknowledgement(b"", "text/plain")
    #: Platform error codes of an order read that mean "no such order".
    no_such_order_codes: ClassVar[frozenset[str]] = frozenset()

    freshness_s: float | None = None

    def verify(
        self, shops: Sequence[ShopT], request: PushRequest
    ) -> VerifiedPush[ShopT]:
        """Authenticate and decode one push with the platform's registered shops.

        Raises:
            UnsignedPushError: no shop of ``shops`` signed it (401).
            StalePushError: its signed time is outside the window (401).
            MalformedPushError: it is not what the platform sends (400).
        """
        raise NotImplementedError

    def check_url(self, shops: Sequence[ShopT], request: PushRequest) -> bytes:
        """Answer the platform's GET check of the push URL (the echo body).

        Raises:
            UrlCheckUnsupportedError: the platform checks no URL this way.
        """
        raise UrlCheckUnsupportedError(f"{self.platform} pushes are POSTs")

    def says_no_such_order(self, error: PlatformCallError) -> bool:
        """Whether a failed order read is the platform saying the order does not
        exist (definitive: re-sending the push cannot change the answer)."""
        return error.outcome == "rejected" and error.code in self.no_such_order_codes

    def check_fresh(self, signed_at: float, now: float, what: str) -> None:
        """Refuse a signed time outside the window around ``now``.

        Raises:
            StalePushError: ``|now - signed_at|`` exceeds :attr:`freshness_s`.
        """
        window = self.freshness_s
        if window is None:
            return
        skew = now - signed_at
        if abs(skew) > window:
            when = "old" if skew > 0 else "ahead of the hub's clock"
            raise StalePushError(
                f"{what} {signed_at:.0f} is {abs(skew):,.0f} s {when}: {self.platform} "
                f"pushes signed more than {window:,.0f} s from now are refused "
                "(a replay)"
            )


# --------------------------------------------------------------------------- signers


def signed_by(
    shops: Sequence[ShopT],
    key: Callable[[ShopT], K],
    opens: Callable[[K], V],
    refusal: str,
) -> tuple[list[ShopT], V]:
    """Which registered shops signed a push: those whose credentials open it.

    Each distinct key (a shop's app credentials, push token or message key) is
    tried once, in registry order.

    Args:
        shops: The registered shops of the platform.
        key: The credentials of a shop that a signature depends on.
        opens: Checks the push with one key and returns what it yields (a
            decrypted message, or None); raises :class:`ProtocolError` when the
            key did not sign it.
        refusal: The message when no key opens the push.

    Returns:
        Every shop holding the key that opened it, and what it yielded.

    Raises:
        UnsignedPushError: no shop's key opens the push.
    """
    by_key: dict[K, list[ShopT]] = {}
    for shop in shops:
        by_key.setdefault(key(shop), []).append(shop)
    for candidate, holders in by_key.items():
        try:
            opened = opens(candidate)
        except ProtocolError:
            continue
        return holders, opened
    raise UnsignedPushError(refusal)


def shop_named(
    signers: Sequence[ShopT], shop_id: str | None, where: str, what: str
) -> ShopT:
    """The shop among ``signers`` that a push's (signed) shop id names.

    Raises:
        MalformedPushError: no shop id, or none of the signing shops has it.
    """
    if shop_id is None:
        raise MalformedPushError(f"{where} has no {what}")
    for shop in signers:
        if shop.shop_id == shop_id:
            return shop
    raise MalformedPushError(
        f"{where} is for shop {shop_id!r}, which no registered shop with the "
        "signing credentials has"
    )


def required(value: str | None, what: str) -> str:
    """A signature parameter the push must carry.

    Raises:
        UnsignedPushError: it is missing or empty.
    """
    if not value:
        raise UnsignedPushError(f"the push has no {what}")
    return value


def unix_seconds(value: str, what: str) -> int:
    """A signed Unix time given as digits.

    Raises:
        MalformedPushError: it is not digits.
    """
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise MalformedPushError(f"{what} {value[:20]!r} is not Unix seconds")
    return int(value)


def event_checked(event: PushEvent, where: str) -> PushEvent:
    """The event, if an order kind names its order.

    Raises:
        MalformedPushError: an order change that names no order.
    """
    if event.kind in ORDER_KINDS and event.order_id is None:
        raise MalformedPushError(f"{where} ({event.raw_type}) names no order")
    return event


# --------------------------------------------------------------------------- decoding

_JSON_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_XML_DECLARATION = re.compile(rb"<!(?!\[CDATA\[)")
_XML_CHUNK_BYTES = 1 << 16


def _bounded(raw: bytes | str, what: str) -> bytes:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > MAX_BODY_BYTES:
        raise MalformedPushError(
            f"{what} is {len(data):,} bytes; at most {MAX_BODY_BYTES:,} are read"
        )
    return data


def _check_json_nesting(data: bytes, what: str) -> None:
    containers = data.count(b"[") + data.count(b"{")
    if containers <= MAX_DEPTH:
        return
    if containers > MAX_CONTAINERS:
        raise MalformedPushError(
            f"{what} holds {containers:,} brackets; at most {MAX_CONTAINERS:,} "
            "objects and arrays are decoded"
        )
    depth = 0
    for token in _JSON_STRUCTURE.finditer(data):
        mark = token.group()
        if mark in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise MalformedPushError(f"{what} nests deeper than {MAX_DEPTH} levels")
        elif mark in (b"]", b"}"):
            depth -= 1


def decode_json(
    raw: bytes | str, kind: type[T], what: str, *, strict: bool = True
) -> T:
    """Decode pushed JSON into ``kind``, within the size and depth limits.

    Args:
        raw: The JSON text.
        kind: The type to decode into (a msgspec Struct, a list of them ...).
        what: What the text is, for the message (``"Youzan push body"``).
        strict: False lets numbers arrive as digit strings and the reverse
            where the platform sends either.

    Raises:
        MalformedPushError: too large, too deep, not JSON, or not of ``kind``
            (the message names the field).
    """
    data = _bounded(raw, what)
    _check_json_nesting(data, what)
    try:
        return msgspec.json.decode(data, type=kind, strict=strict)
    except msgspec.DecodeError as exc:
        raise MalformedPushError(f"{what}: {exc}") from None


def decode_xml(raw: bytes, kind: type[T], what: str) -> T:
    """Decode a flat XML document (``<xml><Key>value</Key>…</xml>``) into ``kind``.

    Children become fields (nested elements nested objects); a document type
    or entity declaration is refused (platforms send none), as is nesting
    deeper than :data:`MAX_DEPTH` or more than :data:`MAX_CONTAINERS` elements.

    Raises:
        MalformedPushError: too large, too deep, declarations, not XML, or not
            of ``kind``.
    """
    data = _bounded(raw, what)
    if _XML_DECLARATION.search(data):
        raise MalformedPushError(
            f"{what} declares a document type or entities; the platform sends none"
        )
    parser: ElementTree.XMLPullParser[ElementTree.Element] = ElementTree.XMLPullParser(
        events=("start", "end")
    )
    stack: list[dict[str, Any]] = [{}]
    elements = 0
    try:
        for start in range(0, len(data), _XML_CHUNK_BYTES):
            parser.feed(data[start : start + _XML_CHUNK_BYTES])
            elements = _fold_xml(parser, stack, elements, what)
        parser.close()
        _fold_xml(parser, stack, elements, what)
    except ElementTree.ParseError as exc:
        raise MalformedPushError(f"{what} is not XML: {exc}") from None
    root: Any = next(iter(stack[0].values()), {})
    document = root if isinstance(root, dict) else {}
    try:
        return msgspec.convert(document, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise MalformedPushError(f"{what}: {exc}") from None


def _fold_xml(
    parser: ElementTree.XMLPullParser[ElementTree.Element],
    stack: list[dict[str, Any]],
    elements: int,
    what: str,
) -> int:
    """Fold the parser's pending events into ``stack``; return elements seen."""
    for pending in parser.read_events():
        event, element = cast("tuple[str, object]", pending)
        if not isinstance(element, ElementTree.Element):
            continue
        if event == "start":
            elements += 1
            if len(stack) > MAX_DEPTH or elements > MAX_CONTAINERS:
                raise MalformedPushError(
                    f"{what} nests deeper than {MAX_DEPTH} levels or holds "
                    f"more than {MAX_CONTAINERS:,} elements"
                )
            stack.append({})
        else:
            children = stack.pop()
            value: Any = children or (element.text or "").strip()
            stack[-1][element.tag] = value
    return elements


def decode_document(raw: bytes, kind: type[T], what: str) -> T:
    """Decode a push that may come as XML or as JSON (WeChat sends either)."""
    if raw.lstrip().startswith(b"<"):
        return decode_xml(raw.strip(), kind, what)
    return decode_json(raw, kind, what, strict=False)


def platform_id(value: int | str | None, what: str) -> str | None:
    """An id the platform sends as a number or as text, as exact text.

    Raises:
        MalformedPushError: an empty text.
    """
    if value is None:
        return None
    if isinstance(value, int):
        return str(value)
    text = value.strip()
    if not text:
        raise MalformedPushError(f"{what} is empty")
    return text


#: A Unix time within what a datetime can hold (before the year 10000).
UnixSeconds = msgspec.Meta(ge=0, lt=253_402_300_800)
#: The same in milliseconds.
UnixMillis = msgspec.Meta(ge=0, lt=253_402_300_800_000)
