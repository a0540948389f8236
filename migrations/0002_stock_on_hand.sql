-- Projection "stock_on_hand": stock on hand per hub SKU.
CREATE TABLE stock_on_hand (
    sku           text PRIMARY KEY,
    item_id       uuid NOT NULL,
    on_hand       bigint NOT NULL CHECK (on_hand >= 0),
    version       bigint NOT NULL,
    position      bigint NOT NULL,
    -- How many events this row has folded: a replayed event would show here.
    events_applied bigint NOT NULL DEFAULT 1,
    updated_at    timestamptz NOT NULL
);
