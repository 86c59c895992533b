//! Device certificates in PostgreSQL: recording (the device row held `FOR SHARE`, so an
//! unbinding waits) and paged listing.

use super::*;

impl PostgresStore {
    pub(super) async fn record_certificate_now(
        &self,
        new: NewCertificate,
        max_live: u32,
        now: Timestamp,
    ) -> Result<Certificate, Error> {
        let mut tx = self.pool.begin().await?;
        // FOR UPDATE: records of one device take turns, so the live-certificate limit
        // holds under concurrency.
        let row =
            sqlx::query("SELECT subject_id, status FROM devices WHERE device_id = $1 FOR UPDATE")
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
            let sql =
                format!("SELECT {CERTIFICATE_COLUMNS} FROM device_certificates WHERE serial = $1");
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
    }

    pub(super) async fn list_certificates_now(
        &self,
        owner: CertificateOwner,
        valid_at: Option<Timestamp>,
        page: CertificatePage,
    ) -> Result<Vec<Certificate>, Error> {
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
    }
}
