-- Ledger ids from log positions instead of sequences (projections/ledger.py:
-- a transaction's id is 4 x the position of its event + its index among the
-- event's transactions, a posting's 16 x its transaction's id + its line), so
-- a rebuild from the log writes exactly the same rows.
ALTER TABLE ledger_transactions ALTER COLUMN id DROP DEFAULT;
DROP SEQUENCE ledger_transactions_id_seq;
ALTER TABLE ledger_postings ALTER COLUMN id DROP DEFAULT;
DROP SEQUENCE ledger_postings_id_seq;
