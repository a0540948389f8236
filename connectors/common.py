"""What the four platform connectors share: errors, AES-CBC, tokens, backoff.

Every connector has a pure ``protocol.py`` (signing and crypto) and a ``policy.py``
(its platform code). The pieces they have in common live here once, so a
fix to padding checks or token arithmetic reaches all four platforms together:

* the protocol errors (:class:`SignatureError`, :class:`DecryptError`, ...);
* strict AES-CBC with PKCS#7 padding to a chosen block size;
* constant-time comparison of received signatures;
* the token bookkeeping (:class:`TokenState`, :func:`needs_refresh`, ...);
* the backoff arithmetic of a retry policy (:func:`backoff_delay_s`); the
  policy itself is data in the hub's policy book (:mod:`domain.policy`).

Nothing here performs I/O or reads the clock: time comes in as ``now``.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from typing import Literal, Protocol

import msgspec
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from domain.policy import RetryPolicy

# --------------------------------------------------------------------------- errors


class ProtocolError(Exception):
    """A platform message or request failed a protocol check."""


class SignatureError(ProtocolError):
    """A signature did not match what the shared secret produces."""


class DecryptError(ProtocolError):
    """An encrypted platform message could not be decrypted and trusted."""


class UnsupportedSignMethodError(ProtocolError, ValueError):
    """A request named a signing method the platform does not define."""


# --------------------------------------------------------------------------- AES

_AES_BLOCK_BYTES = 16
_AES_KEY_SIZES = (16, 24, 32)


def aes_cbc_encrypt(
    key: bytes, iv: bytes, plaintext: bytes, *, pad_block_bytes: int = 16
) -> bytes:
    """Encrypt with AES-CBC after PKCS#7 padding to ``pad_block_bytes``.

    Args:
        key: The AES key (16, 24 or 32 bytes).
        iv: The 16-byte initialisation vector.
        plaintext: The bytes to encrypt.
        pad_block_bytes: The padding block: 16 for PKCS#5/7 as most platforms use
            it, 32 for WeChat's message encryption.

    Returns:
        The ciphertext.

    Raises:
        ValueError: If the key or IV has the wrong length.
    """
    _check_key_and_iv(key, iv)
    padder = padding.PKCS7(pad_block_bytes * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def aes_cbc_decrypt(
    key: bytes, iv: bytes, ciphertext: bytes, *, pad_block_bytes: int = 16
) -> bytes:
    """Decrypt AES-CBC and strictly remove PKCS#7 padding to ``pad_block_bytes``.

    The padding is checked in full (every pad byte, and a pad length between 1
    and ``pad_block_bytes``): a wrong key or a tampered ciphertext almost always
    fails here instead of yielding garbage.

    Args:
        key: The AES key (16, 24 or 32 bytes).
        iv: The 16-byte initialisation vector.
        ciphertext: The bytes to decrypt.
        pad_block_bytes: The padding block the sender used (16 or 32).

    Returns:
        The plaintext without padding.

    Raises:
        DecryptError: If the ciphertext is empty, not whole AES blocks, or its
            padding is wrong.
        ValueError: If the key or IV has the wrong length.
    """
    _check_key_and_iv(key, iv)
    if not ciphertext or len(ciphertext) % _AES_BLOCK_BYTES:
        raise DecryptError(
            f"ciphertext of {len(ciphertext)} bytes is not a whole number of "
            f"{_AES_BLOCK_BYTES}-byte AES blocks"
        )
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(pad_block_bytes * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DecryptError(
            f"bad PKCS#7 padding (block {pad_block_bytes} bytes, last byte "
            f"{padded[-1]}): wrong key or tampered ciphertext"
        ) from None


def _check_key_and_iv(key: bytes, iv: bytes) -> None:
    if len(key) not in _AES_KEY_SIZES:
        raise ValueError(f"AES key is {len(key)} bytes; AES needs 16, 24 or 32")
    if len(iv) != _AES_BLOCK_BYTES:
        raise ValueError(f"AES-CBC IV is {len(iv)} bytes; it must be 16")


# --------------------------------------------------------------------------- digests


def digests_match(expected: str, received: str, *, ignore_case: bool = False) -> bool:
    """Compare a computed signature with a received one in constant time.

    Args:
        expected: The signature computed with the shared secret.
        received: The signature the peer sent (header or parameter).
        ignore_case: Compare hex digests case-insensitively (some platforms
            send upper-case hex).

    Returns:
        True when they are equal.
    """
    if ignore_case:
        expected, received = expected.lower(), received.lower()
    return hmac.compare_digest(
        expected.encode("utf-8"), received.encode("utf-8", "surrogatepass")
    )


def require_signature(
    expected: str, received: str, *, what: str, ignore_case: bool = False
) -> None:
    """Raise :class:`SignatureError` unless ``received`` equals ``expected``.

    Args:
        expected: The signature computed with the shared secret.
        received: The signature the peer sent.
        what: What was signed, for the message (``"event-sign header"``).
        ignore_case: Compare hex digests case-insensitively.

    Raises:
        SignatureError: If they differ. The message shows the received value and
            never the expected one, which would help a forger.
    """
    if not digests_match(expected, received, ignore_case=ignore_case):
        raise SignatureError(f"{what} mismatch: got {received!r}")


# --------------------------------------------------------------------------- tokens


class TokenState(msgspec.Struct, frozen=True, kw_only=True):
    """An access token the hub holds for one shop, and when it stops working.

    ``refresh_token`` is None for platforms whose access token is fetched again
    with the app secret (WeChat) instead of refreshed.
    """

    access_token: str
    access_expires_at: datetime
    refresh_token: str | None = None
    refresh_expires_at: datetime | None = None


def token_state_from_grant(
    *,
    access_token: str,
    expires_in_s: int,
    now: datetime,
    refresh_token: str | None = None,
    refresh_expires_in_s: int | None = None,
    previous: TokenState | None = None,
) -> TokenState:
    """Build the token state from a token response received at ``now``.

    A refresh that returns no new refresh token keeps the previous one; a refresh
    that returns no refresh lifetime keeps the previous expiry (Kuaishou: a
    rotated refresh token inherits its predecessor's expiry).

    Args:
        access_token: The new access token.
        expires_in_s: Its lifetime in seconds, as the platform returned it.
        now: When the response was received.
        refresh_token: The refresh token returned with it, if any.
        refresh_expires_in_s: The refresh token's lifetime, if returned.
        previous: The state being replaced, if this is a refresh.

    Returns:
        The new token state.
    """
    if refresh_token is None and previous is not None:
        refresh_token = previous.refresh_token
    if refresh_expires_in_s is not None:
        refresh_expires_at: datetime | None = now + timedelta(
            seconds=refresh_expires_in_s
        )
    else:
        refresh_expires_at = previous.refresh_expires_at if previous else None
    return TokenState(
        access_token=access_token,
        access_expires_at=now + timedelta(seconds=expires_in_s),
        refresh_token=refresh_token,
        refresh_expires_at=refresh_expires_at,
    )


def access_token_due(state: TokenState, now: datetime, margin: timedelta) -> bool:
    """Whether the access token expires within ``margin`` of ``now`` (or has).

    Args:
        state: The token state.
        now: The current time.
        margin: How long before expiry a refresh is due.

    Returns:
        True when the token should be refreshed now.
    """
    return now >= state.access_expires_at - margin


def refresh_token_expired(state: TokenState, now: datetime) -> bool:
    """Whether the shop must authorise again because refreshing is impossible.

    Args:
        state: The token state.
        now: The current time.

    Returns:
        True when there is no refresh token or it has expired.
    """
    if state.refresh_token is None:
        return True
    return state.refresh_expires_at is not None and now >= state.refresh_expires_at


# --------------------------------------------------------------------------- retries

#: HTTP statuses by which every platform says "slow down".
RATE_LIMITED_HTTP_STATUSES = frozenset({429})


def backoff_delay_s(
    policy: RetryPolicy,
    attempt: int,
    random_fraction: float,
    *,
    rate_limited: bool = False,
) -> float:
    """The wait before retry number ``attempt`` (1-based), with full jitter.

    The randomness comes in as ``random_fraction`` so the function stays pure
    and tests are deterministic.

    Args:
        policy: The retry policy.
        attempt: Which retry this is, starting at 1.
        random_fraction: A number in [0, 1) from the caller's random source.
        rate_limited: Whether the failure was a rate limit, which never retries
            sooner than ``policy.rate_limited_min_delay_s``.

    Returns:
        Seconds to wait.

    Raises:
        ValueError: If ``attempt`` < 1 or ``random_fraction`` is outside [0, 1).
    """
    if attempt < 1:
        raise ValueError(f"attempt {attempt} < 1")
    if not 0.0 <= random_fraction < 1.0:
        raise ValueError(f"random_fraction {random_fraction} is outside [0, 1)")
    ceiling = min(
        policy.max_delay_s, policy.base_delay_s * policy.multiplier ** (attempt - 1)
    )
    delay = ceiling * random_fraction
    if rate_limited:
        delay = max(delay, policy.rate_limited_min_delay_s)
    return delay


# --------------------------------------------------------------------------- calls
#
# What every connector client returns, and the one interface all four implement.
# The orders domain is written from :class:`PlatformOrder`; the outbound
# dispatcher records a :class:`PushResult` as an event.

#: A platform-neutral order status. Each ``translate.py`` maps its platform's
#: codes onto these five.
OrderStatus = Literal["created", "paid", "shipped", "completed", "cancelled"]

#: How an outbound call ended: ``sent`` (the platform accepted it),
#: ``rejected`` (the platform refused it for a reason a retry cannot fix),
#: ``rate_limited`` (still rate-limited when the retries ran out) and
#: ``failed`` (5xx, timeouts or transport errors until the retries ran out).
CallOutcome = Literal["sent", "rejected", "rate_limited", "failed"]

#: What a push from a platform announces about an order.
PushEventKind = Literal[
    "order_created",
    "order_paid",
    "order_shipped",
    "order_completed",
    "order_cancelled",
    "order_settled",
    "heartbeat",
    "other",
]


class PushResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one logical outbound write (stock push, shipment notice).

    ``request_id`` is the caller's stable id, reused on every attempt, so the
    platform (or the sandbox) applies the write at most once. ``code`` and
    ``message`` are the platform's own, as it sent them (``"10020112"``,
    ``"Exceed qps limit"``), or ``"timeout"``/``"http_503"`` for failures.
    """

    platform: str
    shop_id: str
    request_id: str
    outcome: CallOutcome
    attempts: int
    code: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        """Whether the platform accepted the write."""
        return self.outcome == "sent"


class PlatformCallError(Exception):
    """A read call (orders, settlement, stock, token) that did not succeed.

    Attributes:
        platform: The platform code.
        outcome: ``rejected``, ``rate_limited`` or ``failed`` (never ``sent``).
        code: The platform's error code, if any.
        message: The platform's error message, or what went wrong.
        attempts: How many HTTP attempts were made.
    """

    def __init__(
        self,
        platform: str,
        outcome: CallOutcome,
        code: str | None,
        message: str,
        attempts: int = 0,
    ) -> None:
        super().__init__(
            f"{platform}: {outcome} (code {code}): {message} "
            f"after {attempts} attempt(s)"
        )
        self.platform = platform
        self.outcome = outcome
        self.code = code
        self.message = message
        self.attempts = attempts


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    """One SKU line of an order; money in integer fen.

    ``unit_price_fen`` is the price of one unit before discounts;
    ``discount_fen`` is the discount on the whole line, so the line's amount is
    ``unit_price_fen * quantity - discount_fen``.
    """

    platform_sku_id: str
    platform_product_id: str
    quantity: int
    unit_price_fen: int
    discount_fen: int = 0
    title: str = ""

    @property
    def amount_fen(self) -> int:
        """What the buyer pays for this line, in fen."""
        return self.unit_price_fen * self.quantity - self.discount_fen


class BuyerPersonalData(msgspec.Struct, frozen=True, kw_only=True):
    """The buyer's personal data, kept apart so the hub can encrypt it.

    Nothing else in :class:`PlatformOrder` names a person. ``buyer_ref`` is the
    platform's opaque buyer id (openid, open id), also personal data.
    """

    name: str | None = None
    phone: str | None = None
    address: str | None = None
    buyer_ref: str | None = None


class PlatformOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order as a platform reports it, in platform-neutral form.

    Ids are strings everywhere: WeChat and Douyin order ids exceed 2^53.
    Times are timezone-aware UTC.
    """

    platform: str
    shop_id: str
    order_id: str
    status: OrderStatus
    platform_status: str
    lines: tuple[OrderLine, ...]
    total_fen: int
    created_at: datetime
    updated_at: datetime
    buyer: BuyerPersonalData = BuyerPersonalData()


class OrderPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of orders; pass ``next_cursor`` back for the next page."""

    orders: tuple[PlatformOrder, ...]
    next_cursor: str | None = None

    @property
    def has_more(self) -> bool:
        """Whether another page follows."""
        return self.next_cursor is not None


class SettlementEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One settled order in a statement.

    ``net_fen = gross_fen - fee_fen - (commission_fen or 0)``; ``commission_fen``
    is the streamer's commission where the platform's statement lists it on its
    own (Douyin), else None.
    """

    entry_id: str
    order_id: str
    gross_fen: int
    fee_fen: int
    net_fen: int
    settled_at: datetime
    commission_fen: int | None = None


class SettlementStatement(msgspec.Struct, frozen=True, kw_only=True):
    """What the platform settled to the shop between two instants."""

    platform: str
    shop_id: str
    period_start: datetime
    period_end: datetime
    entries: tuple[SettlementEntry, ...]

    @property
    def gross_fen(self) -> int:
        """Sum of the entries' gross amounts."""
        return sum(entry.gross_fen for entry in self.entries)

    @property
    def fee_fen(self) -> int:
        """Sum of the entries' fees."""
        return sum(entry.fee_fen for entry in self.entries)

    @property
    def net_fen(self) -> int:
        """Sum of the entries' net amounts."""
        return sum(entry.net_fen for entry in self.entries)


class PushEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What one platform push says: the event kind, the order, the message id.

    ``msg_id`` identifies the push for deduplication (a duplicated push has
    the same one); ``raw_type`` is the platform's own event name or tag.
    """

    platform: str
    kind: PushEventKind
    msg_id: str
    raw_type: str
    order_id: str | None = None
    shop_id: str | None = None
    occurred_at: datetime | None = None


class ShopClient(Protocol):
    """The calls the hub makes on every platform, one implementation each.

    Writes return a :class:`PushResult` and never raise for platform errors;
    reads return data or raise :class:`PlatformCallError`. Every client signs
    with its ``protocol.py``, caches and refreshes tokens, retries with
    exponential backoff and jitter, and keeps a token bucket per shop.
    """

    platform: str

    async def push_stock(
        self,
        shop_id: str,
        platform_sku_id: str,
        *,
        product_id: str,
        delta: int | None = None,
        absolute: int | None = None,
        expected: int | None = None,
        request_id: str,
    ) -> PushResult:
        """Change one SKU's stock by ``delta``, or set it to ``absolute``."""
        ...

    async def fetch_stock(
        self, shop_id: str, platform_sku_id: str, *, product_id: str
    ) -> int:
        """The SKU's sellable stock as the platform holds it."""
        ...

    async def pull_orders(
        self,
        shop_id: str,
        updated_from: datetime,
        updated_to: datetime,
        cursor: str | None = None,
        *,
        page_size: int = 50,
    ) -> OrderPage:
        """One page of the orders updated in ``[updated_from, updated_to]``."""
        ...

    async def fetch_order(self, shop_id: str, order_id: str) -> PlatformOrder:
        """One order by its platform id."""
        ...

    async def notify_shipment(
        self,
        shop_id: str,
        order_id: str,
        *,
        carrier_code: str,
        tracking_no: str,
        request_id: str,
    ) -> PushResult:
        """Tell the platform the order shipped with this carrier and waybill."""
        ...

    async def fetch_settlement(
        self, shop_id: str, period_start: datetime, period_end: datetime
    ) -> SettlementStatement:
        """The settlement entries booked in ``[period_start, period_end)``."""
        ...

    async def aclose(self) -> None:
        """Close the HTTP client if the client created it."""
        ...
