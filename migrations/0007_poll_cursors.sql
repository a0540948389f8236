-- Where each shop's order polls got to (the end of the last window pulled
-- completely), so a restarted hub resumes its polls there instead of an hour
-- back: orders updated while it was down are still pulled. Written by
-- hub.sync.PollCursors after each complete pull. See docs/connectors.md.
CREATE TABLE poll_cursors (
    shop         text PRIMARY KEY,  -- platform/shop_id
    pulled_until timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
