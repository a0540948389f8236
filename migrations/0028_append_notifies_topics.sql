-- hub_append (0027) as before, but its notification names the topics it
-- stored (comma-separated, each once): a process's one LISTEN
-- (eventlog.listen) then wakes only the runners that read one of them, where
-- every commit woke every runner for a step that, for most read models, found
-- nothing of theirs. A notification without a payload (another writer, or a
-- batch of too many topics for NOTIFY's 8,000 bytes) still wakes every runner.
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
DECLARE
    payload text;
BEGIN
    SET LOCAL lock_timeout = '30s';
    LOCK TABLE hub_events IN EXCLUSIVE MODE;
    -- The batch's stored topics, so a listener wakes only the runners that
    -- read one of them; none (a payload too long) wakes every runner.
    SELECT string_agg(DISTINCT t, ',') INTO payload FROM unnest(topics) AS t;
    IF payload IS NULL OR length(payload) > 7900 THEN
        payload := '';
    END IF;
    PERFORM pg_notify('hub_events', payload);
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
