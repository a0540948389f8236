-- Versions of each projection's tables (blue-green rebuilds). The serving
-- version's tables are the ones readers use (schema "public"); a version being
-- built lives in a schema of its own, with its own projection_tracking, until
-- a rebuild switches it in, in one transaction. A projection never rebuilt
-- has no row here: it serves version 1.
CREATE TABLE projection_versions (
    name         text NOT NULL,
    version      integer NOT NULL CHECK (version >= 1),
    schema_name  text NOT NULL,
    status       text NOT NULL CHECK (status IN ('building', 'serving', 'retired')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    switched_at  timestamptz,
    PRIMARY KEY (name, version)
);
-- At most one version of a projection is being built at a time.
CREATE UNIQUE INDEX projection_versions_one_building
    ON projection_versions (name) WHERE status = 'building';
