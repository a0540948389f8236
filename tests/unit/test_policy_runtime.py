"""The policy book drives the runtime: a changed schedule, rate limit or stock
mode in a book file changes what the platforms' side does, with no code change.

The platforms' side is built by the composition root
(:func:`hub.bootstrap.connect_platforms`) from a hub that holds the book; no
server is started, and time is a fake clock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from domain.policy import PolicyBook, PolicyBookError
from hub.bootstrap import connect_platforms
from hub.entry.platforms import Platforms
from hub.infra.shops import ConnectorsConfig, ConnectorsConfigError, ShopConfig
from hub.service.policies import BUNDLED_POLICIES, load_policy_book
from hub.service.sync import SyncReport

# Monday 1 June 2026, 00:00 UTC (08:00 in China).
START = datetime(2026, 6, 1, tzinfo=UTC)

CREDENTIALS = {
    "wechat_shop": {
        "app_id": "wx1",
        "app_secret": "s",
        "push_token": "t",
        "encoding_aes_key": "k" * 43,
        "username": "gh_1",
    },
    "kuaishou_shop": {
        "app_id": "ks1",
        "app_secret": "s",
        "sign_secret": "g",
        "message_key": "m",
    },
}


class FakeClock:
    """The clients' clock: monotonic seconds that only move when told."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return START + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return self.offset


def book_file(tmp_path: Path, change: dict[str, Any]) -> Path:
    """The bundled book with ``change`` (``"platform.section.field": value``)."""
    data = json.loads(BUNDLED_POLICIES.read_text(encoding="utf-8"))
    for path, value in change.items():
        platform, section, field = path.split(".")
        data["profiles"][platform]["sync"][section][field] = value
    path = tmp_path / "policies.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def platforms_of(book: PolicyBook, *platforms: str, **options: Any) -> Platforms:
    """The platforms' side as the composition root builds it for ``book``."""
    config = ConnectorsConfig(
        shops=tuple(
            ShopConfig(
                platform=platform,
                shop_id=f"{platform}-1",
                channel_account="acct-1",
                credentials=CREDENTIALS[platform],
            )
            for platform in platforms
        )
    )
    # connect_platforms reads the hub's book, database URL and command rules;
    # nothing here connects to the database.
    hub: Any = SimpleNamespace(
        policy_book=book, database_url="postgresql://unused/none", rules={}
    )
    return connect_platforms(hub, config, **options)


async def polls_in_two_minutes(platforms: Platforms, now: list[datetime]) -> int:
    """How many order polls the schedule runs in two minutes of 5 s ticks."""
    polled: list[datetime] = []

    async def record(shop: ShopConfig, **_: Any) -> SyncReport:
        polled.append(now[-1])
        return SyncReport(shop=shop.key, since=now[-1], until=now[-1])

    platforms.scheduler.sync_orders = record  # type: ignore[method-assign]
    for second in range(0, 120, 5):
        now.append(START + timedelta(seconds=second))
        await platforms.scheduler.tick()
    return len(polled)


async def test_a_changed_poll_interval_in_the_book_changes_how_often_orders_are_polled(
    tmp_path: Path,
) -> None:
    now = [START]
    bundled = platforms_of(load_policy_book(), "wechat_shop", clock=lambda: now[-1])
    # The bundled 15 s fallback poll: at 0, 15, 30, ... 105 s.
    assert await polls_in_two_minutes(bundled, now) == 8

    path = book_file(tmp_path, {"wechat_shop.orders.poll_interval_s": 40})
    now = [START]
    changed = platforms_of(load_policy_book(path), "wechat_shop", clock=lambda: now[-1])
    # Every 40 s: at 0, 40 and 80 s.
    assert await polls_in_two_minutes(changed, now) == 3


async def test_a_manual_platform_in_the_book_is_never_polled(tmp_path: Path) -> None:
    path = book_file(
        tmp_path,
        {
            "wechat_shop.orders.mode": "manual",
            "wechat_shop.orders.poll_interval_s": None,
        },
    )
    now = [START]
    platforms = platforms_of(
        load_policy_book(path), "wechat_shop", clock=lambda: now[-1]
    )
    assert await polls_in_two_minutes(platforms, now) == 0


def test_a_changed_rate_limit_in_the_book_is_the_bucket_the_client_applies(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    options = {"client_options": {"clock": clock}}

    def calls_at_once(book: PolicyBook) -> tuple[int, float]:
        platforms = platforms_of(book, "wechat_shop", **options)
        (shop,) = platforms.connectors.shops()
        bucket = platforms.connectors.client(shop).bucket(shop.shop_id)  # type: ignore[attr-defined]
        taken = 0
        while (wait := bucket.reserve()) == 0.0:
            taken += 1
        return taken, wait

    # The bundled book: bursts of 10 at 5 calls a second.
    assert calls_at_once(load_policy_book()) == (10, pytest.approx(0.2))
    path = book_file(
        tmp_path,
        {"wechat_shop.rate_limit.burst": 3, "wechat_shop.rate_limit.rate_per_s": 0.5},
    )
    assert calls_at_once(load_policy_book(path)) == (3, pytest.approx(2.0))


def test_a_changed_retry_policy_in_the_book_is_what_the_clients_and_pushes_use(
    tmp_path: Path,
) -> None:
    path = book_file(
        tmp_path,
        {"wechat_shop.retry.max_attempts": 2, "wechat_shop.retry.max_delay_s": 5.0},
    )
    book = load_policy_book(path)
    platforms = platforms_of(book, "wechat_shop")
    (shop,) = platforms.connectors.shops()
    retry = platforms.connectors.client(shop).policy.retry  # type: ignore[attr-defined]
    assert (retry.max_attempts, retry.max_delay_s) == (2, 5.0)
    assert platforms.outbound.policies["wechat_shop"].retry == retry


async def test_a_changed_stock_mode_in_the_book_moves_a_platform_to_calibrations(
    tmp_path: Path,
) -> None:
    # Kuaishou calibrates at 03:00 and 15:00 Beijing time; WeChat is pushed on
    # every change. The book moves WeChat to a calibration at 09:30.
    path = book_file(
        tmp_path,
        {
            "wechat_shop.stock.mode": "scheduled_calibration",
            "wechat_shop.stock.calibration_times": ["09:30"],
        },
    )
    morning = (START, START + timedelta(hours=2))  # 08:00 to 10:00 in China
    afternoon = (START + timedelta(hours=6), START + timedelta(hours=8))

    bundled = platforms_of(load_policy_book(), "wechat_shop", "kuaishou_shop")
    assert bundled.scheduler.due_calibrations(*morning) == []
    assert bundled.scheduler.due_calibrations(*afternoon) == ["kuaishou_shop"]
    assert bundled.outbound.policies["wechat_shop"].stock.pushed_on_change

    changed = platforms_of(load_policy_book(path), "wechat_shop", "kuaishou_shop")
    assert changed.scheduler.due_calibrations(*morning) == ["wechat_shop"]
    assert changed.scheduler.due_calibrations(*afternoon) == ["kuaishou_shop"]
    assert not changed.outbound.policies["wechat_shop"].stock.pushed_on_change


def test_the_webhooks_take_in_pushes_only_where_the_book_says(tmp_path: Path) -> None:
    bundled = platforms_of(load_policy_book(), "wechat_shop")
    assert bundled.policies["wechat_shop"].orders.push_enabled
    path = book_file(tmp_path, {"wechat_shop.orders.mode": "poll"})
    changed = platforms_of(load_policy_book(path), "wechat_shop")
    assert not changed.policies["wechat_shop"].orders.push_enabled


def test_a_shop_whose_platform_has_no_sync_policy_is_refused(tmp_path: Path) -> None:
    data = json.loads(BUNDLED_POLICIES.read_text(encoding="utf-8"))
    del data["profiles"]["kuaishou_shop"]["sync"]
    path = tmp_path / "policies.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(
        ConnectorsConfigError,
        match=r"kuaishou_shop/kuaishou_shop-1\): the policy book has no sync policy "
        r"for kuaishou_shop \(\$\.profiles\.kuaishou_shop\.sync",
    ):
        platforms_of(load_policy_book(path), "wechat_shop", "kuaishou_shop")


def test_an_unknown_calibration_time_zone_is_refused(tmp_path: Path) -> None:
    path = book_file(tmp_path, {"kuaishou_shop.stock.timezone": "Asia/Atlantis"})
    with pytest.raises(
        PolicyBookError,
        match=r"\$\.profiles\.kuaishou_shop\.sync\.stock\.timezone 'Asia/Atlantis' "
        "is not a known IANA time zone",
    ):
        load_policy_book(path)
