-- Each shop's synchronised revision of each product (projection ``catalog``):
-- the revision the shop's platform holds and the platform's id of the product.
-- A shop whose edit was refused holds revision 0 until the hub writes it back.
CREATE TABLE catalog_shops (
    product              text NOT NULL,
    platform             text NOT NULL,
    shop_id              text NOT NULL,
    revision             integer NOT NULL,
    platform_product_id  text NOT NULL,
    position             bigint NOT NULL,
    updated_at           timestamptz NOT NULL,
    PRIMARY KEY (product, platform, shop_id)
);
