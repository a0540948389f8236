-- Customer profiles (projection ``customer_profiles``): one row per data
-- subject, folded from the sealed buyers of OrderPlaced. ``sealed`` holds the
-- newest sealed value of each personal field (never plain text); the subject
-- key opens it, and after an erasure nothing does.
CREATE TABLE customer_profiles (
    subject_id     text PRIMARY KEY,
    mode           text NOT NULL,
    accounts       text[] NOT NULL DEFAULT '{}',
    key_version    integer NOT NULL,
    sealed         jsonb NOT NULL DEFAULT '{}',
    crm_ref        text NOT NULL DEFAULT '',
    orders         integer NOT NULL DEFAULT 0,
    first_order_at timestamptz,
    last_order_at  timestamptz
);

-- Profiles sent to the merchant's CRM (mode encrypted_transfer_to_crm): the
-- hub keeps the reference and the delivery record. ``payload`` is the profile
-- sealed under the subject's key while it waits to be sent, emptied once the
-- CRM has it; after ``max attempts`` the delivery is dead-lettered.
CREATE TABLE crm_deliveries (
    crm_ref           text PRIMARY KEY,
    subject_id        text NOT NULL,
    platform          text NOT NULL,
    shop_id           text NOT NULL,
    platform_order_id text NOT NULL,
    status            text NOT NULL DEFAULT 'pending',
    attempts          integer NOT NULL DEFAULT 0,
    last_error        text NOT NULL DEFAULT '',
    key_version       integer NOT NULL,
    payload           bytea,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX crm_deliveries_open ON crm_deliveries (status) WHERE status = 'pending';
