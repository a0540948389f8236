-- Position of each projection in the log. A projection updates its row in the
-- same transaction as its tables, so a crash never applies an event twice or
-- skips one.
CREATE TABLE projection_tracking (
    name        text PRIMARY KEY,
    position    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
