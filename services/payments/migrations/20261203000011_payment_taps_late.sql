-- Taps an offline gate took and the verifier passed on late (RecordOfflineTap): a gate's
-- void of such a tap, or of a trip one re-priced, is refused (security review finding 6).
ALTER TABLE payment_taps ADD COLUMN late BOOLEAN NOT NULL DEFAULT false;
