-- The outbound dispatcher's ledger per listing (hub.outbound._Ledger): what
-- the platform showed when the hub took the listing over, the platform's
-- known sales then, and what the hub has written since. Kept so a restarted
-- hub goes on from it instead of reading the platform again (a read counts
-- sales the hub has not heard of yet, which would later be subtracted twice).
-- ``pending_*`` is a write that may have landed (sent, or its outcome
-- unknown): saved before the write is sent, so after a crash it is sent again
-- under its own request id first. See docs/connectors.md.
CREATE TABLE stock_ledgers (
    platform         text NOT NULL,
    shop_id          text NOT NULL,
    sku              text NOT NULL,
    baseline         bigint NOT NULL,
    sold_at_baseline bigint NOT NULL,
    written          bigint NOT NULL,
    pending_request  text,
    pending_delta    bigint,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, shop_id, sku)
);
