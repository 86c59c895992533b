//! The PostgreSQL store: the system of record in deployments.
//!
//! Queries are checked at run time (`sqlx::query` + `bind`, no `query!` macros), so
//! building needs no database. The schema lives in `migrations/` and is applied at
//! start-up ([`PostgresStore::new`]); sqlx takes an advisory lock, so replicas starting
//! together migrate once.
//!
//! How the store's guarantees hold with many replicas:
//! - one enrolled subject per document: enrolments of one document take turns on
//!   advisory locks of its hashes (one per configured document key) and look for an
//!   enrolled row under any of them; a partial UNIQUE index
//!   (`subjects_enrolled_document`) stays as the `ON CONFLICT` backstop;
//! - the device limit: binding locks the subject row (`SELECT … FOR UPDATE`) before
//!   counting its devices, so bindings of one subject run one at a time;
//! - single-use challenges: `DELETE … RETURNING` inside the binding transaction; a
//!   concurrent binding with the same challenge waits for the row and then finds it
//!   gone, and a failed binding rolls back and leaves the challenge usable;
//! - a key binds once: UNIQUE (`devices_public_key_once`);
//! - no certificate recorded for an unbound device: recording holds the device row
//!   `FOR SHARE`, which an unbinding `UPDATE` has to wait for.

use citypass_proto::v1::{
    AssuranceLevel, DeviceStatus, DocumentType, FareClass, RealNameCheckOutcome, SubjectStatus,
};
use futures::future::BoxFuture;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};

use super::{
    ACTION_BIND, ACTION_CHALLENGE, MAX_OUTSTANDING_CHALLENGES, SUPERSEDED_REASON, Store,
    not_active, status_name,
};
use crate::document::DocumentHash;
use crate::enrolment::{Authority, EnrolmentGrant};
use crate::error::Error;
use crate::hmac_keys::KeyId;
use crate::ids::{CertSerial, DeviceId, SubjectId};
use crate::model::{
    Attributes, AttributesUpdate, Certificate, CertificateOwner, CertificatePage, Challenge,
    Device, DevicePage, DeviceView, NewCertificate, NewDevice, NewSubject, StoredPseudonym,
    Subject, Timestamp,
};

/// Expired challenges removed per new challenge (spreads the clean-up over calls).
/// The schema, in version order: every file of `migrations/` (a test checks the list
/// against the folder).
pub const MIGRATIONS: citypass_postgres::Embedded = citypass_postgres::embed_migrations![
    "20261129000001_identity.sql",
    "20261202000001_enrolment_secrets.sql",
    "20261202000002_hmac_key_ids.sql",
];

const EXPIRED_CHALLENGE_BATCH: i64 = 100;

const SUBJECT_COLUMNS: &str = "subject_id, document_type, masked_name, status, \
    real_name_check, fare_class, medical_insurance_linked, assurance_level, \
    identity_us(created_at) AS created_at, identity_us(updated_at) AS updated_at";

const DEVICE_COLUMNS: &str = "device_id, subject_id, public_key, status, label, \
    identity_us(bound_at) AS bound_at, identity_us(unbound_at) AS unbound_at";

const CERTIFICATE_COLUMNS: &str = "serial, device_id, subject_id, \
    identity_us(not_before) AS not_before, identity_us(not_after) AS not_after";

/// The PostgreSQL store. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` with up to `max_connections` and applies the migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, Error> {
        Self::new(citypass_postgres::connect(url, max_connections).await?).await
    }

    /// Uses an existing pool and applies the migrations (the schema is embedded at
    /// compile time).
    pub async fn new(pool: PgPool) -> Result<Self, Error> {
        citypass_postgres::migrate(&pool, MIGRATIONS).await?;
        Ok(PostgresStore { pool })
    }

    /// The connection pool (for health checks and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

// --- decoding rows ---------------------------------------------------------------------

fn enum_value<T: TryFrom<i32>>(row: &PgRow, column: &'static str) -> Result<T, Error> {
    let value: i16 = row.try_get(column)?;
    T::try_from(i32::from(value)).map_err(|_| Error::Corrupt(column))
}

fn subject_id(row: &PgRow, column: &'static str) -> Result<SubjectId, Error> {
    let bytes: Vec<u8> = row.try_get(column)?;
    SubjectId::from_slice(&bytes).map_err(|_| Error::Corrupt(column))
}

fn device_id(row: &PgRow, column: &'static str) -> Result<DeviceId, Error> {
    let bytes: Vec<u8> = row.try_get(column)?;
    DeviceId::from_slice(&bytes).map_err(|_| Error::Corrupt(column))
}

fn timestamp(row: &PgRow, column: &'static str) -> Result<Timestamp, Error> {
    Ok(Timestamp::from_micros(row.try_get(column)?))
}

fn attributes(row: &PgRow) -> Result<Attributes, Error> {
    Ok(Attributes {
        fare_class: enum_value::<FareClass>(row, "fare_class")?,
        medical_insurance_linked: row.try_get("medical_insurance_linked")?,
        assurance_level: enum_value::<AssuranceLevel>(row, "assurance_level")?,
    })
}

fn subject_from(row: &PgRow) -> Result<Subject, Error> {
    Ok(Subject {
        id: subject_id(row, "subject_id")?,
        masked_name: row.try_get("masked_name")?,
        document_type: enum_value::<DocumentType>(row, "document_type")?,
        status: enum_value::<SubjectStatus>(row, "status")?,
        attributes: attributes(row)?,
        real_name_check: enum_value::<RealNameCheckOutcome>(row, "real_name_check")?,
        created_at: timestamp(row, "created_at")?,
        updated_at: timestamp(row, "updated_at")?,
    })
}

fn device_from(row: &PgRow) -> Result<Device, Error> {
    let unbound_at: Option<i64> = row.try_get("unbound_at")?;
    Ok(Device {
        id: device_id(row, "device_id")?,
        subject_id: subject_id(row, "subject_id")?,
        public_key: row.try_get("public_key")?,
        status: enum_value::<DeviceStatus>(row, "status")?,
        label: row.try_get("label")?,
        bound_at: timestamp(row, "bound_at")?,
        unbound_at: unbound_at.map(Timestamp::from_micros),
    })
}

fn certificate_from(row: &PgRow) -> Result<Certificate, Error> {
    let serial: Vec<u8> = row.try_get("serial")?;
    Ok(Certificate {
        serial: CertSerial::from_slice(&serial).map_err(|_| Error::Corrupt("serial"))?,
        device_id: device_id(row, "device_id")?,
        subject_id: subject_id(row, "subject_id")?,
        not_before: timestamp(row, "not_before")?,
        not_after: timestamp(row, "not_after")?,
    })
}

fn db_enum(value: impl Into<i32>) -> i16 {
    // Proto enum numbers here are all small; the CHECK constraints catch anything else.
    i16::try_from(value.into()).unwrap_or(-1)
}

// --- queries shared by several operations -----------------------------------------------

async fn select_subject(
    conn: &mut PgConnection,
    id: SubjectId,
    lock: &str,
) -> Result<Subject, Error> {
    let sql = format!("SELECT {SUBJECT_COLUMNS} FROM subjects WHERE subject_id = $1 {lock}");
    let row = sqlx::query(&sql)
        .bind(id.as_bytes().as_slice())
        .fetch_optional(conn)
        .await?
        .ok_or(Error::SubjectNotFound)?;
    subject_from(&row)
}

async fn subject_exists(pool: &PgPool, id: SubjectId) -> Result<bool, Error> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM subjects WHERE subject_id = $1)")
            .bind(id.as_bytes().as_slice())
            .fetch_one(pool)
            .await?,
    )
}

impl Store for PostgresStore {
    fn find_enrolled_subject<'a>(
        &'a self,
        document: &'a [DocumentHash],
    ) -> BoxFuture<'a, Result<Option<Subject>, Error>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {SUBJECT_COLUMNS} FROM subjects \
                 WHERE document_hash = ANY($1) AND status IN (2, 3) LIMIT 1"
            );
            let row = sqlx::query(&sql)
                .bind(hash_array(document))
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(subject_from).transpose()
        })
    }

    fn insert_subject<'a>(
        &'a self,
        new: NewSubject,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Subject, Error>> {
        Box::pin(async move {
            let hashes = new.all_document_hashes();
            let mut tx = self.pool.begin().await?;
            // Enrolments of one document take turns, whichever key each replica hashes
            // under (during a rotation two replicas may have different current keys,
            // and the unique index sees only one hash): a transaction-scoped advisory
            // lock per hash, taken in one order.
            let mut locks: Vec<i64> = hashes.iter().map(advisory_key).collect();
            locks.sort_unstable();
            locks.dedup();
            for lock in locks {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(lock)
                    .execute(&mut *tx)
                    .await?;
            }
            let enrolled: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM subjects \
                 WHERE document_hash = ANY($1) AND status IN (2, 3))",
            )
            .bind(hash_array(&hashes))
            .fetch_one(&mut *tx)
            .await?;
            let enrolling = matches!(new.status, SubjectStatus::Active | SubjectStatus::Suspended);
            if enrolled && enrolling {
                return Err(Error::AlreadyEnrolled);
            }
            let inserted = sqlx::query(
                "INSERT INTO subjects (subject_id, document_type, document_hash, masked_name, \
                     status, real_name_check, fare_class, medical_insurance_linked, \
                     assurance_level, created_at, updated_at, document_key_id, \
                     transit_account, pseudonym_key_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, identity_ts($10), identity_ts($10), \
                     $11, $12, $13) \
                 ON CONFLICT (document_hash) WHERE status IN (2, 3) DO NOTHING \
                 RETURNING subject_id",
            )
            .bind(new.id.as_bytes().as_slice())
            .bind(db_enum(new.document_type))
            .bind(new.document_hash.hash.0.as_slice())
            .bind(&new.masked_name)
            .bind(db_enum(new.status))
            .bind(db_enum(new.real_name_check))
            .bind(db_enum(new.attributes.fare_class))
            .bind(new.attributes.medical_insurance_linked)
            .bind(db_enum(new.attributes.assurance_level))
            .bind(now.as_micros())
            .bind(new.document_hash.key_id.stored())
            .bind(&new.transit_account.value)
            .bind(new.transit_account.key_id.stored())
            .fetch_optional(&mut *tx)
            .await?;
            if inserted.is_none() {
                return Err(Error::AlreadyEnrolled);
            }
            if new.status == SubjectStatus::Active {
                sqlx::query(
                    "UPDATE subjects SET status = 4, status_reason = $3, updated_at = identity_ts($4) \
                     WHERE document_hash = ANY($1) AND status = 1 AND subject_id <> $2",
                )
                .bind(hash_array(&hashes))
                .bind(new.id.as_bytes().as_slice())
                .bind(SUPERSEDED_REASON)
                .bind(now.as_micros())
                .execute(&mut *tx)
                .await?;
            }
            upsert_enrolment(&mut tx, new.id, &new.enrolment).await?;
            tx.commit().await?;
            Ok(new.into_subject(now))
        })
    }

    fn grant_enrolment<'a>(
        &'a self,
        subject_id: SubjectId,
        grant: EnrolmentGrant,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            select_subject(&mut tx, subject_id, "FOR UPDATE").await?;
            upsert_enrolment(&mut tx, subject_id, &grant).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn get_subject<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Subject, Error>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            select_subject(&mut conn, id, "").await
        })
    }

    fn get_transit_account<'a>(
        &'a self,
        id: SubjectId,
    ) -> BoxFuture<'a, Result<StoredPseudonym, Error>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT transit_account, pseudonym_key_id FROM subjects WHERE subject_id = $1",
            )
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::SubjectNotFound)?;
            let key_id: i16 = row.try_get("pseudonym_key_id")?;
            Ok(StoredPseudonym {
                key_id: KeyId::from_stored(key_id).ok_or(Error::Corrupt("pseudonym_key_id"))?,
                value: row.try_get("transit_account")?,
            })
        })
    }

    fn update_attributes<'a>(
        &'a self,
        id: SubjectId,
        update: AttributesUpdate,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Subject, Error>> {
        Box::pin(async move {
            let sql = format!(
                "UPDATE subjects SET \
                     fare_class = COALESCE($2, fare_class), \
                     medical_insurance_linked = COALESCE($3, medical_insurance_linked), \
                     assurance_level = COALESCE($4, assurance_level), \
                     updated_at = identity_ts($5) \
                 WHERE subject_id = $1 RETURNING {SUBJECT_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(id.as_bytes().as_slice())
                .bind(update.fare_class.map(db_enum))
                .bind(update.medical_insurance_linked)
                .bind(update.assurance_level.map(db_enum))
                .bind(now.as_micros())
                .fetch_optional(&self.pool)
                .await?
                .ok_or(Error::SubjectNotFound)?;
            subject_from(&row)
        })
    }

    fn set_subject_status<'a>(
        &'a self,
        id: SubjectId,
        status: SubjectStatus,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Subject, Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let current = select_subject(&mut tx, id, "FOR UPDATE").await?;
            if !matches!(
                current.status,
                SubjectStatus::Active | SubjectStatus::Suspended
            ) {
                return Err(Error::StatusFrozen(status_name(current.status)));
            }
            if current.status == status {
                return Ok(current);
            }
            let sql = format!(
                "UPDATE subjects SET status = $2, status_reason = $3, updated_at = identity_ts($4) \
                 WHERE subject_id = $1 RETURNING {SUBJECT_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(id.as_bytes().as_slice())
                .bind(db_enum(status))
                .bind(reason)
                .bind(now.as_micros())
                .fetch_one(&mut *tx)
                .await?;
            let subject = subject_from(&row)?;
            tx.commit().await?;
            Ok(subject)
        })
    }

    fn create_challenge<'a>(
        &'a self,
        challenge: Challenge,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let subject = challenge.subject_id.as_bytes().as_slice();
            let mut tx = self.pool.begin().await?;
            let status = select_subject(&mut tx, challenge.subject_id, "FOR SHARE")
                .await?
                .status;
            if status != SubjectStatus::Active {
                return Err(not_active(status, ACTION_CHALLENGE));
            }
            sqlx::query(
                "DELETE FROM binding_challenges WHERE challenge IN ( \
                     SELECT challenge FROM binding_challenges \
                     WHERE expires_at <= identity_ts($1) \
                     LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(now.as_micros())
            .bind(EXPIRED_CHALLENGE_BATCH)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO binding_challenges (challenge, subject_id, created_at, expires_at) \
                 VALUES ($1, $2, identity_ts($3), identity_ts($4))",
            )
            .bind(challenge.bytes.as_slice())
            .bind(subject)
            .bind(now.as_micros())
            .bind(challenge.expires_at.as_micros())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM binding_challenges WHERE challenge IN ( \
                     SELECT challenge FROM binding_challenges WHERE subject_id = $1 \
                     ORDER BY created_at DESC, challenge DESC OFFSET $2)",
            )
            .bind(subject)
            .bind(i64::try_from(MAX_OUTSTANDING_CHALLENGES).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn bind_device<'a>(
        &'a self,
        new: NewDevice,
        max_devices: u32,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Device, Error>> {
        Box::pin(async move {
            let subject = new.subject_id.as_bytes().as_slice();
            // Any early return drops `tx`, which rolls everything back.
            let mut tx = self.pool.begin().await?;
            let status = select_subject(&mut tx, new.subject_id, "FOR UPDATE")
                .await?
                .status;
            if status != SubjectStatus::Active {
                return Err(not_active(status, ACTION_BIND));
            }
            let expires_at: Option<i64> = sqlx::query_scalar(
                "DELETE FROM binding_challenges WHERE challenge = $1 AND subject_id = $2 \
                 RETURNING identity_us(expires_at)",
            )
            .bind(new.challenge.as_slice())
            .bind(subject)
            .fetch_optional(&mut *tx)
            .await?;
            match expires_at {
                None => return Err(Error::ChallengeUnknown),
                Some(t) if Timestamp::from_micros(t) <= now => return Err(Error::ChallengeExpired),
                Some(_) => {}
            }
            let authorised = match new.authority {
                Authority::EnrolmentSecret(hash) => {
                    sqlx::query(
                        "DELETE FROM enrolment_secrets \
                     WHERE subject_id = $1 AND secret_hash = $2 AND expires_at > identity_ts($3)",
                    )
                    .bind(subject)
                    .bind(hash.0.as_slice())
                    .bind(now.as_micros())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1
                }
                Authority::BoundDevice(id) => sqlx::query_scalar::<_, i32>(
                    "SELECT 1 FROM devices WHERE device_id = $1 AND subject_id = $2 AND status = 1 \
                     FOR SHARE",
                )
                .bind(id.as_bytes().as_slice())
                .bind(subject)
                .fetch_optional(&mut *tx)
                .await?
                .is_some(),
            };
            if !authorised {
                return Err(Error::BindingNotAuthorized);
            }
            let active: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM devices WHERE subject_id = $1 AND status = 1",
            )
            .bind(subject)
            .fetch_one(&mut *tx)
            .await?;
            if active >= i64::from(max_devices) {
                return Err(Error::DeviceLimit { limit: max_devices });
            }
            let sql = format!(
                "INSERT INTO devices (device_id, subject_id, public_key, status, label, bound_at) \
                 VALUES ($1, $2, $3, 1, $4, identity_ts($5)) \
                 ON CONFLICT ON CONSTRAINT devices_public_key_once DO NOTHING \
                 RETURNING {DEVICE_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(new.id.as_bytes().as_slice())
                .bind(subject)
                .bind(&new.public_key)
                .bind(&new.label)
                .bind(now.as_micros())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(Error::KeyAlreadyBound)?;
            let device = device_from(&row)?;
            tx.commit().await?;
            Ok(device)
        })
    }

    fn unbind_device<'a>(
        &'a self,
        subject_id: SubjectId,
        device_id: DeviceId,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Device, Error>> {
        Box::pin(async move {
            let sql = format!(
                "UPDATE devices SET status = 2, unbound_at = identity_ts($4), unbind_reason = $3 \
                 WHERE device_id = $1 AND subject_id = $2 AND status = 1 \
                 RETURNING {DEVICE_COLUMNS}"
            );
            let updated = sqlx::query(&sql)
                .bind(device_id.as_bytes().as_slice())
                .bind(subject_id.as_bytes().as_slice())
                .bind(reason)
                .bind(now.as_micros())
                .fetch_optional(&self.pool)
                .await?;
            let row = match updated {
                Some(row) => row,
                None => {
                    let sql = format!(
                        "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1 AND subject_id = $2"
                    );
                    sqlx::query(&sql)
                        .bind(device_id.as_bytes().as_slice())
                        .bind(subject_id.as_bytes().as_slice())
                        .fetch_optional(&self.pool)
                        .await?
                        .ok_or(Error::DeviceNotFound)?
                }
            };
            device_from(&row)
        })
    }

    fn list_devices<'a>(
        &'a self,
        subject_id: SubjectId,
        include_unbound: bool,
        page: DevicePage,
    ) -> BoxFuture<'a, Result<Vec<Device>, Error>> {
        Box::pin(async move {
            if !subject_exists(&self.pool, subject_id).await? {
                return Err(Error::SubjectNotFound);
            }
            let sql = format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE subject_id = $1 AND ($2 OR status = 1) \
                   AND ($3::BIGINT IS NULL \
                        OR (devices.bound_at, device_id) > (identity_ts($3), $4)) \
                 ORDER BY devices.bound_at, device_id \
                 LIMIT $5"
            );
            sqlx::query(&sql)
                .bind(subject_id.as_bytes().as_slice())
                .bind(include_unbound)
                .bind(page.after.map(|a| a.bound_at.as_micros()))
                .bind(
                    page.after
                        .map_or_else(Vec::new, |a| a.device_id.as_bytes().to_vec()),
                )
                .bind(i64::try_from(page.limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(device_from)
                .collect()
        })
    }

    fn get_device<'a>(&'a self, id: DeviceId) -> BoxFuture<'a, Result<DeviceView, Error>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT d.device_id, d.subject_id, d.public_key, d.status, d.label, \
                     identity_us(d.bound_at) AS bound_at, identity_us(d.unbound_at) AS unbound_at, \
                     s.status AS subject_status, s.fare_class, s.medical_insurance_linked, \
                     s.assurance_level \
                 FROM devices d JOIN subjects s ON s.subject_id = d.subject_id \
                 WHERE d.device_id = $1",
            )
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::DeviceNotFound)?;
            Ok(DeviceView {
                device: device_from(&row)?,
                subject_status: enum_value::<SubjectStatus>(&row, "subject_status")?,
                subject_attributes: attributes(&row)?,
            })
        })
    }

    fn record_certificate<'a>(
        &'a self,
        new: NewCertificate,
        max_live: u32,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Certificate, Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            // FOR UPDATE: records of one device take turns, so the live-certificate limit
            // holds under concurrency.
            let row = sqlx::query(
                "SELECT subject_id, status FROM devices WHERE device_id = $1 FOR UPDATE",
            )
            .bind(new.device_id.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::DeviceNotFound)?;
            let owner = subject_id(&row, "subject_id")?;
            if new.subject_id.is_some_and(|s| s != owner) {
                return Err(Error::invalid(
                    "certificate.subject_id",
                    "is not the device's subject",
                ));
            }
            if enum_value::<DeviceStatus>(&row, "status")? != DeviceStatus::Active {
                return Err(Error::DeviceNotActive);
            }
            let certificate = Certificate {
                serial: new.serial,
                device_id: new.device_id,
                subject_id: owner,
                not_before: new.not_before,
                not_after: new.not_after,
            };
            let recorded: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM device_certificates WHERE serial = $1)",
            )
            .bind(new.serial.as_bytes().as_slice())
            .fetch_one(&mut *tx)
            .await?;
            if !recorded {
                let live: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM device_certificates \
                     WHERE device_id = $1 AND not_after > identity_ts($2)",
                )
                .bind(new.device_id.as_bytes().as_slice())
                .bind(now.as_micros())
                .fetch_one(&mut *tx)
                .await?;
                if live >= i64::from(max_live) {
                    return Err(Error::CertificateLimit { limit: max_live });
                }
            }
            let inserted = sqlx::query(
                "INSERT INTO device_certificates \
                     (serial, device_id, subject_id, not_before, not_after, recorded_at) \
                 VALUES ($1, $2, $3, identity_ts($4), identity_ts($5), identity_ts($6)) \
                 ON CONFLICT (serial) DO NOTHING RETURNING serial",
            )
            .bind(new.serial.as_bytes().as_slice())
            .bind(new.device_id.as_bytes().as_slice())
            .bind(owner.as_bytes().as_slice())
            .bind(new.not_before.as_micros())
            .bind(new.not_after.as_micros())
            .bind(now.as_micros())
            .fetch_optional(&mut *tx)
            .await?;
            if inserted.is_none() {
                let sql = format!(
                    "SELECT {CERTIFICATE_COLUMNS} FROM device_certificates WHERE serial = $1"
                );
                let row = sqlx::query(&sql)
                    .bind(new.serial.as_bytes().as_slice())
                    .fetch_one(&mut *tx)
                    .await?;
                if certificate_from(&row)? != certificate {
                    return Err(Error::SerialConflict);
                }
            }
            tx.commit().await?;
            Ok(certificate)
        })
    }

    fn list_certificates<'a>(
        &'a self,
        owner: CertificateOwner,
        valid_at: Option<Timestamp>,
        page: CertificatePage,
    ) -> BoxFuture<'a, Result<Vec<Certificate>, Error>> {
        Box::pin(async move {
            let (column, id) = match owner {
                CertificateOwner::Device(id) => {
                    let exists: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM devices WHERE device_id = $1)",
                    )
                    .bind(id.as_bytes().as_slice())
                    .fetch_one(&self.pool)
                    .await?;
                    if !exists {
                        return Err(Error::DeviceNotFound);
                    }
                    ("device_id", *id.as_bytes())
                }
                CertificateOwner::Subject(id) => {
                    if !subject_exists(&self.pool, id).await? {
                        return Err(Error::SubjectNotFound);
                    }
                    ("subject_id", *id.as_bytes())
                }
            };
            let sql = format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM device_certificates \
                 WHERE {column} = $1 AND ($2::BIGINT IS NULL OR not_after > identity_ts($2)) \
                   AND ($3::BIGINT IS NULL \
                        OR (device_certificates.not_before, serial) > (identity_ts($3), $4)) \
                 ORDER BY device_certificates.not_before, serial \
                 LIMIT $5"
            );
            sqlx::query(&sql)
                .bind(id.as_slice())
                .bind(valid_at.map(Timestamp::as_micros))
                .bind(page.after.map(|a| a.not_before.as_micros()))
                .bind(
                    page.after
                        .map_or_else(Vec::new, |a| a.serial.as_bytes().to_vec()),
                )
                .bind(i64::try_from(page.limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(certificate_from)
                .collect()
        })
    }
}

/// Document hashes as a PostgreSQL `BYTEA[]` parameter.
fn hash_array(hashes: &[DocumentHash]) -> Vec<Vec<u8>> {
    hashes.iter().map(|h| h.0.to_vec()).collect()
}

/// The advisory lock of a document hash: its first 8 bytes (keyed hashes, so spread
/// evenly; a collision only makes two enrolments wait for each other).
fn advisory_key(hash: &DocumentHash) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.0[..8]);
    i64::from_be_bytes(bytes)
}

/// Makes `grant` the subject's one enrolment secret.
async fn upsert_enrolment(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    subject_id: SubjectId,
    grant: &EnrolmentGrant,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO enrolment_secrets (subject_id, secret_hash, expires_at) \
         VALUES ($1, $2, identity_ts($3)) \
         ON CONFLICT (subject_id) DO UPDATE \
         SET secret_hash = EXCLUDED.secret_hash, expires_at = EXCLUDED.expires_at",
    )
    .bind(subject_id.as_bytes().as_slice())
    .bind(grant.secret_hash.0.as_slice())
    .bind(grant.expires_at.as_micros())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod migration_list {
    #[test]
    fn every_file_of_the_folder_is_listed() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        super::MIGRATIONS.check_folder(&folder).unwrap();
    }
}
