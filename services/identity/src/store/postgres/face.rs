//! Face data in PostgreSQL: consents, sealed templates, the feed, the processing
//! record, request nonces.
//!
//! Every face write runs in one transaction that first takes one advisory lock
//! ([`FACE_LOCK`], a two-key lock, a key space apart from the document locks), then
//! locks the subject row: face writes take turns, so the feed's sequence numbers
//! become visible in the order they were taken and a reader paging by sequence never
//! skips a change; and a consent withdrawn concurrently with an enrolment leaves no
//! template behind (the enrolment checks the live consents under the same lock).
//! Nothing under the lock grows with the number of people: the filing count is one
//! counter row (`face_template_count`) moved by each insert and delete, and a device's
//! face calls are limited before they reach the store (`device_call.rs`): SECURITY.md,
//! face finding F2.

use citypass_face::SealedTemplate;
use citypass_proto::v1::{FaceChannel, FacePurpose};

use super::*;
use crate::document::Date;
use crate::model::face::{
    AUDIT_CONSENT, AUDIT_DELETE, AUDIT_ENROL, AUDIT_WITHDRAW, AuditEntry, Consent, Enrolment,
    FaceStats, FeedEntry, FeedTemplate, NewTemplate, Withdrawal, audit_action,
};
use crate::store::{ACTION_FACE_CONSENT, ACTION_FACE_ENROL, FaceStore, UNBOUND_DEVICE_ACTOR};

/// The two keys of the face writes' advisory lock.
const FACE_LOCK: (i32, i32) = (0x66616365, 1);

/// Most expired nonces dropped per new one.
const EXPIRED_NONCE_BATCH: i64 = 100;

const CONSENT_COLUMNS: &str = "subject_id, purpose, text_version, places, \
    guardian_subject_id, channel, identity_us(granted_at) AS granted_at";

fn consent_from(row: &PgRow) -> Result<Consent, Error> {
    let guardian: Option<Vec<u8>> = row.try_get("guardian_subject_id")?;
    Ok(Consent {
        subject_id: subject_id(row, "subject_id")?,
        purpose: enum_value::<FacePurpose>(row, "purpose")?,
        text_version: row.try_get("text_version")?,
        places: row.try_get("places")?,
        guardian: guardian
            .map(|g| SubjectId::from_slice(&g).map_err(|_| Error::Corrupt("guardian_subject_id")))
            .transpose()?,
        channel: enum_value::<FaceChannel>(row, "channel")?,
        granted_at: timestamp(row, "granted_at")?,
    })
}

pub(super) async fn lock_face(tx: &mut PgConnection) -> Result<(), Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(FACE_LOCK.0)
        .bind(FACE_LOCK.1)
        .execute(tx)
        .await?;
    Ok(())
}

async fn consents_of(conn: &mut PgConnection, id: SubjectId) -> Result<Vec<Consent>, Error> {
    let sql = format!(
        "SELECT {CONSENT_COLUMNS} FROM face_consents WHERE subject_id = $1 ORDER BY purpose"
    );
    sqlx::query(&sql)
        .bind(id.as_bytes().as_slice())
        .fetch_all(conn)
        .await?
        .iter()
        .map(consent_from)
        .collect()
}

async fn has_template(conn: &mut PgConnection, id: SubjectId) -> Result<bool, Error> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM face_templates WHERE subject_id = $1)")
            .bind(id.as_bytes().as_slice())
            .fetch_one(conn)
            .await?,
    )
}

async fn note_change(conn: &mut PgConnection, id: SubjectId, now: Timestamp) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO face_feed (subject_id, sequence, changed_at) \
         VALUES ($1, nextval('face_feed_sequence'), identity_ts($2)) \
         ON CONFLICT (subject_id) DO UPDATE \
         SET sequence = EXCLUDED.sequence, changed_at = EXCLUDED.changed_at",
    )
    .bind(id.as_bytes().as_slice())
    .bind(now.as_micros())
    .execute(conn)
    .await?;
    Ok(())
}

async fn audit(
    conn: &mut PgConnection,
    id: SubjectId,
    action: &str,
    purpose: Option<FacePurpose>,
    channel: FaceChannel,
    actor: &str,
    now: Timestamp,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO face_audit (subject_id, action, purpose, channel, actor, at) \
         VALUES ($1, $2, $3, $4, $5, identity_ts($6))",
    )
    .bind(id.as_bytes().as_slice())
    .bind(action)
    .bind(purpose.map(db_enum))
    .bind(db_enum(channel))
    .bind(actor)
    .bind(now.as_micros())
    .execute(conn)
    .await?;
    Ok(())
}

/// The number of people with a template, from its one-row counter (an index-free
/// `count(*)` under the face lock scanned the table on every enrolment: finding F2).
async fn count_templates(conn: &mut PgConnection) -> Result<u64, Error> {
    let n: i64 = sqlx::query_scalar("SELECT enrolled FROM face_template_count")
        .fetch_one(conn)
        .await?;
    u64::try_from(n).map_err(|_| Error::Corrupt("face_template_count"))
}

/// Moves the counter by `delta` (+1 for a new template, −1 for a deleted one), in the
/// transaction that inserted or deleted it.
async fn add_to_count(conn: &mut PgConnection, delta: i64) -> Result<u64, Error> {
    let n: i64 = sqlx::query_scalar(
        "UPDATE face_template_count SET enrolled = enrolled + $1 RETURNING enrolled",
    )
    .bind(delta)
    .fetch_one(conn)
    .await?;
    u64::try_from(n).map_err(|_| Error::Corrupt("face_template_count"))
}

/// Deletes `id`'s app-enrolled template, in the transaction that unbinds one of its
/// devices (which took [`lock_face`] first); see [`UNBOUND_DEVICE_ACTOR`].
pub(super) async fn drop_app_template(
    tx: &mut PgConnection,
    id: SubjectId,
    now: Timestamp,
) -> Result<(), Error> {
    let deleted = sqlx::query("DELETE FROM face_templates WHERE subject_id = $1 AND channel = $2")
        .bind(id.as_bytes().as_slice())
        .bind(db_enum(FaceChannel::App))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted > 0 {
        add_to_count(tx, -1).await?;
        audit(
            tx,
            id,
            AUDIT_DELETE,
            None,
            FaceChannel::App,
            UNBOUND_DEVICE_ACTOR,
            now,
        )
        .await?;
        note_change(tx, id, now).await?;
    }
    Ok(())
}

impl FaceStore for PostgresStore {
    fn get_birth_date<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Option<Date>, Error>> {
        Box::pin(async move {
            let born: Option<i32> =
                sqlx::query_scalar("SELECT born_on FROM subjects WHERE subject_id = $1")
                    .bind(id.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(Error::SubjectNotFound)?;
            born.map(|n| Date::from_number(n).ok_or(Error::Corrupt("born_on")))
                .transpose()
        })
    }

    fn record_face_consent<'a>(
        &'a self,
        consent: Consent,
        actor: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Consent, Error>> {
        Box::pin(async move {
            let id = consent.subject_id;
            let mut tx = self.pool.begin().await?;
            lock_face(&mut tx).await?;
            let status = select_subject(&mut tx, id, "FOR UPDATE").await?.status;
            if status != SubjectStatus::Active {
                return Err(not_active(status, ACTION_FACE_CONSENT));
            }
            sqlx::query(
                "INSERT INTO face_consents (subject_id, purpose, text_version, places, \
                     guardian_subject_id, channel, granted_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, identity_ts($7)) \
                 ON CONFLICT (subject_id, purpose) DO UPDATE SET \
                     text_version = EXCLUDED.text_version, places = EXCLUDED.places, \
                     guardian_subject_id = EXCLUDED.guardian_subject_id, \
                     channel = EXCLUDED.channel, granted_at = EXCLUDED.granted_at",
            )
            .bind(id.as_bytes().as_slice())
            .bind(db_enum(consent.purpose))
            .bind(&consent.text_version)
            .bind(&consent.places)
            .bind(consent.guardian.map(|g| g.as_bytes().to_vec()))
            .bind(db_enum(consent.channel))
            .bind(consent.granted_at.as_micros())
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                    Error::SubjectNotFound
                }
                _ => Error::Database(e),
            })?;
            audit(
                &mut tx,
                id,
                AUDIT_CONSENT,
                Some(consent.purpose),
                consent.channel,
                actor,
                now,
            )
            .await?;
            if has_template(&mut tx, id).await? {
                note_change(&mut tx, id, now).await?;
            }
            tx.commit().await?;
            Ok(consent)
        })
    }

    fn face_consents<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Vec<Consent>, Error>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            select_subject(&mut conn, id, "").await?;
            consents_of(&mut conn, id).await
        })
    }

    fn withdraw_face_consent<'a>(
        &'a self,
        id: SubjectId,
        purpose: Option<FacePurpose>,
        channel: FaceChannel,
        actor: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Withdrawal, Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            lock_face(&mut tx).await?;
            select_subject(&mut tx, id, "FOR UPDATE").await?;
            let deleted: Vec<i16> = sqlx::query_scalar(
                "DELETE FROM face_consents WHERE subject_id = $1 \
                 AND ($2::SMALLINT IS NULL OR purpose = $2) RETURNING purpose",
            )
            .bind(id.as_bytes().as_slice())
            .bind(purpose.map(db_enum))
            .fetch_all(&mut *tx)
            .await?;
            let mut withdrawal = Withdrawal::default();
            let mut purposes: Vec<FacePurpose> = deleted
                .into_iter()
                .map(|p| FacePurpose::try_from(i32::from(p)).map_err(|_| Error::Corrupt("purpose")))
                .collect::<Result<_, _>>()?;
            purposes.sort_by_key(|p| *p as i32);
            for p in &purposes {
                audit(&mut tx, id, AUDIT_WITHDRAW, Some(*p), channel, actor, now).await?;
            }
            withdrawal.withdrawn = purposes;
            let had_template = has_template(&mut tx, id).await?;
            if had_template && consents_of(&mut tx, id).await?.is_empty() {
                sqlx::query("DELETE FROM face_templates WHERE subject_id = $1")
                    .bind(id.as_bytes().as_slice())
                    .execute(&mut *tx)
                    .await?;
                add_to_count(&mut tx, -1).await?;
                audit(&mut tx, id, AUDIT_DELETE, None, channel, actor, now).await?;
                withdrawal.template_deleted = true;
            }
            if had_template && !withdrawal.withdrawn.is_empty() {
                note_change(&mut tx, id, now).await?;
            }
            tx.commit().await?;
            Ok(withdrawal)
        })
    }

    fn enrol_face<'a>(
        &'a self,
        template: NewTemplate,
        actor: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Enrolment, Error>> {
        Box::pin(async move {
            let id = template.subject_id;
            let mut tx = self.pool.begin().await?;
            lock_face(&mut tx).await?;
            let status = select_subject(&mut tx, id, "FOR UPDATE").await?.status;
            if status != SubjectStatus::Active {
                return Err(not_active(status, ACTION_FACE_ENROL));
            }
            let purposes: Vec<FacePurpose> = consents_of(&mut tx, id)
                .await?
                .iter()
                .map(|c| c.purpose)
                .collect();
            if purposes.is_empty() {
                return Err(Error::FaceConsentRequired);
            }
            // The enrolling device is still bound, read under the face lock that an unbind
            // takes too: an enrolment in flight when its phone is unbound stores nothing.
            if let Some(device) = template.device {
                let bound: Option<bool> = sqlx::query_scalar(
                    "SELECT status = 1 FROM devices WHERE device_id = $1 AND subject_id = $2",
                )
                .bind(device.as_bytes().as_slice())
                .bind(id.as_bytes().as_slice())
                .fetch_optional(&mut *tx)
                .await?;
                if bound != Some(true) {
                    return Err(Error::SigningDeviceNotActive);
                }
            }
            // A counter's template is not replaced from the app (finding F8).
            if template.channel == FaceChannel::App {
                let existing: Option<i16> =
                    sqlx::query_scalar("SELECT channel FROM face_templates WHERE subject_id = $1")
                        .bind(id.as_bytes().as_slice())
                        .fetch_optional(&mut *tx)
                        .await?;
                if existing == Some(db_enum(FaceChannel::Counter)) {
                    return Err(Error::CounterTemplateExists);
                }
            }
            let enrolled_before = count_templates(&mut tx).await?;
            // `xmax = 0` only on a row this statement inserted (not on one it updated).
            let inserted: bool = sqlx::query_scalar(
                "INSERT INTO face_templates (subject_id, key_id, sealed, channel, device_id, \
                     enrolled_at) \
                 VALUES ($1, $2, $3, $4, $5, identity_ts($6)) \
                 ON CONFLICT (subject_id) DO UPDATE SET key_id = EXCLUDED.key_id, \
                     sealed = EXCLUDED.sealed, channel = EXCLUDED.channel, \
                     device_id = EXCLUDED.device_id, enrolled_at = EXCLUDED.enrolled_at \
                 RETURNING (xmax = 0)",
            )
            .bind(id.as_bytes().as_slice())
            .bind(i16::try_from(template.sealed.key_id).map_err(|_| Error::Corrupt("key_id"))?)
            .bind(&template.sealed.bytes)
            .bind(db_enum(template.channel))
            .bind(template.device.map(|d| d.as_bytes().to_vec()))
            .bind(now.as_micros())
            .fetch_one(&mut *tx)
            .await?;
            audit(&mut tx, id, AUDIT_ENROL, None, template.channel, actor, now).await?;
            note_change(&mut tx, id, now).await?;
            let enrolled_after = if inserted {
                add_to_count(&mut tx, 1).await?
            } else {
                enrolled_before
            };
            tx.commit().await?;
            Ok(Enrolment {
                subject_id: id,
                purposes,
                channel: template.channel,
                enrolled_at: now,
                enrolled_before,
                enrolled_after,
            })
        })
    }

    fn face_template<'a>(
        &'a self,
        id: SubjectId,
    ) -> BoxFuture<'a, Result<Option<SealedTemplate>, Error>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            select_subject(&mut conn, id, "").await?;
            let row =
                sqlx::query("SELECT key_id, sealed FROM face_templates WHERE subject_id = $1")
                    .bind(id.as_bytes().as_slice())
                    .fetch_optional(&mut *conn)
                    .await?;
            row.map(|row| sealed_from(&row)).transpose()
        })
    }

    fn face_stats<'a>(&'a self) -> BoxFuture<'a, Result<FaceStats, Error>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT (SELECT enrolled FROM face_template_count) AS enrolled, \
                     (SELECT count(*) FROM face_consents WHERE purpose = 1) AS counter_check, \
                     (SELECT count(*) FROM face_consents WHERE purpose = 2) AS face_pass",
            )
            .fetch_one(&self.pool)
            .await?;
            let count = |column: &'static str| -> Result<u64, Error> {
                let n: i64 = row.try_get(column)?;
                Ok(u64::try_from(n).unwrap_or(0))
            };
            Ok(FaceStats {
                enrolled_people: count("enrolled")?,
                counter_check_consents: count("counter_check")?,
                face_pass_consents: count("face_pass")?,
            })
        })
    }

    fn face_last_sequence<'a>(&'a self) -> BoxFuture<'a, Result<i64, Error>> {
        Box::pin(async move {
            // The sequence itself (not the feed's rows): it is what a restore winds back.
            let last: i64 = sqlx::query_scalar(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM face_feed_sequence",
            )
            .fetch_one(&self.pool)
            .await?;
            Ok(last)
        })
    }

    fn face_changes<'a>(
        &'a self,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<FeedEntry>, Error>> {
        Box::pin(async move {
            // One statement: one snapshot of the feed, the templates and the consents.
            let rows = sqlx::query(
                "SELECT f.subject_id, f.sequence, t.key_id, t.sealed, t.channel, t.device_id, \
                     identity_us(t.enrolled_at) AS enrolled_at, \
                     COALESCE((SELECT array_agg(c.purpose ORDER BY c.purpose) \
                         FROM face_consents c WHERE c.subject_id = f.subject_id), \
                         '{}'::SMALLINT[]) AS purposes, \
                     COALESCE((SELECT c.places FROM face_consents c \
                         WHERE c.subject_id = f.subject_id AND c.purpose = 2), \
                         '{}'::TEXT[]) AS places \
                 FROM face_feed f LEFT JOIN face_templates t ON t.subject_id = f.subject_id \
                 WHERE f.sequence > $1 ORDER BY f.sequence LIMIT $2",
            )
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let purposes: Vec<i16> = row.try_get("purposes")?;
                    let purposes: Vec<FacePurpose> = purposes
                        .into_iter()
                        .map(|p| {
                            FacePurpose::try_from(i32::from(p))
                                .map_err(|_| Error::Corrupt("purpose"))
                        })
                        .collect::<Result<_, _>>()?;
                    let sealed: Option<Vec<u8>> = row.try_get("sealed")?;
                    let template = match sealed {
                        Some(_) if !purposes.is_empty() => Some(FeedTemplate {
                            sealed: sealed_from(row)?,
                            purposes,
                            face_pass_places: row.try_get("places")?,
                            enrolled_at: timestamp(row, "enrolled_at")?,
                            channel: enum_value::<FaceChannel>(row, "channel")?,
                            device: row
                                .try_get::<Option<Vec<u8>>, _>("device_id")?
                                .map(|d| {
                                    DeviceId::from_slice(&d)
                                        .map_err(|_| Error::Corrupt("device_id"))
                                })
                                .transpose()?,
                        }),
                        _ => None,
                    };
                    Ok(FeedEntry {
                        sequence: row.try_get("sequence")?,
                        subject_id: subject_id(row, "subject_id")?,
                        template,
                    })
                })
                .collect()
        })
    }

    fn face_audit<'a>(&'a self, id: SubjectId) -> BoxFuture<'a, Result<Vec<AuditEntry>, Error>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            select_subject(&mut conn, id, "").await?;
            let rows = sqlx::query(
                "SELECT subject_id, action, purpose, channel, actor, identity_us(at) AS at \
                 FROM face_audit WHERE subject_id = $1 ORDER BY id",
            )
            .bind(id.as_bytes().as_slice())
            .fetch_all(&mut *conn)
            .await?;
            rows.iter()
                .map(|row| {
                    let action: String = row.try_get("action")?;
                    let purpose: Option<i16> = row.try_get("purpose")?;
                    Ok(AuditEntry {
                        subject_id: subject_id(row, "subject_id")?,
                        action: audit_action(&action).ok_or(Error::Corrupt("action"))?,
                        purpose: purpose
                            .map(|p| {
                                FacePurpose::try_from(i32::from(p))
                                    .map_err(|_| Error::Corrupt("purpose"))
                            })
                            .transpose()?,
                        channel: enum_value::<FaceChannel>(row, "channel")?,
                        actor: row.try_get("actor")?,
                        at: timestamp(row, "at")?,
                    })
                })
                .collect()
        })
    }

    fn first_use_nonce<'a>(
        &'a self,
        key: &'a str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            sqlx::query(
                "DELETE FROM request_nonces WHERE nonce_key IN ( \
                     SELECT nonce_key FROM request_nonces WHERE expires_at <= identity_ts($1) \
                     LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(now.as_micros())
            .bind(EXPIRED_NONCE_BATCH)
            .execute(&self.pool)
            .await?;
            // A mark that expired but was not dropped yet is taken over.
            let first: Option<String> = sqlx::query_scalar(
                "INSERT INTO request_nonces (nonce_key, expires_at) \
                 VALUES ($1, identity_ts($2)) \
                 ON CONFLICT (nonce_key) DO UPDATE SET expires_at = EXCLUDED.expires_at \
                     WHERE request_nonces.expires_at <= identity_ts($3) \
                 RETURNING nonce_key",
            )
            .bind(key)
            .bind(expires_at.as_micros())
            .bind(now.as_micros())
            .fetch_optional(&self.pool)
            .await?;
            Ok(first.is_some())
        })
    }
}

fn sealed_from(row: &PgRow) -> Result<SealedTemplate, Error> {
    let key_id: i16 = row.try_get("key_id")?;
    Ok(SealedTemplate {
        key_id: u16::try_from(key_id).map_err(|_| Error::Corrupt("key_id"))?,
        bytes: row.try_get("sealed")?,
    })
}
