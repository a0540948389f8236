-- Pushes naming an order the platform says does not exist (a definitive
-- answer: re-sending the push cannot change it). The webhook acknowledges such
-- a push instead of answering 503 forever, and records it here, once per
-- (platform, shop, order), counting how often it arrived. Written by
-- hub.infra.webhook_letters.WebhookDeadLetters. See docs/connectors.md.
CREATE TABLE webhook_dead_letters (
    platform    text NOT NULL,
    shop_id     text NOT NULL,
    order_id    text NOT NULL,
    code        text NOT NULL,
    message     text NOT NULL,
    pushes      integer NOT NULL DEFAULT 1,
    first_at    timestamptz NOT NULL DEFAULT now(),
    last_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, shop_id, order_id)
);
