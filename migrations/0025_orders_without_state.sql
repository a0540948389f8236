-- The orders read model no longer keeps each order's folded state: an order
-- with events before a batch is folded again from its events in the log
-- (writing, parsing and reading back the jsonb state with every row was half
-- of the projection's database time in a rebuild).
ALTER TABLE orders DROP COLUMN state;
