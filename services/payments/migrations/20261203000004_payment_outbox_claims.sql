-- A worker claims the rows of its batch until claimed_until (a lease), so several
-- replicas do not send one key at once; a dead worker's claim lapses.
ALTER TABLE payment_outbox
    ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0 CHECK (claimed_until >= 0);
