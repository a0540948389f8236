"""Douyin Shop's sync policy as data (docs/domain.md §2, §4, §7).

Bound through a third-party tool with an API key (docs/domain.md §2). Orders are polled
with a 30-minute delay; stock is pushed one way, shop → channel, and the number
Douyin reports is never taken as the truth; user profiles are stored separately,
never merged.
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
from connectors.douyin_shop.protocol import (
    ACCESS_TOKEN_TTL_S,
    RATE_LIMIT_CODE,
    REFRESH_MARGIN,
    REFRESH_TOKEN_TTL_S,
)

PLATFORM = "douyin_shop"

POLICY = SyncPolicy(
    platform=PLATFORM,
    auth="api_key",
    # docs/domain.md §4 "30 minutes late": each poll reads orders at least
    # 30 minutes old.
    # Our choice: poll every 5 minutes, so an order shows within 35 minutes.
    orders=OrderSyncPolicy(
        mode="poll", push_enabled=False, poll_interval_s=300, poll_delay_s=1800
    ),
    # docs/domain.md §4 "one-way push (shop → channel)": the hub's number wins.
    stock=StockSyncPolicy(
        direction="shop_to_channel",
        mode="realtime",
        platform_is_source_of_truth=False,
    ),
    # docs/domain.md §4 "kept separately": kept apart, neither merged nor
    # de-identified
    # by the hub (Douyin already masks buyer data).
    profiles=ProfileSyncPolicy(
        mode="stored_separately",
        destination="separate_store",
        deidentify=False,
        encrypt_in_transit=False,
    ),
    # docs/domain.md §2: the binding grants product information only. Our choice: poll
    # the product list every 10 minutes.
    products=ProductSyncPolicy(mode="poll", poll_interval_s=600),
    # Our defaults per shop; Douyin answers code 60000 when its limiter refuses.
    rate_limit=RateLimitPolicy(
        rate_per_s=10.0, burst=20, error_codes=(str(RATE_LIMIT_CODE),)
    ),
    retry=RetryPolicy(
        max_attempts=5,
        base_delay_s=1.0,
        max_delay_s=60.0,
        rate_limited_min_delay_s=1.0,
    ),
    token=TokenPolicy(
        access_ttl_s=ACCESS_TOKEN_TTL_S,
        refresh_margin_s=int(REFRESH_MARGIN.total_seconds()),
        refresh_ttl_s=REFRESH_TOKEN_TTL_S,
        rotates_refresh_token=True,
    ),
)
