-- The hash chain over the log (security review, finding 6; citypass_revocation::chain).
--
-- Every row gets the log's chain hash through it, and the head row the chain hash
-- through the head epoch:
--
--   chain(0) = 32 zero bytes
--   chain(N) = SHA-256('citypass/v1/revocation-chain' || 0x00 || chain(N-1) || entry(N))
--
-- entry(N) is the entry's canonical binary encoding (crates/revocation, module codec):
-- epoch u64, target_kind u8, action u8, reason u8, flags u8 (bit 0: expires_at set),
-- the target's raw bytes (16, or 8 for a key), revoked_before u64 (revocations only),
-- expires_at u64 (if set), created_at u64; integers big-endian. Writers (the service,
-- under the head row's lock) chain new rows onto the head and move both together.
--
-- Rows written before this migration are chained here, in SQL, over that same encoding
-- (a known answer in crates/revocation/src/chain.rs and a test in
-- tests/log_contract.rs check that the two agree). A log with a gap cannot be chained:
-- the NOT NULL below then fails and the service refuses to start on it.

ALTER TABLE revocation_log ADD COLUMN chain BYTEA;
ALTER TABLE revocation_head ADD COLUMN chain BYTEA NOT NULL
    DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
    CHECK (octet_length(chain) = 32);

WITH RECURSIVE chained (epoch, chain) AS (
    SELECT 0::bigint,
           '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
    UNION ALL
    SELECT l.epoch,
           sha256(
               convert_to('citypass/v1/revocation-chain', 'UTF8') || '\x00'::bytea
               || c.chain
               || int8send(l.epoch)
               || set_byte('\x00'::bytea, 0, l.target_kind)
               || set_byte('\x00'::bytea, 0, l.action)
               || set_byte('\x00'::bytea, 0, l.reason)
               || set_byte('\x00'::bytea, 0, CASE WHEN l.expires_at IS NULL THEN 0 ELSE 1 END)
               || decode(l.target_id, 'hex')
               || COALESCE(int8send(l.revoked_before), ''::bytea)
               || COALESCE(int8send(l.expires_at), ''::bytea)
               || int8send(l.created_at)
           )
    FROM chained c
    JOIN revocation_log l ON l.epoch = c.epoch + 1
)
UPDATE revocation_log l SET chain = c.chain FROM chained c WHERE l.epoch = c.epoch;

UPDATE revocation_head h SET chain = l.chain FROM revocation_log l WHERE l.epoch = h.epoch;

ALTER TABLE revocation_log
    ALTER COLUMN chain SET NOT NULL,
    ADD CONSTRAINT revocation_log_chain_len CHECK (octet_length(chain) = 32);
