-- Projection "inventory": every stock state per hub SKU (see docs/inventory.md).
-- available = on_hand - committed - reserved - safety; it is negative only
-- when a loss reported from outside left the hub owing more than it holds.
CREATE TABLE inventory (
    sku                  text PRIMARY KEY,
    item_id              uuid NOT NULL,
    on_hand              bigint NOT NULL CHECK (on_hand >= 0),
    committed            bigint NOT NULL CHECK (committed >= 0),
    reserved             bigint NOT NULL CHECK (reserved >= 0),
    safety               bigint NOT NULL CHECK (safety >= 0),
    available            bigint NOT NULL,
    safety_stock         bigint NOT NULL DEFAULT 0,
    low_stock_threshold  bigint,
    low_stock_alert      boolean NOT NULL DEFAULT false,
    version              bigint NOT NULL,
    position             bigint NOT NULL,
    -- How many events this row has folded: a replayed event would show here.
    events_applied       bigint NOT NULL,
    updated_at           timestamptz NOT NULL
);

CREATE INDEX inventory_low_stock ON inventory (sku) WHERE low_stock_alert;

-- Projection "orders": one row per platform order. ``state`` is the order's
-- folded state (msgspec JSON of domain.order.Order), so the projection applies
-- the domain's own ``mutate``; the columns are read off it.
CREATE TABLE orders (
    id                 uuid PRIMARY KEY,
    platform           text NOT NULL,
    platform_order_id  text NOT NULL,
    shop_id            text NOT NULL,
    channel_account    text NOT NULL,
    status             text NOT NULL,
    total_fen          bigint NOT NULL,
    paid_fen           bigint,
    refunded_fen       bigint NOT NULL DEFAULT 0,
    -- Stock commands a stock item refused, as action:hub_sku (oversold orders).
    stock_refusals     text[] NOT NULL DEFAULT '{}',
    placed_at          timestamptz NOT NULL,
    state              jsonb NOT NULL,
    version            bigint NOT NULL,
    position           bigint NOT NULL,
    updated_at         timestamptz NOT NULL,
    UNIQUE (platform, platform_order_id)
);

CREATE INDEX orders_platform_status ON orders (platform, status);

-- Projection "stock_drift": the last drift beyond tolerance each platform shop
-- reported for a hub SKU (drift = reported - expected).
CREATE TABLE stock_drift (
    sku          text NOT NULL,
    platform     text NOT NULL,
    shop_id      text NOT NULL,
    reported     bigint NOT NULL,
    expected     bigint NOT NULL,
    drift        bigint NOT NULL,
    tolerance    bigint NOT NULL,
    detected_at  timestamptz NOT NULL,
    position     bigint NOT NULL,
    PRIMARY KEY (sku, platform, shop_id)
);

-- "stock_on_hand" now folds every stock event (orders consume stock, a
-- compare-and-set moves it): replay it from the start of the log.
TRUNCATE stock_on_hand;
UPDATE projection_tracking SET position = 0, updated_at = now()
WHERE name = 'stock_on_hand';
