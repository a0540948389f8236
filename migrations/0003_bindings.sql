-- Projection "bindings": one row per binding (channel account × platform × shop),
-- its status, review deadline, data scope and why it last failed. ``state`` is
-- the binding's folded state (msgspec JSON of domain.binding.Binding), so the
-- projection applies the domain's own ``mutate`` and never re-implements it.
CREATE TABLE bindings (
    id               uuid PRIMARY KEY,
    channel_account  text NOT NULL,
    platform         text NOT NULL,
    shop_id          text NOT NULL,
    status           text NOT NULL,
    requested_on     date NOT NULL,
    review_days_max  integer,
    review_due_on    date,
    data_scope       text,
    failure_reasons  text[] NOT NULL DEFAULT '{}',
    state            jsonb NOT NULL,
    version          bigint NOT NULL,
    position         bigint NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE INDEX bindings_platform_status ON bindings (platform, status);
