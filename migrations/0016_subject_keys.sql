-- One key per data subject (a buyer), sealed under the hub's master key
-- (AES-256-GCM, the subject and version as associated data). Every personal
-- field of an event or a read model is sealed with its subject's key;
-- deleting a subject's rows erases that person from every copy of the log
-- (crypto-shredding). A rotation adds a version: new data is sealed with the
-- newest, older data still opens with its own. See docs/privacy.md.
CREATE TABLE subject_keys (
    subject_id text NOT NULL,
    version    integer NOT NULL,
    sealed     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_id, version)
);
