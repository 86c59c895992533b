-- The government-service pseudonym (issue 10): HMAC-SHA256 of the normalised resident
-- ID number under the government key, computed once at enrolment of a resident-ID
-- document (the only time the service sees the number) and stored with the id of the
-- key that made it, so that the verifier can return it at a government service hall
-- counter. NULL for other documents and for subjects enrolled before this column
-- (the service keeps no number to compute theirs from). Value and key id go together.
ALTER TABLE subjects
    ADD COLUMN government_pseudonym TEXT CHECK (government_pseudonym ~ '^[0-9a-f]{64}$'),
    ADD COLUMN government_key_id    SMALLINT CHECK (government_key_id >= 1),
    ADD CONSTRAINT subjects_government_pseudonym_keyed
        CHECK ((government_pseudonym IS NULL) = (government_key_id IS NULL));
