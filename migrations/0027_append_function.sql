-- The hub's group commit stores a batch of events (and its commands' request
-- ids) with one call of this function: one statement, in a transaction of its
-- own, so one round trip where the library's recorder sends six (a connection
-- check, BEGIN, the lock, NOTIFY, the insert, COMMIT).
--
-- It keeps the recorder's rules: the log table is locked in EXCLUSIVE mode
-- (readers go on; writers take turns), so positions are taken in the order
-- transactions commit and a reader never passes over a position that is
-- filled later; the log's channel is notified at commit; a version stored
-- before, or a request id recorded before, fails the whole call (unique
-- violation) and stores nothing.
CREATE OR REPLACE FUNCTION hub_append(
    ids uuid[],
    versions bigint[],
    topics text[],
    states bytea[],
    request_aggregates uuid[],
    request_ids text[],
    request_firsts bigint[],
    request_lasts bigint[]
) RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    SET LOCAL lock_timeout = '30s';
    LOCK TABLE hub_events IN EXCLUSIVE MODE;
    NOTIFY hub_events;
    IF cardinality(request_ids) > 0 THEN
        INSERT INTO command_requests
            (aggregate_id, request_id, first_version, last_version)
        SELECT * FROM unnest(
            request_aggregates, request_ids, request_firsts, request_lasts
        );
    END IF;
    RETURN QUERY
    WITH stored AS (
        INSERT INTO hub_events (originator_id, originator_version, topic, state)
        SELECT * FROM unnest(ids, versions, topics, states)
        RETURNING notification_id
    )
    SELECT notification_id FROM stored ORDER BY notification_id;
END
$$;
