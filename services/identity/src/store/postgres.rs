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

mod certificates;
mod devices;
mod face;
mod subjects;

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
use crate::ids::{CertSerial, DeviceId, SubjectId};
use crate::model::{
    Attributes, AttributesUpdate, Certificate, CertificateOwner, CertificatePage, Challenge,
    Device, DevicePage, DeviceView, NewCertificate, NewDevice, NewSubject, StoredPseudonym,
    Subject, Timestamp,
};
use citypass_pseudonym::{KeyId, Pseudonym};

/// Expired challenges removed per new challenge (spreads the clean-up over calls).
/// The schema, in version order: every file of `migrations/` (a test checks the list
/// against the folder).
pub const MIGRATIONS: citypass_postgres::Embedded = citypass_postgres::embed_migrations![
    "20261129000001_identity.sql",
    "20261202000001_enrolment_secrets.sql",
    "20261202000002_hmac_key_ids.sql",
    "20261203000001_government_pseudonym.sql",
    "20261203000002_face.sql",
    "20261203000003_face_count.sql",
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
        Box::pin(self.find_enrolled_subject_now(document))
    }

    fn insert_subject<'a>(
        &'a self,
        new: NewSubject,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Subject, Error>> {
        Box::pin(self.insert_subject_now(new, now))
    }

    fn grant_enrolment<'a>(
        &'a self,
        subject_id: SubjectId,
        grant: EnrolmentGrant,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.grant_enrolment_now(subject_id, grant, _now))
    }

    fn get_subject<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Subject, Error>> {
        Box::pin(self.get_subject_now(id))
    }

    fn get_government_pseudonym<'a>(
        &'a self,
        id: SubjectId,
    ) -> BoxFuture<'a, Result<Option<Pseudonym>, Error>> {
        Box::pin(self.get_government_pseudonym_now(id))
    }

    fn get_transit_account<'a>(
        &'a self,
        id: SubjectId,
    ) -> BoxFuture<'a, Result<StoredPseudonym, Error>> {
        Box::pin(self.get_transit_account_now(id))
    }

    fn update_attributes<'a>(
        &'a self,
        id: SubjectId,
        update: AttributesUpdate,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Subject, Error>> {
        Box::pin(self.update_attributes_now(id, update, now))
    }

    fn set_subject_status<'a>(
        &'a self,
        id: SubjectId,
        status: SubjectStatus,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Subject, Error>> {
        Box::pin(self.set_subject_status_now(id, status, reason, now))
    }

    fn create_challenge<'a>(
        &'a self,
        challenge: Challenge,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.create_challenge_now(challenge, now))
    }

    fn bind_device<'a>(
        &'a self,
        new: NewDevice,
        max_devices: u32,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Device, Error>> {
        Box::pin(self.bind_device_now(new, max_devices, now))
    }

    fn unbind_device<'a>(
        &'a self,
        subject_id: SubjectId,
        device_id: DeviceId,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Device, Error>> {
        Box::pin(self.unbind_device_now(subject_id, device_id, reason, now))
    }

    fn list_devices<'a>(
        &'a self,
        subject_id: SubjectId,
        include_unbound: bool,
        page: DevicePage,
    ) -> BoxFuture<'a, Result<Vec<Device>, Error>> {
        Box::pin(self.list_devices_now(subject_id, include_unbound, page))
    }

    fn get_device<'a>(&'a self, id: DeviceId) -> BoxFuture<'a, Result<DeviceView, Error>> {
        Box::pin(self.get_device_now(id))
    }

    fn record_certificate<'a>(
        &'a self,
        new: NewCertificate,
        max_live: u32,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Certificate, Error>> {
        Box::pin(self.record_certificate_now(new, max_live, now))
    }

    fn list_certificates<'a>(
        &'a self,
        owner: CertificateOwner,
        valid_at: Option<Timestamp>,
        page: CertificatePage,
    ) -> BoxFuture<'a, Result<Vec<Certificate>, Error>> {
        Box::pin(self.list_certificates_now(owner, valid_at, page))
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
