"""Youzan's sync policy as data (docs/domain.md §2, §8).

docs/domain.md §4 has no Youzan column, so every value here is our choice, made to fit
docs/domain.md §2 (OAuth 2.0, custom data-mapping rules) and the reference case of §8
(product library synchronised in real time, stock alerts within 10 s).
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

PLATFORM = "youzan"

#: Planning default for the access token lifetime (7 days). Unverified: the
#: token response's ``expires`` is authoritative and is what the hub stores.
ACCESS_TOKEN_TTL_S = 7 * 24 * 3600

POLICY = SyncPolicy(
    platform=PLATFORM,
    auth="oauth2",
    # Our choice: pushes, with a 60 s poll as the fallback for lost pushes.
    orders=OrderSyncPolicy(mode="push", push_enabled=True, poll_interval_s=60),
    # Our choice: two-way and real time, so a stock alert can be raised within
    # the 10 s of docs/domain.md §8.
    stock=StockSyncPolicy(
        direction="two_way",
        mode="realtime",
        platform_is_source_of_truth=True,
        alert_within_s=10,
    ),
    # docs/domain.md §2 "custom data-mapping rules": profiles follow the merchant's map.
    profiles=ProfileSyncPolicy(
        mode="custom_mapping",
        destination="hub",
        deidentify=True,
        encrypt_in_transit=False,
    ),
    # docs/domain.md §8: the product library is synchronised in real time.
    products=ProductSyncPolicy(mode="realtime"),
    # Our defaults per shop. No published Youzan rate-limit code was found;
    # HTTP 429 is the signal, and gateway_error() surfaces gateway codes.
    rate_limit=RateLimitPolicy(rate_per_s=10.0, burst=20),
    retry=RetryPolicy(
        max_attempts=5,
        base_delay_s=1.0,
        max_delay_s=60.0,
        rate_limited_min_delay_s=1.0,
    ),
    # Our choice: refresh a day before expiry, as for Douyin's week-long token.
    token=TokenPolicy(access_ttl_s=ACCESS_TOKEN_TTL_S, refresh_margin_s=24 * 3600),
)
