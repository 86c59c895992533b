//! Devices in PostgreSQL: single-use binding challenges, binding (the subject row locked
//! while its devices are counted), unbinding, listing and reads.

use super::face;
use super::*;

impl PostgresStore {
    pub(super) async fn create_challenge_now(
        &self,
        challenge: Challenge,
        now: Timestamp,
    ) -> Result<(), Error> {
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
    }

    pub(super) async fn bind_device_now(
        &self,
        new: NewDevice,
        max_devices: u32,
        now: Timestamp,
    ) -> Result<Device, Error> {
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
        let active: i64 =
            sqlx::query_scalar("SELECT count(*) FROM devices WHERE subject_id = $1 AND status = 1")
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
    }

    pub(super) async fn unbind_device_now(
        &self,
        subject_id: SubjectId,
        device_id: DeviceId,
        reason: &str,
        now: Timestamp,
    ) -> Result<Device, Error> {
        let sql = format!(
            "UPDATE devices SET status = 2, unbound_at = identity_ts($4), unbind_reason = $3 \
             WHERE device_id = $1 AND subject_id = $2 AND status = 1 \
             RETURNING {DEVICE_COLUMNS}"
        );
        // The face lock first, as every face write takes it (the feed's order; the same
        // lock order, so no deadlock with a concurrent enrolment): the subject's
        // app-enrolled face goes with the device.
        let mut tx = self.pool.begin().await?;
        face::lock_face(&mut tx).await?;
        let updated = sqlx::query(&sql)
            .bind(device_id.as_bytes().as_slice())
            .bind(subject_id.as_bytes().as_slice())
            .bind(reason)
            .bind(now.as_micros())
            .fetch_optional(&mut *tx)
            .await?;
        if updated.is_some() {
            face::drop_app_template(&mut tx, subject_id, now).await?;
        }
        tx.commit().await?;
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
    }

    pub(super) async fn list_devices_now(
        &self,
        subject_id: SubjectId,
        include_unbound: bool,
        page: DevicePage,
    ) -> Result<Vec<Device>, Error> {
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
    }

    pub(super) async fn get_device_now(&self, id: DeviceId) -> Result<DeviceView, Error> {
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
    }
}
