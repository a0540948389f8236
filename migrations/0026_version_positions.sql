-- A version being built keeps its log position in its row here, instead of in
-- a projection_tracking table of its own (one table, TOAST table and index
-- fewer to make and drop per version: most of a short rebuild's fixed cost).
-- A version a killed rebuild of the previous release left takes its position
-- from its own table, so a resumed rebuild goes on where it stopped.
ALTER TABLE projection_versions ADD COLUMN position bigint NOT NULL DEFAULT 0;

DO $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT name, version, schema_name FROM projection_versions
        WHERE status = 'building'
    LOOP
        IF to_regclass(format('%I.projection_tracking', v.schema_name)) IS NOT NULL THEN
            EXECUTE format(
                'UPDATE projection_versions SET position = coalesce('
                '(SELECT position FROM %I.projection_tracking WHERE name = $1), 0) '
                'WHERE name = $1 AND version = $2',
                v.schema_name
            ) USING v.name, v.version;
        END IF;
    END LOOP;
END
$$;
