"""Kuaishou Shop's sync policy as data (docs/domain.md §4, §7).

Orders sync on a manual trigger only; stock is calibrated on a schedule twice a
day; user profiles go, encrypted, to the CRM (docs/domain.md §7: data stays in local
storage on the hub's side).
"""

from __future__ import annotations

from connectors.common import (
    OrderSyncPolicy,
    ProductSyncPolicy,
    ProfileSyncPolicy,
    RateLimitPolicy,
    RetryPolicy,
    StockSyncPolicy,
    SyncPolicy,
    TokenPolicy,
)
from connectors.kuaishou_shop.protocol import (
    ACCESS_TOKEN_TTL_S,
    RATE_LIMIT_MESSAGE,
    REFRESH_MARGIN,
    REFRESH_TOKEN_TTL_S,
)

PLATFORM = "kuaishou_shop"

POLICY = SyncPolicy(
    platform=PLATFORM,
    auth="oauth2",
    # docs/domain.md §4 "manual trigger": no pushes consumed, no schedule.
    orders=OrderSyncPolicy(mode="manual", push_enabled=False),
    # docs/domain.md §4 "calibrated on a schedule, twice a day". Our choice:
    # 03:00 and 15:00
    # Beijing time, twelve hours apart and outside evening live-stream peaks;
    # calibration writes the hub's number to Kuaishou.
    stock=StockSyncPolicy(
        direction="shop_to_channel",
        mode="scheduled_calibration",
        platform_is_source_of_truth=False,
        calibration_times=("03:00", "15:00"),
    ),
    # docs/domain.md §4 "encrypted transfer to the CRM".
    profiles=ProfileSyncPolicy(
        mode="encrypted_transfer",
        destination="crm",
        deidentify=False,
        encrypt_in_transit=True,
    ),
    # Our choice: the product list is read hourly; nothing in docs/domain.md asks more.
    products=ProductSyncPolicy(mode="poll", poll_interval_s=3600),
    # Our defaults per shop, below Kuaishou's published per-user caps (50 QPS
    # for item writes, 300 for open.order.cursor.list).
    rate_limit=RateLimitPolicy(
        rate_per_s=10.0, burst=20, error_messages=(RATE_LIMIT_MESSAGE,)
    ),
    retry=RetryPolicy(
        max_attempts=5,
        base_delay_s=1.0,
        max_delay_s=60.0,
        rate_limited_min_delay_s=1.0,
    ),
    # 48 h access tokens; every refresh rotates the refresh token, which keeps
    # the 180-day expiry of the original authorisation.
    token=TokenPolicy(
        access_ttl_s=ACCESS_TOKEN_TTL_S,
        refresh_margin_s=int(REFRESH_MARGIN.total_seconds()),
        refresh_ttl_s=REFRESH_TOKEN_TTL_S,
        rotates_refresh_token=True,
    ),
)
