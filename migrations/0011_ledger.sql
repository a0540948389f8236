-- Projection "ledger": the commission ledger, double entry (docs/ledger.md).
-- A transaction is a set of postings keyed by its source (``sale:…``,
-- ``refund:…``, ``settle:…``) so an event applied twice adds nothing. A
-- posting's ``amount_fen`` is a debit when positive and a credit when
-- negative; a transaction's postings add up to zero, checked when the database
-- transaction commits (deferred constraint triggers below), so a transaction
-- that does not balance cannot be committed. Postings are never updated or
-- deleted (triggers); a transaction changes only from ``pending`` to
-- ``posted`` or ``voided``, with the times of that change. Only a rebuild
-- empties the tables (TRUNCATE, which fires no row trigger).
CREATE TABLE ledger_accounts (
    name     text PRIMARY KEY,
    kind     text NOT NULL,
    position bigint NOT NULL
);

CREATE TABLE ledger_transactions (
    id                  bigserial PRIMARY KEY,
    source              text NOT NULL UNIQUE,
    kind                text NOT NULL,
    platform            text NOT NULL,
    platform_order_id   text NOT NULL,
    status              text NOT NULL
        CHECK (status IN ('pending', 'posted', 'voided')),
    effective_at        timestamptz NOT NULL,
    recorded_at         timestamptz NOT NULL,
    posted_effective_at timestamptz,
    posted_recorded_at  timestamptz,
    voided_effective_at timestamptz,
    voided_recorded_at  timestamptz,
    position            bigint NOT NULL
);

CREATE INDEX ledger_transactions_order
    ON ledger_transactions (platform, platform_order_id);
CREATE INDEX ledger_transactions_effective ON ledger_transactions (effective_at);

-- No foreign key to ledger_transactions: a rebuild truncates one table at a
-- time. The balance trigger checks that each posting's transaction balances.
CREATE TABLE ledger_postings (
    id             bigserial PRIMARY KEY,
    transaction_id bigint NOT NULL,
    account        text NOT NULL,
    amount_fen     bigint NOT NULL CHECK (amount_fen <> 0)
);

CREATE INDEX ledger_postings_transaction ON ledger_postings (transaction_id);
CREATE INDEX ledger_postings_account ON ledger_postings (account);

CREATE FUNCTION ledger_check_balanced(tx bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
    lines integer;
    found_source text;
BEGIN
    SELECT source INTO found_source FROM ledger_transactions WHERE id = tx;
    IF found_source IS NULL THEN
        RAISE EXCEPTION 'ledger posting of transaction % that does not exist', tx
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT coalesce(sum(amount_fen), 0), count(*) INTO total, lines
        FROM ledger_postings WHERE transaction_id = tx;
    IF total <> 0 OR lines < 2 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: its % postings add '
            'up to % fen (postings must add up to zero)', found_source, lines, total
            USING ERRCODE = 'check_violation';
    END IF;
END $$;

CREATE FUNCTION ledger_transaction_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_check_balanced(NEW.id);
    RETURN NULL;
END $$;

CREATE FUNCTION ledger_posting_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_check_balanced(NEW.transaction_id);
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_transactions_balance
    AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balanced();

CREATE CONSTRAINT TRIGGER ledger_postings_balance
    AFTER INSERT ON ledger_postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_posting_balanced();

CREATE FUNCTION ledger_postings_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger postings cannot be %d: a correction is a reversing '
        'transaction', lower(TG_OP)
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER ledger_postings_no_change
    BEFORE UPDATE OR DELETE ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION ledger_postings_immutable();

CREATE FUNCTION ledger_transactions_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger transaction % cannot be deleted: a correction is a '
            'reversing transaction', OLD.source
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status <> 'pending' OR NEW.status = 'pending'
        OR (NEW.id, NEW.source, NEW.kind, NEW.platform, NEW.platform_order_id,
            NEW.effective_at, NEW.recorded_at, NEW.position)
        IS DISTINCT FROM
           (OLD.id, OLD.source, OLD.kind, OLD.platform, OLD.platform_order_id,
            OLD.effective_at, OLD.recorded_at, OLD.position)
    THEN
        RAISE EXCEPTION 'ledger transaction % (%): only a pending transaction may '
            'change, and only its status to posted or voided', OLD.source, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER ledger_transactions_no_change
    BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_transactions_guard();
