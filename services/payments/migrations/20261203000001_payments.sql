-- The payments service's schema: links, trips, taps, charges, the double-entry
-- ledger and the outbox. Keyed by the transit account (identity's transit pseudonym,
-- 16 bytes) only: no subject ids, names or document numbers. Times are Unix seconds,
-- money whole fen. Numbers of enumerations are those of src/ (proto numbers where the
-- proto has them).

-- One row per rider: the row every tap of the rider locks (SELECT ... FOR UPDATE), so
-- that a rider's taps take turns.
CREATE TABLE payment_riders (
    transit_account BYTEA PRIMARY KEY CHECK (octet_length(transit_account) = 16)
);

CREATE TABLE payment_links (
    link_id              BYTEA PRIMARY KEY CHECK (octet_length(link_id) = 16),
    transit_account      BYTEA NOT NULL REFERENCES payment_riders,
    provider             SMALLINT NOT NULL CHECK (provider BETWEEN 1 AND 4),
    provider_token       TEXT NOT NULL CHECK (length(provider_token) BETWEEN 8 AND 256),
    last4                TEXT NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    consent_text_version TEXT NOT NULL CHECK (length(consent_text_version) BETWEEN 1 AND 32),
    consented_at         BIGINT NOT NULL CHECK (consented_at >= 0),
    linked_at            BIGINT NOT NULL CHECK (linked_at >= 0),
    unlinked_at          BIGINT CHECK (unlinked_at >= linked_at)
);
-- At most one active link per rider.
CREATE UNIQUE INDEX payment_links_one_active ON payment_links (transit_account)
    WHERE unlinked_at IS NULL;

CREATE TABLE payment_trips (
    trip_id          BYTEA PRIMARY KEY CHECK (octet_length(trip_id) = 16),
    transit_account  BYTEA NOT NULL REFERENCES payment_riders,
    mode             SMALLINT NOT NULL CHECK (mode IN (1, 2)),
    status           SMALLINT NOT NULL CHECK (status BETWEEN 1 AND 4),
    fare_class       SMALLINT NOT NULL CHECK (fare_class BETWEEN 1 AND 4),
    started_at       BIGINT NOT NULL CHECK (started_at >= 0),
    entry_gate       TEXT,
    entry_place      TEXT,
    entry_scan       TEXT,
    entry_at         BIGINT,
    exit_gate        TEXT,
    exit_place       TEXT,
    exit_scan        TEXT,
    exit_at          BIGINT,
    fare_operator    TEXT,
    fare_distance_m  BIGINT,
    fare_base        BIGINT CHECK (fare_base >= 0),
    fare_concession  BIGINT CHECK (fare_concession >= 0),
    fare_transfer    BIGINT CHECK (fare_transfer >= 0),
    fare_capped      BIGINT CHECK (fare_capped >= 0),
    fare_due         BIGINT CHECK (fare_due >= 0),
    CHECK ((entry_gate IS NULL) = (entry_at IS NULL)),
    CHECK ((exit_gate IS NULL) = (exit_at IS NULL)),
    CHECK (entry_gate IS NOT NULL OR exit_gate IS NOT NULL),
    CHECK ((fare_due IS NULL) = (fare_operator IS NULL))
);
-- At most one open trip per rider.
CREATE UNIQUE INDEX payment_trips_one_open ON payment_trips (transit_account)
    WHERE status = 1;
CREATE INDEX payment_trips_by_rider ON payment_trips (transit_account, started_at DESC, trip_id DESC);
CREATE INDEX payment_trips_open_since ON payment_trips (started_at) WHERE status = 1;

-- Every tap taken, under its key (gate_id, scan_id): a key is taken once.
CREATE TABLE payment_taps (
    tap_key BYTEA PRIMARY KEY CHECK (octet_length(tap_key) = 16),
    trip_id BYTEA NOT NULL REFERENCES payment_trips,
    side    SMALLINT NOT NULL CHECK (side IN (1, 2)),
    at      BIGINT NOT NULL CHECK (at >= 0),
    voided  BOOLEAN NOT NULL DEFAULT false
);

-- Charges, keyed by their idempotency key (derived from the trip).
CREATE TABLE payment_charges (
    charge_key      BYTEA PRIMARY KEY CHECK (octet_length(charge_key) = 16),
    -- The idempotency key the provider receives: charge_key, or a repayment's key.
    provider_key    BYTEA NOT NULL CHECK (octet_length(provider_key) = 16),
    trip_id         BYTEA NOT NULL REFERENCES payment_trips,
    transit_account BYTEA NOT NULL REFERENCES payment_riders,
    link_id         BYTEA REFERENCES payment_links,
    provider        SMALLINT CHECK (provider BETWEEN 1 AND 4),
    operator        TEXT NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    status          SMALLINT NOT NULL CHECK (status BETWEEN 2 AND 6),
    decline_code    TEXT,
    created_at      BIGINT NOT NULL CHECK (created_at >= 0),
    settled_at      BIGINT,
    CHECK ((link_id IS NULL) = (provider IS NULL))
);
-- At most one live (not cancelled) charge per trip: the database's own guard
-- against a double charge.
CREATE UNIQUE INDEX payment_charges_one_live_per_trip ON payment_charges (trip_id)
    WHERE status <> 6;
CREATE INDEX payment_charges_by_rider ON payment_charges (transit_account, created_at DESC);

-- The ledger: two rows per posting, signed fen, summing to zero per posting.
CREATE TABLE payment_ledger (
    posting_id   BYTEA NOT NULL CHECK (octet_length(posting_id) = 16),
    seq          SMALLINT NOT NULL CHECK (seq IN (0, 1)),
    kind         SMALLINT NOT NULL CHECK (kind IN (1, 2, 3)),
    charge_key   BYTEA NOT NULL,
    account_kind SMALLINT NOT NULL CHECK (account_kind BETWEEN 1 AND 3),
    account      TEXT NOT NULL,
    amount       BIGINT NOT NULL CHECK (amount <> 0),
    at           BIGINT NOT NULL CHECK (at >= 0),
    PRIMARY KEY (posting_id, seq)
);
CREATE INDEX payment_ledger_by_charge ON payment_ledger (charge_key);

-- The outbox: one row per charge to send, written with the charge.
CREATE TABLE payment_outbox (
    charge_key BYTEA PRIMARY KEY REFERENCES payment_charges,
    status     SMALLINT NOT NULL CHECK (status BETWEEN 1 AND 4),
    created_at BIGINT NOT NULL CHECK (created_at >= 0),
    seq        BIGSERIAL NOT NULL
);
CREATE INDEX payment_outbox_pending ON payment_outbox (seq) WHERE status = 1;
