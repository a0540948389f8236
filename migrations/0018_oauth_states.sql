-- The state parameter of each OAuth 2.0 consent the hub started (hub bindings
-- connect, POST /bindings/{platform}/connect). Only a hash of the state is
-- kept: the merchant's browser carries the state itself. The callback
-- (GET /oauth/{platform}/callback) takes a row once, before its expiry, and
-- only for the platform it was made for; a forged, expired or replayed state
-- finds no row and the code is never exchanged. See docs/bindings.md.
CREATE TABLE oauth_states (
    state_hash      text PRIMARY KEY,
    platform        text NOT NULL,
    shop_id         text NOT NULL,
    channel_account text NOT NULL,
    redirect_uri    text NOT NULL,
    mapped_data     text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);
