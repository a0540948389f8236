-- Snapshots of aggregates with long histories: derived data, never the truth.
-- One row per aggregate, its folded state at "version" (msgspec JSON of the
-- state type named by "kind", with a fingerprint of that type's fields: a
-- snapshot taken under another shape is ignored). Deleting rows changes
-- nothing but how long a load takes.
CREATE TABLE aggregate_snapshots (
    aggregate_id  uuid PRIMARY KEY,
    version       bigint NOT NULL CHECK (version >= 1),
    kind          text NOT NULL,
    state         bytea NOT NULL,
    taken_at      timestamptz NOT NULL DEFAULT now()
);
