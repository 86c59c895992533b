//! Subjects in PostgreSQL: enrolment (one enrolled subject per document, under
//! advisory locks of its hashes), reads, attributes, status and the transit account.

use super::*;

impl PostgresStore {
    pub(super) async fn find_enrolled_subject_now(
        &self,
        document: &[DocumentHash],
    ) -> Result<Option<Subject>, Error> {
        let sql = format!(
            "SELECT {SUBJECT_COLUMNS} FROM subjects \
             WHERE document_hash = ANY($1) AND status IN (2, 3) LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(hash_array(document))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(subject_from).transpose()
    }

    pub(super) async fn insert_subject_now(
        &self,
        new: NewSubject,
        now: Timestamp,
    ) -> Result<Subject, Error> {
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
                 transit_account, pseudonym_key_id, government_pseudonym, government_key_id, \
                 born_on) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, identity_ts($10), identity_ts($10), \
                 $11, $12, $13, $14, $15, $16) \
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
        .bind(new.government_pseudonym.as_ref().map(|p| p.value.as_str()))
        .bind(new.government_pseudonym.as_ref().map(|p| p.key_id.stored()))
        .bind(new.born_on.map(crate::document::Date::to_number))
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
    }

    pub(super) async fn grant_enrolment_now(
        &self,
        subject_id: SubjectId,
        grant: EnrolmentGrant,
        _now: Timestamp,
    ) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        select_subject(&mut tx, subject_id, "FOR UPDATE").await?;
        upsert_enrolment(&mut tx, subject_id, &grant).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn get_subject_now(&self, id: SubjectId) -> Result<Subject, Error> {
        let mut conn = self.pool.acquire().await?;
        select_subject(&mut conn, id, "").await
    }

    pub(super) async fn get_transit_account_now(
        &self,
        id: SubjectId,
    ) -> Result<StoredPseudonym, Error> {
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
    }

    pub(super) async fn get_government_pseudonym_now(
        &self,
        id: SubjectId,
    ) -> Result<Option<Pseudonym>, Error> {
        let row = sqlx::query(
            "SELECT government_pseudonym, government_key_id FROM subjects WHERE subject_id = $1",
        )
        .bind(id.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::SubjectNotFound)?;
        let value: Option<String> = row.try_get("government_pseudonym")?;
        let key_id: Option<i16> = row.try_get("government_key_id")?;
        match (value, key_id) {
            (None, None) => Ok(None),
            (Some(value), Some(key_id)) => Ok(Some(Pseudonym {
                key_id: KeyId::from_stored(key_id).ok_or(Error::Corrupt("government_key_id"))?,
                value,
            })),
            _ => Err(Error::Corrupt("government_pseudonym")),
        }
    }

    pub(super) async fn update_attributes_now(
        &self,
        id: SubjectId,
        update: AttributesUpdate,
        now: Timestamp,
    ) -> Result<Subject, Error> {
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
    }

    pub(super) async fn set_subject_status_now(
        &self,
        id: SubjectId,
        status: SubjectStatus,
        reason: &str,
        now: Timestamp,
    ) -> Result<Subject, Error> {
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
    }
}
