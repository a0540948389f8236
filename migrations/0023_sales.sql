-- The live-session dashboard (projection ``sales``, projections/sales.py).
--
-- ``sales``: one row per channel account, live session ('' = no session),
-- platform, streamer and minute of placement, with the orders placed in it and
-- what they became: paid (and the amount paid, GMV), cancelled, refunded (and
-- the amount refunded). Every figure of an order counts in the row of the
-- minute it was placed in, whenever the payment or refund came.
CREATE TABLE sales (
    channel_account  text NOT NULL,
    session_id       text NOT NULL,
    platform         text NOT NULL,
    streamer         text NOT NULL,
    minute           timestamptz NOT NULL,
    orders           integer NOT NULL DEFAULT 0,
    paid_orders      integer NOT NULL DEFAULT 0,
    cancelled_orders integer NOT NULL DEFAULT 0,
    refunds          integer NOT NULL DEFAULT 0,
    gmv_fen          bigint NOT NULL DEFAULT 0,
    refunded_fen     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_account, session_id, platform, streamer, minute)
);

-- Views of a channel's live sessions (source 'live', source_id the session id)
-- and videos (source 'video'), per minute they were counted in.
CREATE TABLE sales_views (
    channel_account text NOT NULL,
    source          text NOT NULL,
    source_id       text NOT NULL,
    minute          timestamptz NOT NULL,
    views           bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_account, source, source_id, minute)
);

-- Each binding's commission terms (its agreement and live sessions), folded
-- with the domain's own rules: which session and streamer an order falls under.
CREATE TABLE sales_terms (
    id    uuid PRIMARY KEY,
    state jsonb NOT NULL
);

-- Where each order's figures are counted (its row of ``sales``), so its
-- payment, cancellation and refunds land in the same row as its placement.
CREATE TABLE sales_orders (
    id              uuid PRIMARY KEY,
    channel_account text NOT NULL,
    session_id      text NOT NULL,
    platform        text NOT NULL,
    streamer        text NOT NULL,
    minute          timestamptz NOT NULL
);
