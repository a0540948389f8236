-- Marketing (projection ``marketing``): per campaign, the coupons claimed and
-- earned by fission, the shares credited and refused, the redemptions and the
-- discounts given in fen (the shop's reduction and the coupons apart); per
-- shop, the followers enrolled as members.
CREATE TABLE marketing_campaigns (
    campaign_id      uuid PRIMARY KEY,
    channel_account  text NOT NULL,
    platform         text NOT NULL,
    shop_id          text NOT NULL,
    campaign         text NOT NULL,
    title            text NOT NULL DEFAULT '',
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'published',
    coupons_claimed  bigint NOT NULL DEFAULT 0,
    fission_rewards  bigint NOT NULL DEFAULT 0,
    shares_credited  bigint NOT NULL DEFAULT 0,
    shares_refused   bigint NOT NULL DEFAULT 0,
    coupons_redeemed bigint NOT NULL DEFAULT 0,
    sales_fen        bigint NOT NULL DEFAULT 0,
    reduction_fen    bigint NOT NULL DEFAULT 0,
    coupon_fen       bigint NOT NULL DEFAULT 0,
    position         bigint NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE TABLE marketing_members (
    platform      text NOT NULL,
    shop_id       text NOT NULL,
    members       bigint NOT NULL DEFAULT 0,
    with_profile  bigint NOT NULL DEFAULT 0,
    position      bigint NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (platform, shop_id)
);
