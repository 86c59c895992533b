-- Entries carry the "revoked as compromised" bit instead of the operator's reason
-- (security review, finding 8; citypass_revocation::reason). The reason stays in the
-- `reason` column, for audit; the byte after the action in each entry's canonical
-- encoding, which the chain hash covers, is now
--
--   compromised u8 = 1 for a revocation whose reason is DEVICE_COMPROMISED (2) or
--                    KEY_COMPROMISED (3), else 0 (and 0 for every reinstatement)
--
-- so the hash of every row changes. The chain is recomputed here over the new encoding
-- (otherwise exactly as in 20261202000001_revocation_chain.sql, whose known answer in
-- crates/revocation/src/chain.rs and test in tests/log_contract.rs check the SQL and
-- the Rust encodings agree), and the head row follows its row.

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
               || set_byte('\x00'::bytea, 0,
                           CASE WHEN l.action = 1 AND l.reason IN (2, 3) THEN 1 ELSE 0 END)
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
