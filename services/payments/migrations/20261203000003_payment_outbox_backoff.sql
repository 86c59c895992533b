-- Backoff between sends of an outbox row that got no answer: rows that keep failing
-- give way to newer ones (the worker takes rows due by next_attempt_at, then seq).
ALTER TABLE payment_outbox
    ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0 CHECK (next_attempt_at >= 0);
CREATE INDEX payment_outbox_due ON payment_outbox (next_attempt_at, seq) WHERE status IN (1, 2);
