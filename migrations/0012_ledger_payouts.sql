-- Projection "ledger": one row per payout (an order's sale, or one of its
-- refunds) with its split, channel, settlement date and status. The payout
-- schedule reads the pending ones that are due; reconciliation compares the
-- platforms' statements with the sales. ``source`` is its ledger transaction.
CREATE TABLE ledger_payouts (
    platform          text NOT NULL,
    platform_order_id text NOT NULL,
    payout            text NOT NULL,
    shop_id           text NOT NULL,
    channel           text NOT NULL,
    streamer          text NOT NULL,
    source            text NOT NULL,
    amount_fen        bigint NOT NULL,
    streamer_fen      bigint NOT NULL,
    platform_fen      bigint NOT NULL,
    payment_fen       bigint NOT NULL,
    merchant_fen      bigint NOT NULL,
    status            text NOT NULL,
    settles_on        date NOT NULL,
    effective_at      timestamptz NOT NULL,
    position          bigint NOT NULL,
    PRIMARY KEY (platform, platform_order_id, payout)
);

CREATE INDEX ledger_payouts_due ON ledger_payouts (settles_on) WHERE status = 'pending';
