-- The identity service's schema: subjects, binding challenges, devices, certificates.
--
-- Personal data: none in clear. A document number is kept only as an HMAC-SHA256
-- under a server key (document_hash), a name only in its masked display form.
--
-- Enumerations are stored as the numbers of the proto enums (common.proto and
-- identity.proto declare them stable in stored data):
--   document_type   1 RESIDENT_ID_CARD, 2 PASSPORT, 3 HK_MACAO_PERMIT,
--                   4 TAIWAN_PERMIT, 5 FOREIGN_PERMANENT_RESIDENT_ID
--   status          1 PENDING, 2 ACTIVE, 3 SUSPENDED, 4 REJECTED
--   real_name_check 1 MATCHED, 2 MISMATCHED, 3 NOT_FOUND, 4 UNAVAILABLE
--   fare_class      1 ADULT, 2 STUDENT, 3 SENIOR, 4 DISABLED
--   assurance_level 1 SELF_ASSERTED, 2 DOCUMENT_CHECKED, 3 REAL_NAME_VERIFIED, 4 IN_PERSON
--   device status   1 ACTIVE, 2 UNBOUND
-- A new enum value needs a migration widening the CHECK constraints.
--
-- Times are written by the service's clock (as microseconds since the epoch, through
-- the two functions below), so the in-memory and PostgreSQL stores agree exactly.

CREATE FUNCTION identity_ts(micros BIGINT) RETURNS TIMESTAMPTZ
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    AS $$ SELECT TIMESTAMPTZ 'epoch' + micros * INTERVAL '1 microsecond' $$;

CREATE FUNCTION identity_us(ts TIMESTAMPTZ) RETURNS BIGINT
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT (EXTRACT(EPOCH FROM ts) * 1000000)::BIGINT $$;

CREATE TABLE subjects (
    -- 16 random bytes; its 32-char hex form is the API's subject_id.
    subject_id               BYTEA PRIMARY KEY CHECK (octet_length(subject_id) = 16),
    document_type            SMALLINT NOT NULL CHECK (document_type BETWEEN 1 AND 5),
    document_hash            BYTEA NOT NULL CHECK (octet_length(document_hash) = 32),
    masked_name              TEXT NOT NULL,
    status                   SMALLINT NOT NULL CHECK (status BETWEEN 1 AND 4),
    -- Why the status last changed (operator's words, no personal data).
    status_reason            TEXT NOT NULL DEFAULT '',
    real_name_check          SMALLINT NOT NULL CHECK (real_name_check BETWEEN 1 AND 4),
    fare_class               SMALLINT NOT NULL CHECK (fare_class BETWEEN 1 AND 4),
    medical_insurance_linked BOOLEAN NOT NULL,
    assurance_level          SMALLINT NOT NULL CHECK (assurance_level BETWEEN 1 AND 4),
    created_at               TIMESTAMPTZ NOT NULL,
    updated_at               TIMESTAMPTZ NOT NULL
);

-- At most one enrolled (ACTIVE or SUSPENDED) subject per document: concurrent
-- enrolments of one document cannot both win. PENDING and REJECTED subjects are
-- attempts, not enrolments, and may repeat.
CREATE UNIQUE INDEX subjects_enrolled_document ON subjects (document_hash)
    WHERE status IN (2, 3);
CREATE INDEX subjects_document ON subjects (document_hash);

CREATE TABLE binding_challenges (
    challenge  BYTEA PRIMARY KEY CHECK (octet_length(challenge) = 32),
    subject_id BYTEA NOT NULL REFERENCES subjects (subject_id),
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX binding_challenges_subject ON binding_challenges (subject_id, created_at);
CREATE INDEX binding_challenges_expiry ON binding_challenges (expires_at);

CREATE TABLE devices (
    -- 16 random bytes, never reused.
    device_id     BYTEA PRIMARY KEY CHECK (octet_length(device_id) = 16),
    subject_id    BYTEA NOT NULL REFERENCES subjects (subject_id),
    -- Uncompressed SEC1 P-256 point.
    public_key    BYTEA NOT NULL CHECK (octet_length(public_key) = 65),
    status        SMALLINT NOT NULL CHECK (status IN (1, 2)),
    label         TEXT NOT NULL,
    bound_at      TIMESTAMPTZ NOT NULL,
    unbound_at    TIMESTAMPTZ,
    unbind_reason TEXT,
    -- A key binds once, ever: a revoked or unbound key cannot come back under a new
    -- device id (revocations name device ids).
    CONSTRAINT devices_public_key_once UNIQUE (public_key),
    CONSTRAINT devices_unbound_at CHECK ((status = 2) = (unbound_at IS NOT NULL))
);
CREATE INDEX devices_subject ON devices (subject_id, bound_at);

CREATE TABLE device_certificates (
    -- 16 random bytes chosen by the issuer; what offline gates revoke.
    serial      BYTEA PRIMARY KEY CHECK (octet_length(serial) = 16),
    device_id   BYTEA NOT NULL REFERENCES devices (device_id),
    -- Copied from the device (devices never change subject), for per-subject lists.
    subject_id  BYTEA NOT NULL REFERENCES subjects (subject_id),
    not_before  TIMESTAMPTZ NOT NULL,
    not_after   TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    CHECK (not_after > not_before)
);
CREATE INDEX device_certificates_device ON device_certificates (device_id, not_after);
CREATE INDEX device_certificates_subject ON device_certificates (subject_id, not_after);
