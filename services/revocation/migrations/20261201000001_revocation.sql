-- The revocation log (services/revocation). Append-only: rows are never updated or
-- deleted. Times are Unix seconds.

-- The head of the log, one row. Every write locks it (UPDATE … / SELECT … FOR UPDATE)
-- for the rest of its transaction, so writers run one at a time: epochs are gapless
-- (a rolled-back write frees its epochs for the next writer) and commit in epoch
-- order (epoch N+1 is only assigned after N's transaction has ended), so readers
-- always see a prefix of the log.
CREATE TABLE revocation_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    epoch BIGINT NOT NULL CHECK (epoch >= 0)
);
INSERT INTO revocation_head (singleton, epoch) VALUES (TRUE, 0);

CREATE TABLE revocation_log (
    epoch BIGINT PRIMARY KEY CHECK (epoch > 0),
    -- EntryAction: 1 revoke, 2 reinstate.
    action SMALLINT NOT NULL CHECK (action IN (1, 2)),
    -- TargetKind: 1 token, 2 device, 3 subject, 4 certificate, 5 key.
    target_kind SMALLINT NOT NULL CHECK (target_kind BETWEEN 1 AND 5),
    -- The id in its canonical text form (lowercase hex).
    target_id TEXT NOT NULL CHECK (target_id ~ '^[0-9a-f]+$'),
    -- RevocationReason for revocations, ReinstateReason for reinstatements.
    reason SMALLINT NOT NULL CHECK (reason >= 0),
    revoked_before BIGINT,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL,
    CHECK ((action = 1) = (revoked_before IS NOT NULL)),
    CHECK (action = 1 OR (target_kind IN (2, 3) AND expires_at IS NULL))
);

-- A target's history, for coverage checks and reinstatement.
CREATE INDEX revocation_log_target ON revocation_log (target_kind, target_id, epoch);
