"""The shared client machinery: token bucket and retry loop (no servers)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from connectors.common import TokenState
from connectors.http import HttpAnswer, HttpClient
from connectors.transport import (
    LATENCY_MIN_SAMPLES,
    RESEND_OVER_MEDIAN,
    ClientBase,
    TokenBucket,
    Verdict,
)
from hub.service.policies import load_policy_book, sync_policies

POLICY = sync_policies(load_policy_book())["wechat_shop"]


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return self.offset


async def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=2.0, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.5)
    clock.offset += 0.5
    assert bucket.reserve() == 0.0


async def test_ready_takes_no_token_and_a_reserve_gives_way_to_others() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=2.0, burst=3, clock=clock)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.offset += seconds

    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.0]
    await bucket.ready(sleep)  # one token left: ready at once, none taken
    assert slept == []
    await bucket.ready(sleep, reserve=1)  # waits until a second one is there
    assert slept == [pytest.approx(0.5)]
    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.0]


def test_has_tells_whether_calls_could_be_made_now_and_takes_none() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=2.0, burst=3, clock=clock)
    assert bucket.has(3) and not bucket.has(4)
    assert bucket.reserve() == 0.0
    assert bucket.has(2) and not bucket.has(3)
    assert bucket.has(2)  # asking took nothing
    clock.offset += 0.5
    assert bucket.has(3)
    bucket.pause(1.0)
    assert not bucket.has(1)


async def test_paused_bucket_holds_every_caller_and_a_fake_clock_cannot_livelock() -> (
    None
):
    clock = Clock()
    clock.offset = 1234.567  # large offset: float sums land a hair short
    bucket = TokenBucket(rate_per_s=5.0, burst=10, clock=clock)
    bucket.pause(60.1)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.offset += seconds

    await bucket.acquire(sleep)
    assert sum(slept) >= 60.1 - 1e-6
    assert len(slept) <= 2


class Scripted(ClientBase):
    platform = "wechat_shop"
    refresh_margin = timedelta(minutes=5)

    def __init__(self, verdicts: list[Verdict], clock: Clock) -> None:
        self.slept: list[float] = []

        async def sleep(seconds: float) -> None:
            self.slept.append(seconds)
            clock.offset += seconds

        super().__init__(
            base_url="http://127.0.0.1:9",
            policy=POLICY,
            clock=clock,
            sleep=sleep,
            jitter=lambda: 0.5,
            http=HttpClient(timeout=10.0),
        )
        self.verdicts = verdicts
        self.refreshes = 0
        self.tokens.put(
            "wechat_shop",
            "s",
            TokenState(
                access_token="t0", access_expires_at=clock.now() + timedelta(hours=2)
            ),
        )

    async def _refresh_token(
        self, shop_id: str, state: TokenState | None
    ) -> TokenState:
        self.refreshes += 1
        return TokenState(
            access_token=f"t{self.refreshes}",
            access_expires_at=self.clock.now() + timedelta(hours=2),
        )

    def _classify(self, response: HttpAnswer) -> Verdict:
        return self.verdicts.pop(0)


async def _run(client: Scripted) -> tuple[str, int, list[str | None]]:
    tokens: list[str | None] = []

    async def attempt(token: str | None) -> HttpAnswer:
        tokens.append(token)
        return HttpAnswer(200, b"", {})

    report = await client._call("s", "rid", attempt)
    await client.http.aclose()
    return report.outcome(), report.attempts, tokens


async def test_token_expiry_refreshes_once_and_the_call_goes_on() -> None:
    client = Scripted(
        [Verdict(kind="token_expired", code="42001"), Verdict(kind="ok")], Clock()
    )
    outcome, attempts, tokens = await _run(client)
    assert (outcome, attempts, tokens) == ("sent", 1, ["t0", "t1"])
    assert client.slept == []


async def test_failures_back_off_exponentially_then_give_up() -> None:
    client = Scripted([Verdict(kind="retry", code="http_503")] * 5, Clock())
    outcome, attempts, _ = await _run(client)
    assert (outcome, attempts) == ("failed", 5)
    # base 1 s, doubling, times the jitter 0.5
    assert client.slept == [0.5, 1.0, 2.0, 4.0]


async def test_rate_limits_wait_at_least_the_policy_floor() -> None:
    client = Scripted(
        [
            Verdict(kind="rate_limited", code="45011"),
            Verdict(kind="rejected", code="x"),
        ],
        Clock(),
    )
    outcome, attempts, _ = await _run(client)
    assert (outcome, attempts) == ("rejected", 2)
    assert sum(client.slept) >= POLICY.retry.rate_limited_min_delay_s - 1e-6


async def test_a_slow_attempt_is_resent_only_when_slow_against_recent_answers() -> None:
    """Under load every answer is late: the resend waits for RESEND_OVER_MEDIAN
    times the recent median answer, never less than the policy's floor."""
    clock = Clock()
    client = Scripted([Verdict(kind="ok")] * LATENCY_MIN_SAMPLES, clock)
    floor = 0.025
    assert client._resend_after(floor) == floor  # too few answers yet

    async def answered_in_100_ms(token: str | None) -> HttpAnswer:
        clock.offset += 0.1
        return HttpAnswer(200, b"", {})

    for _ in range(LATENCY_MIN_SAMPLES):
        await client._call("s", "rid", answered_in_100_ms, read=True)
    await client.http.aclose()
    assert client._resend_after(floor) == pytest.approx(RESEND_OVER_MEDIAN * 0.1)
    assert client._resend_after(1.0) == 1.0
    assert client._resend_after(None) is None


async def test_every_slow_attempt_is_resent_each_after_twice_the_wait() -> None:
    """An answer lost twice in a row costs two short waits, not the client's
    timeout: the resent attempt is abandoned in turn, after twice as long."""
    client = Scripted([Verdict(kind="ok")], Clock())
    client.policy = msgspec.structs.replace(
        client.policy,
        retry=msgspec.structs.replace(client.policy.retry, resend_slow_after_s=0.01),
    )
    waits: list[float] = []
    never = asyncio.Event()

    async def attempt(token: str | None) -> HttpAnswer:
        started = asyncio.get_running_loop().time()
        if len(waits) < 2:
            try:
                await never.wait()  # an answer that never comes
            finally:
                waits.append(asyncio.get_running_loop().time() - started)
        return HttpAnswer(200, b"", {})

    async with asyncio.timeout(5):
        report = await client._call("s", "rid", attempt, read=True)
    await client.http.aclose()
    assert (report.outcome(), report.attempts) == ("sent", 3)
    assert waits[0] >= 0.01 and waits[1] >= 0.02
    assert client.slept == []  # a resend is not a failure: no backoff
