"""WeChat Shop's sync policy as data (docs/domain.md §2, §4, §7).

Orders and users sync in full through the WeChat open platform: orders arrive by
push in real time, with a 15-second poll as the fallback for lost pushes; stock
moves both ways; user profiles are de-identified and merged (AES-256 at rest).
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
from connectors.wechat_shop.protocol import (
    ACCESS_TOKEN_TTL_S,
    RATE_LIMIT_CODES,
    REFRESH_MARGIN,
    TOKEN_EXPIRED_CODES,
)

PLATFORM = "wechat_shop"

POLICY = SyncPolicy(
    platform=PLATFORM,
    # access_token from appid + secret (or a third-party authorizer token).
    auth="app_secret",
    # docs/domain.md §4 "real time (every 15 s)": pushes, and a 15 s poll as
    # the fallback.
    orders=OrderSyncPolicy(mode="push", push_enabled=True, poll_interval_s=15),
    # docs/domain.md §4 "two-way": a change on either side is applied to the other, so a
    # number read from WeChat may update the hub.
    stock=StockSyncPolicy(
        direction="two_way", mode="realtime", platform_is_source_of_truth=True
    ),
    # docs/domain.md §4 "de-identified merge"; §7 AES-256 protects what is kept.
    profiles=ProfileSyncPolicy(
        mode="deidentified_merge",
        destination="hub",
        deidentify=True,
        encrypt_in_transit=False,
    ),
    # Our choice: product changes follow the same push channel as orders.
    products=ProductSyncPolicy(mode="realtime"),
    # Our defaults per shop, well under WeChat's per-API minute quotas (45011);
    # 10020112 is per SKU ("stock of this SKU updated too often").
    rate_limit=RateLimitPolicy(
        rate_per_s=5.0,
        burst=10,
        error_codes=tuple(str(code) for code in sorted(RATE_LIMIT_CODES)),
    ),
    # 45011 says "retry next minute", hence the 60 s floor after a rate limit.
    retry=RetryPolicy(
        max_attempts=5,
        base_delay_s=1.0,
        max_delay_s=60.0,
        rate_limited_min_delay_s=60.0,
    ),
    token=TokenPolicy(
        access_ttl_s=ACCESS_TOKEN_TTL_S,
        refresh_margin_s=int(REFRESH_MARGIN.total_seconds()),
        expired_codes=tuple(str(code) for code in sorted(TOKEN_EXPIRED_CODES)),
    ),
)
