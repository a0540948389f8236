-- Projection "stock_on_hand": stock on hand per hub SKU.
CREATE TABLE stock_on_hand (
    sku           text PRIMARY KEY,
    item_id       uuid NOT NULL,
    on_hand       bigint NOT NULL CHECK (on_hand >= 0),
    version       bigint NOT NULL,
    position      bigint NOT NULL,
    updated_at    timestamptz NOT NULL
);
