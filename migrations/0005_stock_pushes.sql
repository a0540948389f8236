-- Projection "stock_pushes": one row per requested stock push (a listing's
-- target quantity on a platform) and how it ended. ``hub status`` reads the
-- dead letters from here. See docs/connectors.md.
CREATE TABLE stock_pushes (
    request_id      text PRIMARY KEY,
    push_id         uuid NOT NULL,
    platform        text NOT NULL,
    shop_id         text NOT NULL,
    sku             text NOT NULL,
    platform_sku_id text NOT NULL,
    quantity        bigint NOT NULL,
    target_version  bigint NOT NULL,
    reason          text NOT NULL,
    -- requested, failed (another round follows), sent, superseded, dead_lettered
    status          text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    rounds          integer NOT NULL DEFAULT 0,
    previous        bigint,
    code            text,
    message         text NOT NULL DEFAULT '',
    requested_at    timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    position        bigint NOT NULL
);

CREATE INDEX stock_pushes_status ON stock_pushes (status, updated_at);
CREATE INDEX stock_pushes_listing ON stock_pushes (platform, shop_id, sku);
