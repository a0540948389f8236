-- Idempotency keys of commands (hub.service.commit): a command's request_id
-- and the versions of its aggregate that it stored, recorded in the
-- transaction that stores its events. A retried request_id is recognised
-- from here however many commands came in between; the running hub deletes
-- keys older than its window (seven days, see the README).
CREATE TABLE command_requests (
    aggregate_id  uuid NOT NULL,
    request_id    text NOT NULL,
    first_version bigint NOT NULL,
    last_version  bigint NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_id, request_id)
);
CREATE INDEX command_requests_recorded_at ON command_requests (recorded_at);
