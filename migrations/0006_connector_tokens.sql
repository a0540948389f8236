-- The platforms' access and refresh tokens, one row per shop, so a restarted
-- hub keeps the merchants' authorisations (OAuth shops need the merchant to
-- consent again otherwise, and a refresh token may be single-use). ``state`` is
-- the msgspec-encoded connectors.common.TokenState, sealed with AES-GCM under
-- HUB_TOKEN_KEY when that is set (docs/connectors.md). Written by
-- hub.tokens.PostgresTokenStore before a new token is used.
CREATE TABLE connector_tokens (
    platform   text NOT NULL,
    shop_id    text NOT NULL,
    sealed     boolean NOT NULL,
    state      bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, shop_id)
);
