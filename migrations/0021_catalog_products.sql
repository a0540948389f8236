-- The product library (projection ``catalog``): one row per hub product with
-- its current content (title, price in fen, SKUs and image URLs as JSON), its
-- revision, whether it is retired, and the platform edits refused so far.
CREATE TABLE catalog_products (
    product_id       uuid PRIMARY KEY,
    product          text NOT NULL UNIQUE,
    title            text NOT NULL,
    price_fen        bigint NOT NULL,
    skus             jsonb NOT NULL DEFAULT '[]',
    images           jsonb NOT NULL DEFAULT '[]',
    revision         integer NOT NULL,
    status           text NOT NULL DEFAULT 'active',
    changed_at       timestamptz NOT NULL,
    edits_taken      bigint NOT NULL DEFAULT 0,
    edits_refused    bigint NOT NULL DEFAULT 0,
    last_refusal     text NOT NULL DEFAULT '',
    position         bigint NOT NULL,
    updated_at       timestamptz NOT NULL
);
