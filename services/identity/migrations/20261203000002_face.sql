-- Face enrolment with consent (issue 14): separate consents per purpose, sealed face
-- templates, the verifier's feed, the processing record, and request nonces of the
-- citizens' device-signed face calls.
--
-- Enumerations, as the numbers of the proto enums (identity.proto):
--   purpose  1 COUNTER_CHECK, 2 FACE_PASS
--   channel  1 APP, 2 COUNTER
--
-- Biometric data is only ever in face_templates.sealed (AES-256-GCM under a template
-- key named by key_id, the subject id as associated data): never in clear, never in
-- another table. Withdrawal deletes the row.

-- The birth date of a resident ID number (YYYYMMDD), kept at enrolment for the rule
-- that a child under 14 needs a guardian's consent; NULL for other documents and for
-- subjects enrolled before this column (their age is checked in person at a counter).
ALTER TABLE subjects
    ADD COLUMN born_on INTEGER CHECK (born_on BETWEEN 19000101 AND 99991231);

-- One live consent per subject and purpose; withdrawing deletes it (the audit row
-- stays).
CREATE TABLE face_consents (
    subject_id          BYTEA NOT NULL REFERENCES subjects (subject_id),
    purpose             SMALLINT NOT NULL CHECK (purpose BETWEEN 1 AND 2),
    text_version        TEXT NOT NULL CHECK (text_version ~ '^[A-Za-z0-9._-]{1,64}$'),
    -- FACE_PASS: station and venue ids; COUNTER_CHECK: none.
    places              TEXT[] NOT NULL,
    guardian_subject_id BYTEA REFERENCES subjects (subject_id),
    channel             SMALLINT NOT NULL CHECK (channel BETWEEN 1 AND 2),
    granted_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (subject_id, purpose),
    CHECK ((purpose = 2) = (cardinality(places) > 0))
);

-- At most one template per subject, sealed.
CREATE TABLE face_templates (
    subject_id  BYTEA PRIMARY KEY REFERENCES subjects (subject_id),
    key_id      SMALLINT NOT NULL CHECK (key_id >= 1),
    sealed      BYTEA NOT NULL,
    channel     SMALLINT NOT NULL CHECK (channel BETWEEN 1 AND 2),
    -- The bound device that enrolled it from the app; NULL for a counter's.
    device_id   BYTEA CHECK (octet_length(device_id) = 16),
    enrolled_at TIMESTAMPTZ NOT NULL,
    CHECK ((channel = 1) = (device_id IS NOT NULL))
);

-- The verifier's feed: one row per subject whose template or consents ever changed,
-- at its latest change. Face writes take one advisory lock, so sequence numbers
-- become visible in order and a reader never skips one.
CREATE SEQUENCE face_feed_sequence;
CREATE TABLE face_feed (
    subject_id BYTEA PRIMARY KEY REFERENCES subjects (subject_id),
    sequence   BIGINT NOT NULL UNIQUE,
    changed_at TIMESTAMPTZ NOT NULL
);

-- The processing record (PIPL art. 55; 《人脸识别技术应用安全管理办法》): who did what,
-- when, for which purpose. No biometric data.
CREATE TABLE face_audit (
    id         BIGSERIAL PRIMARY KEY,
    subject_id BYTEA NOT NULL REFERENCES subjects (subject_id),
    action     TEXT NOT NULL CHECK (action IN ('consent', 'withdraw', 'enrol', 'delete')),
    purpose    SMALLINT CHECK (purpose BETWEEN 1 AND 2),
    channel    SMALLINT NOT NULL CHECK (channel BETWEEN 1 AND 2),
    -- `device:<id>` or `operator:<name>`.
    actor      TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX face_audit_subject ON face_audit (subject_id, id);

-- Nonces of device-signed face calls, first use wins (keys are hashes, no ids).
CREATE TABLE request_nonces (
    nonce_key  TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX request_nonces_expiry ON request_nonces (expires_at);
