"""What the four connector clients share: clock, token bucket, retries, tokens.

Each ``client.py`` says how to build, sign and classify its platform's
requests; this module runs them the same way for all four:

* a token bucket per (platform, shop) at the rate of the platform's sync
  policy (the hub's policy book, :class:`domain.policy.SyncPolicy`), paused for the
  backoff delay whenever the platform says "slow down" (HTTP 429 or its own
  rate-limit codes);
* retries of 5xx, timeouts and transport errors with exponential backoff and
  full jitter (:func:`connectors.common.backoff_delay_s`), the jitter source,
  the clock and the sleep injected so tests run instantly and reproducibly;
* a stable request id per logical call, sent on every attempt;
* the shop's token from a :class:`TokenStore`, refreshed before it expires and
  again, once, when a call answers with an expiry code, without losing the call.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import msgspec

from connectors.common import (
    RATE_LIMITED_HTTP_STATUSES,
    CallOutcome,
    PlatformCallError,
    PushResult,
    TokenState,
    access_token_due,
    backoff_delay_s,
)
from connectors.http import HttpAnswer, HttpClient, HttpError, HttpTimeoutError
from domain.policy import SyncPolicy

#: The header every outbound call carries with its stable request id. The
#: sandbox deduplicates writes on it; real platforms ignore it (Douyin's own
#: ``idempotent_id`` is filled as well).
REQUEST_ID_HEADER = "X-Request-Id"

#: Waits shorter than this count as none: a clock that advances by exactly
#: the wait may land a rounding error short of it.
_EPSILON_S = 1e-6

#: The read timeout of outbound calls unless the caller gives its own client.
DEFAULT_TIMEOUT_S = 10.0
#: The timeout of token grants and refreshes, whatever the client's own: a
#: refresh whose answer is lost has used up a single-use refresh token (Douyin,
#: Youzan), so the shop would need the merchant to authorise again. A slow
#: answer is waited for rather than retried.
TOKEN_TIMEOUT_S = 10.0


class Clock(Protocol):
    """Where a client reads the time (injected; tests pass a fake)."""

    def now(self) -> datetime:
        """The current UTC time, timezone-aware."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for the token bucket."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """:func:`time.monotonic`."""
        return time.monotonic()


#: An awaitable sleep (``asyncio.sleep`` in production).
Sleep = Callable[[float], Awaitable[None]]
#: A source of numbers in [0, 1) for jitter (``random.random`` in production).
Jitter = Callable[[], float]


class TokenBucket:
    """A token bucket: ``rate_per_s`` calls a second, bursts of ``burst``.

    :meth:`pause` empties the bucket until a given time: after a rate-limit
    answer, every call for the same shop waits, not only the one refused.
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Clock) -> None:
        """Start full.

        Args:
            rate_per_s: Tokens added per second.
            burst: The bucket's size.
            clock: The monotonic clock.
        """
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock.monotonic()
        self._paused_until = 0.0

    def reserve(self) -> float:
        """Take a token if one is there.

        Returns:
            0 when a token was taken, else the seconds to wait before trying
            again.
        """
        wait = self._wait_for_token()
        if wait == 0.0:
            self._tokens = max(0.0, self._tokens - 1.0)
        return wait

    async def acquire(self, sleep: Sleep) -> None:
        """Wait (with ``sleep``) until a token is taken.

        Args:
            sleep: The sleep to wait with.
        """
        while (wait := self.reserve()) > 0:
            await sleep(wait)

    async def ready(self, sleep: Sleep, reserve: int = 0) -> None:
        """Wait (with ``sleep``) until a token is there, without taking it.

        A caller that decides *what* to send only once it may send (the stock
        dispatcher plans a write from the newest state) waits here first, then
        takes the token with :meth:`acquire`. A caller that should give way to
        others waits until ``reserve`` more tokens are there besides its own.

        Args:
            sleep: The sleep to wait with.
            reserve: Tokens to leave for others.
        """
        while (wait := self._wait_for_token(1.0 + reserve)) > 0:
            await sleep(wait)

    def has(self, tokens: int) -> bool:
        """Whether ``tokens`` calls could be made now (none is taken; a bucket
        smaller than that never has them)."""
        return tokens <= self._burst and self._wait_for_token(float(tokens)) == 0.0

    def _wait_for_token(self, needed: float = 1.0) -> float:
        """Refill the bucket to now; the seconds until ``needed`` tokens are
        there (0: they are now)."""
        now = self._clock.monotonic()
        if now + _EPSILON_S < self._paused_until:
            return self._paused_until - now
        self._tokens = min(
            self._burst, self._tokens + (now - self._updated) * self._rate
        )
        self._updated = now
        needed = min(needed, self._burst)
        if self._tokens >= needed - _EPSILON_S:
            return 0.0
        return (needed - self._tokens) / self._rate

    def pause(self, seconds: float) -> None:
        """Give no token for ``seconds`` from now (and empty the bucket).

        Args:
            seconds: How long to hold every caller back.
        """
        until = self._clock.monotonic() + seconds
        self._paused_until = max(self._paused_until, until)
        self._tokens = 0.0


class TokenStore(Protocol):
    """Where clients keep each shop's token (the hub persists it; tests use
    :class:`MemoryTokenStore`)."""

    def get(self, platform: str, shop_id: str) -> TokenState | None:
        """The token held for the shop, if any."""
        ...

    def put(self, platform: str, shop_id: str, state: TokenState) -> None:
        """Keep a new token for the shop."""
        ...


class MemoryTokenStore:
    """A :class:`TokenStore` in a dict."""

    def __init__(self) -> None:
        """Start empty."""
        self._states: dict[tuple[str, str], TokenState] = {}

    def get(self, platform: str, shop_id: str) -> TokenState | None:
        """The token held for the shop, if any."""
        return self._states.get((platform, shop_id))

    def put(self, platform: str, shop_id: str, state: TokenState) -> None:
        """Keep a new token for the shop."""
        self._states[(platform, shop_id)] = state


VerdictKind = Literal["ok", "rejected", "rate_limited", "token_expired", "retry"]


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """How a client judged one HTTP answer.

    ``retry`` covers 5xx, timeouts and transport errors; ``payload`` is the
    decoded body of an ``ok`` answer.
    """

    kind: VerdictKind
    code: str | None = None
    message: str = ""
    payload: Any = None


#: A slow first attempt is resent only once it is this many times slower than
#: the client's recent median answer (and past the policy's
#: ``resend_slow_after_s``): when the hub itself is loaded every answer is
#: late, and resending them all would only add to the load.
RESEND_OVER_MEDIAN = 4.0
#: The answers the median is taken over (the newest), and the fewest that
#: make one.
LATENCY_SAMPLES = 64
LATENCY_MIN_SAMPLES = 16

#: Sends one attempt with the given access token (None for token calls).
Attempt = Callable[[str | None], Awaitable[HttpAnswer]]


async def _first_or_slow(
    attempt: Attempt, token: str | None, slow_after: float | None
) -> HttpAnswer | None:
    """Run ``attempt``; None when it has not answered within ``slow_after``
    (it is abandoned then: cancelled on the spot, inline, with no task)."""
    if slow_after is None:
        return await attempt(token)
    try:
        async with asyncio.timeout(slow_after):
            return await attempt(token)
    except TimeoutError:
        return None


#: Judges one HTTP answer.
Classify = Callable[[HttpAnswer], Verdict]


@dataclass(frozen=True, slots=True, kw_only=True)
class StockDelta:
    """One SKU's stock change, sent as the platform's add/reduce operation.

    Attributes:
        shop_id: The shop.
        platform_sku_id: The SKU's id on the platform.
        product_id: The product's id on the platform.
        delta: How much to add (negative: reduce); never 0.
        request_id: The stable id of the change (at most once per id).
    """

    shop_id: str
    platform_sku_id: str
    product_id: str
    delta: int
    request_id: str


class CallReport(msgspec.Struct, frozen=True, kw_only=True):
    """The last verdict of a logical call and how many attempts it took."""

    verdict: Verdict
    attempts: int

    def outcome(self) -> CallOutcome:
        """The verdict as a :data:`CallOutcome`."""
        kind = self.verdict.kind
        if kind == "ok":
            return "sent"
        if kind == "rejected":
            return "rejected"
        if kind == "rate_limited":
            return "rate_limited"
        return "failed"


class NotAuthorisedError(PlatformCallError):
    """The hub holds no usable token for the shop: authorise it first."""


class ClientBase:
    """The retry, rate-limit and token machinery of a platform client.

    Subclasses implement :meth:`_refresh_token` (and usually :meth:`_classify`)
    and call :meth:`_call` with a function that sends one signed attempt; they
    set :attr:`refresh_margin`, a fact of the platform's token protocol.
    """

    platform: str = ""
    #: How long before its expiry an access token is refreshed.
    refresh_margin: ClassVar[timedelta]
    #: Whether ``pull_orders`` gets whole orders in one call a page (the
    #: platform's list API returns them), so reading many orders by update
    #: time costs fewer calls than reading each. False where the list gives
    #: ids only (each order is then read on its own anyway).
    lists_whole_orders: ClassVar[bool] = False

    def __init__(
        self,
        *,
        base_url: str,
        policy: SyncPolicy,
        token_store: TokenStore | None = None,
        http: HttpClient | None = None,
        clock: Clock | None = None,
        jitter: Jitter | None = None,
        sleep: Sleep | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Set up the machinery.

        Args:
            base_url: The platform's API root (the sandbox in tests).
            policy: The platform's sync policy from the policy book (the
                rate limit of each shop's bucket, the retries).
            token_store: Where tokens are kept; in memory when None.
            http: The HTTP client to use; one is created (and closed by
                :meth:`aclose`) when None.
            clock: The clock; the system clock when None.
            jitter: Numbers in [0, 1) for backoff jitter; ``random.random``
                when None.
            sleep: The sleep between attempts; ``asyncio.sleep`` when None.
            timeout_s: The HTTP timeout of a created client.
        """
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.tokens: TokenStore = token_store or MemoryTokenStore()
        self._own_http = http is None
        self.http = http or HttpClient(timeout=timeout_s)
        self.clock: Clock = clock or SystemClock()
        self._jitter: Jitter = jitter or random.random
        self._sleep: Sleep = sleep or asyncio.sleep
        self._buckets: dict[str, TokenBucket] = {}
        self._token_locks: dict[str, asyncio.Lock] = {}
        #: Seconds the newest answered attempts took (see RESEND_OVER_MEDIAN).
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)

    async def aclose(self) -> None:
        """Close the HTTP client if this client created it."""
        if self._own_http:
            await self.http.aclose()

    # ------------------------------------------------------------------ buckets

    def bucket(self, shop_id: str) -> TokenBucket:
        """The token bucket of one shop on this platform.

        Args:
            shop_id: The shop.

        Returns:
            Its bucket, created at the policy's rate on first use.
        """
        bucket = self._buckets.get(shop_id)
        if bucket is None:
            limits = self.policy.rate_limit
            bucket = TokenBucket(limits.rate_per_s, limits.burst, self.clock)
            self._buckets[shop_id] = bucket
        return bucket

    async def budget_ready(self, shop_id: str, *, reserve: int = 0) -> None:
        """Wait until the shop's bucket has a call to give (none is taken).

        Args:
            shop_id: The shop.
            reserve: Calls to leave for others (the stock writes, which order
                reads give way to).
        """
        await self.bucket(shop_id).ready(self._sleep, reserve)

    def budget_spare(self, shop_id: str, calls: int) -> bool:
        """Whether the shop's bucket has ``calls`` calls to give now (none is
        taken)."""
        return self.bucket(shop_id).has(calls)

    # ------------------------------------------------------------------ tokens

    async def _refresh_token(
        self, shop_id: str, state: TokenState | None
    ) -> TokenState:
        """Get a new token for the shop (platform-specific).

        Args:
            shop_id: The shop.
            state: The token held now, if any.

        Returns:
            The new token state (already stored by the caller).
        """
        raise NotImplementedError

    async def access_token(self, shop_id: str) -> str:
        """The shop's access token, refreshed first if it is due.

        Args:
            shop_id: The shop.

        Returns:
            A token that was valid when last seen.

        Raises:
            NotAuthorisedError: If the shop was never authorised and the
                platform cannot issue a token without the merchant.
        """
        state = self.tokens.get(self.platform, shop_id)
        if state is not None and not access_token_due(
            state, self.clock.now(), self.refresh_margin
        ):
            return state.access_token
        return (await self._renew(shop_id, stale=state)).access_token

    async def _renew(self, shop_id: str, *, stale: TokenState | None) -> TokenState:
        """Refresh once even when many calls find the token stale together."""
        lock = self._token_locks.setdefault(shop_id, asyncio.Lock())
        async with lock:
            current = self.tokens.get(self.platform, shop_id)
            if current is not None and current != stale:
                # Another call refreshed while this one waited.
                return current
            fresh = await self._refresh_token(shop_id, current)
            self.tokens.put(self.platform, shop_id, fresh)
            return fresh

    # ------------------------------------------------------------------ calls

    def _classify(self, response: HttpAnswer) -> Verdict:
        raise NotImplementedError

    async def _call(
        self,
        shop_id: str,
        request_id: str,
        attempt: Attempt,
        *,
        classify: Classify | None = None,
        needs_token: bool = True,
        read: bool = False,
    ) -> CallReport:
        """Run one logical call: bucket, token, attempt, classify, retry.

        Args:
            shop_id: The shop (selects the bucket and the token).
            request_id: The stable id of the call (for the caller's record;
                ``attempt`` puts it on the request).
            attempt: Sends one attempt with the current access token.
            classify: Judges an answer; :meth:`_classify` when None.
            needs_token: False for the token calls themselves.
            read: The call changes nothing (a slow first attempt may be sent
                again; see
                :attr:`connectors.common.RetryPolicy.resend_slow_after_s`).

        Returns:
            The last verdict and the number of attempts.
        """
        judge = classify or self._classify
        retry = self.policy.retry
        # Never for token calls: an abandoned refresh may have spent a
        # single-use refresh token (see TOKEN_TIMEOUT_S).
        slow_after = (
            self._resend_after(retry.resend_slow_after_s)
            if needs_token and (read or retry.resend_slow_writes)
            else None
        )
        attempts = 0
        token_renewals = 0
        failures = 0
        verdict = Verdict(kind="retry", code="not_attempted")
        while attempts < retry.max_attempts:
            attempts += 1
            await self.bucket(shop_id).acquire(self._sleep)
            token: str | None = None
            if needs_token:
                token = await self.access_token(shop_id)
            try:
                response = await self._timed(attempt, token, slow_after)
                if response is None:
                    # Slow: sent again at once, not counted as a failure; the
                    # new attempt may be abandoned in turn, after twice as
                    # long (an answer lost twice costs 1 + 2 waits, not the
                    # client's timeout; a call the platform answers slowly
                    # is still answered).
                    slow_after = None if slow_after is None else slow_after * 2
                    continue
            except HttpTimeoutError:
                verdict = Verdict(kind="retry", code="timeout", message="timed out")
            except HttpError as exc:
                verdict = Verdict(kind="retry", code="transport", message=str(exc))
            else:
                verdict = judge(response)
            if verdict.kind in ("ok", "rejected"):
                return CallReport(verdict=verdict, attempts=attempts)
            if verdict.kind == "token_expired":
                if not needs_token or token_renewals >= 2:
                    return CallReport(
                        verdict=msgspec.structs.replace(verdict, kind="rejected"),
                        attempts=attempts,
                    )
                token_renewals += 1
                stale = self.tokens.get(self.platform, shop_id)
                await self._renew(shop_id, stale=stale)
                # A refresh is not a failure: try again at once, uncounted.
                attempts -= 1
                continue
            if attempts >= retry.max_attempts:
                break
            failures += 1
            limited = verdict.kind == "rate_limited"
            delay = backoff_delay_s(
                retry, failures, self._jitter(), rate_limited=limited
            )
            if limited:
                # Hold back every call for this shop; the next acquire waits.
                self.bucket(shop_id).pause(delay)
            else:
                await self._sleep(delay)
        return CallReport(verdict=verdict, attempts=attempts)

    async def _timed(
        self, attempt: Attempt, token: str | None, slow_after: float | None
    ) -> HttpAnswer | None:
        """:func:`_first_or_slow`, noting how long an answered attempt took."""
        sent = self.clock.monotonic()
        response = await _first_or_slow(attempt, token, slow_after)
        if response is not None:
            self._latencies.append(self.clock.monotonic() - sent)
        return response

    def _resend_after(self, floor: float | None) -> float | None:
        """When a slow first attempt is sent again: past ``floor`` (the
        policy's; None: never) and :data:`RESEND_OVER_MEDIAN` times the
        recent median answer."""
        if floor is None or len(self._latencies) < LATENCY_MIN_SAMPLES:
            return floor
        return max(floor, RESEND_OVER_MEDIAN * statistics.median(self._latencies))

    def _push_result(
        self, shop_id: str, request_id: str, report: CallReport
    ) -> PushResult:
        verdict = report.verdict
        return PushResult(
            platform=self.platform,
            shop_id=shop_id,
            request_id=request_id,
            outcome=report.outcome(),
            attempts=report.attempts,
            code=None if verdict.kind == "ok" else verdict.code,
            message="" if verdict.kind == "ok" else verdict.message,
        )

    async def _read_with(self, shop_id: str, build: Callable[[str], Attempt]) -> Any:
        """Run a read under a fresh request id and return its payload.

        Args:
            shop_id: The shop.
            build: Builds the attempt for the request id.

        Returns:
            The payload of the successful answer.

        Raises:
            PlatformCallError: If the read did not succeed.
        """
        request_id = str(uuid.uuid4())
        report = await self._call(shop_id, request_id, build(request_id), read=True)
        return self._require_ok(report)

    async def _send(
        self, shop_id: str, request_id: str, attempt: Attempt
    ) -> PushResult:
        """Run a write under the caller's request id and say how it ended.

        Args:
            shop_id: The shop.
            request_id: The stable id of the write (put on the request by
                ``attempt``).
            attempt: Sends one attempt with the current access token.

        Returns:
            The write's result.
        """
        report = await self._call(shop_id, request_id, attempt)
        return self._push_result(shop_id, request_id, report)

    def _require_ok(self, report: CallReport) -> Any:
        """The payload of a successful read, or :class:`PlatformCallError`."""
        if report.verdict.kind == "ok":
            return report.verdict.payload
        raise PlatformCallError(
            self.platform,
            report.outcome(),
            report.verdict.code,
            report.verdict.message,
            report.attempts,
        )

    # ------------------------------------------------------------------ stock

    async def _push_delta(self, change: StockDelta) -> PushResult:
        """Send one stock change (per platform)."""
        raise NotImplementedError

    async def fetch_stock(
        self, shop_id: str, platform_sku_id: str, *, product_id: str
    ) -> int:
        """The SKU's sellable stock as the platform holds it (per platform)."""
        raise NotImplementedError

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
        """Change one SKU's stock on the platform, at most once per request id.

        A delta is sent as the platform's add/reduce operation. An absolute
        number is never sent as a blind overwrite (WeChat warns that
        ``diff_type`` 3 misbehaves under concurrency, Douyin's default
        overwrites): the client reads the platform's number, refuses with code
        ``stock_changed`` when it differs from ``expected`` (compare-and-set),
        and otherwise sends the difference as a delta, so sales that land in
        between are not erased.

        Args:
            shop_id: The shop.
            platform_sku_id: The platform's SKU id.
            product_id: The platform's product (item) id of the SKU.
            delta: The change (non-zero), or None.
            absolute: The number to reach, or None.
            expected: With ``absolute``: the number the caller believes the
                platform holds; None skips the comparison.
            request_id: Stable id of this change, reused on every retry.

        Returns:
            The outcome.

        Raises:
            ValueError: Unless exactly one of ``delta`` and ``absolute`` is given,
                or if ``absolute`` is negative.
        """
        if (delta is None) == (absolute is None):
            raise ValueError("push_stock needs exactly one of delta and absolute")
        result = partial(
            PushResult, platform=self.platform, shop_id=shop_id, request_id=request_id
        )
        if absolute is not None:
            if absolute < 0:
                raise ValueError(f"absolute stock {absolute} < 0")
            try:
                current = await self.fetch_stock(
                    shop_id, platform_sku_id, product_id=product_id
                )
            except PlatformCallError as exc:
                return result(
                    outcome=exc.outcome,
                    attempts=exc.attempts,
                    code=exc.code,
                    message=f"reading stock before setting it: {exc.message}",
                )
            if expected is not None and current != expected:
                return result(
                    outcome="rejected",
                    attempts=1,
                    code="stock_changed",
                    message=(
                        f"{self.platform} holds {current} for SKU "
                        f"{platform_sku_id}, expected {expected}; not set to "
                        f"{absolute}"
                    ),
                )
            delta = absolute - current
        assert delta is not None
        if delta == 0:
            return result(
                outcome="sent",
                attempts=0,
                message="no change",
            )
        return await self._push_delta(
            StockDelta(
                shop_id=shop_id,
                platform_sku_id=platform_sku_id,
                product_id=product_id,
                delta=delta,
                request_id=request_id,
            )
        )


def http_status_verdict(response: HttpAnswer) -> Verdict | None:
    """The verdict an HTTP status alone decides (429, 5xx, 4xx), if any.

    Args:
        response: The answer.

    Returns:
        A verdict for statuses that need no body, or None for 2xx.
    """
    status = response.status_code
    if status in RATE_LIMITED_HTTP_STATUSES:
        return Verdict(kind="rate_limited", code=f"http_{status}", message="HTTP 429")
    if status >= 500:
        return Verdict(kind="retry", code=f"http_{status}", message=response.text[:200])
    if status >= 400:
        return Verdict(
            kind="rejected", code=f"http_{status}", message=response.text[:200]
        )
    return None


def decode_json(response: HttpAnswer) -> Any:
    """The JSON body, keeping big integers exact (Python ints).

    Args:
        response: The answer.

    Returns:
        The decoded body, or None when it is not JSON.
    """
    try:
        return response.json()
    except msgspec.DecodeError:
        return None


#: A platform app's credentials (``DouyinApp``, ``KuaishouApp``, ``YouzanApp``).
AppT = TypeVar("AppT")


class AppClient(ClientBase, Generic[AppT]):
    """A client that signs every call with one platform app's credentials.

    Subclasses set :attr:`default_base_url`.
    """

    default_base_url: ClassVar[str] = ""

    def __init__(
        self,
        *,
        app: AppT,
        policy: SyncPolicy,
        base_url: str | None = None,
        **options: Any,
    ) -> None:
        """Create the client.

        Args:
            app: The app's credentials.
            policy: The platform's sync policy from the policy book.
            base_url: The API root (default: the platform's; the sandbox in
                tests).
            **options: Passed to :class:`ClientBase`.
        """
        super().__init__(
            base_url=base_url or self.default_base_url, policy=policy, **options
        )
        self.app = app
