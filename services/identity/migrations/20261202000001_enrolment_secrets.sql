-- Each subject's current enrolment secret: the authority to bind a device without an
-- already bound one (see services/identity/src/enrolment.rs). Only the SHA-256 of the
-- secret is kept; a binding that uses it deletes the row in its own transaction.
CREATE TABLE enrolment_secrets (
    subject_id  BYTEA PRIMARY KEY REFERENCES subjects (subject_id),
    secret_hash BYTEA NOT NULL CHECK (octet_length(secret_hash) = 32),
    expires_at  TIMESTAMPTZ NOT NULL
);
