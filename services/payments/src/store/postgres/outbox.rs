//! The outbox worker's side of the PostgreSQL store (rows to send, dispatch under the
//! charge's lock, settle once) and the ledger's sums for the invariant check.

use sqlx::Row;
use sqlx::postgres::PgPool;

use super::rows::{CHARGE_COLUMNS, charge_from, secs};
use super::writes::insert_posting;
use crate::charge::{Charge, ChargeKey, ChargeStatus};
use crate::error::Error;
use crate::ledger::{LedgerReport, Posting};
use crate::link::ProviderToken;
use crate::outbox::{OutboxJob, OutboxStatus, Settlement};

pub(super) async fn outbox_jobs(
    pool: &PgPool,
    limit: usize,
    now: u64,
) -> Result<Vec<OutboxJob>, Error> {
    // Due rows not claimed by another worker are claimed for CLAIM_LEASE_S, skipping
    // rows another worker is claiming at this moment (SKIP LOCKED): each row goes to one
    // worker at a time; a claim lapses if its worker dies.
    let sql = format!(
        "WITH due AS ( \
           SELECT o.charge_key FROM payment_outbox o \
           JOIN payment_charges c ON c.charge_key = o.charge_key \
           WHERE o.status IN ($1, $2) AND c.status IN ($3, $4) AND o.next_attempt_at <= $6 \
             AND o.claimed_until <= $6 \
           ORDER BY o.next_attempt_at, o.seq LIMIT $5 FOR UPDATE OF o SKIP LOCKED), \
         claimed AS ( \
           UPDATE payment_outbox o SET claimed_until = $7 FROM due \
           WHERE o.charge_key = due.charge_key RETURNING o.charge_key, o.next_attempt_at, o.seq) \
         SELECT {CHARGE_COLUMNS}, l.provider_token FROM claimed \
         JOIN payment_charges c ON c.charge_key = claimed.charge_key \
         JOIN payment_links l ON l.link_id = c.link_id \
         ORDER BY claimed.next_attempt_at, claimed.seq"
    );
    let rows = sqlx::query(&sql)
        .bind(OutboxStatus::Pending.code())
        .bind(OutboxStatus::Dispatched.code())
        .bind(ChargeStatus::Pending.code())
        .bind(ChargeStatus::Retrying.code())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(secs(now)?)
        .bind(secs(now.saturating_add(crate::outbox::CLAIM_LEASE_S))?)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let token: String = row.try_get("provider_token")?;
            Ok(OutboxJob {
                charge: charge_from(row)?,
                token: ProviderToken::parse(&token).ok(),
            })
        })
        .collect()
}

pub(super) async fn dispatch(pool: &PgPool, charge: ChargeKey) -> Result<bool, Error> {
    let mut tx = pool.begin().await?;
    // The charge's lock first, as a void's cancellation takes it.
    sqlx::query("SELECT 1 FROM payment_charges WHERE charge_key = $1 FOR UPDATE")
        .bind(charge.0.as_slice())
        .execute(&mut *tx)
        .await?;
    let status: Option<i16> = sqlx::query_scalar(
        "UPDATE payment_outbox SET status = CASE WHEN status = $2 THEN $3 ELSE status END \
         WHERE charge_key = $1 RETURNING status",
    )
    .bind(charge.0.as_slice())
    .bind(OutboxStatus::Pending.code())
    .bind(OutboxStatus::Dispatched.code())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(status == Some(OutboxStatus::Dispatched.code()))
}

pub(super) async fn settle(
    pool: &PgPool,
    key: ChargeKey,
    settlement: Settlement,
    at: u64,
) -> Result<Charge, Error> {
    let mut tx = pool.begin().await?;
    let sql = format!(
        "SELECT {CHARGE_COLUMNS} FROM payment_charges c WHERE c.charge_key = $1 FOR UPDATE"
    );
    let row = sqlx::query(&sql)
        .bind(key.0.as_slice())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::Corrupt("settling an unknown charge"))?;
    let mut charge = charge_from(&row)?;
    if !crate::outbox::settles(charge.status, &settlement) {
        return Ok(charge);
    }
    let done = match settlement {
        Settlement::Approved => {
            charge.status = ChargeStatus::Succeeded;
            charge.decline_code = None;
            charge.settled_at = Some(at);
            let capture = Posting::capture(&charge, at).ok_or(Error::AmountOutOfRange("charge"))?;
            insert_posting(&mut tx, &capture).await?;
            true
        }
        Settlement::Declined { code } => {
            charge.status = ChargeStatus::Declined;
            charge.decline_code = Some(code);
            charge.settled_at = Some(at);
            true
        }
        Settlement::Retry => {
            charge.status = ChargeStatus::Retrying;
            false
        }
    };
    sqlx::query(
        "UPDATE payment_charges SET status = $2, decline_code = $3, settled_at = $4 \
         WHERE charge_key = $1",
    )
    .bind(key.0.as_slice())
    .bind(charge.status.code())
    .bind(charge.decline_code.as_deref())
    .bind(charge.settled_at.map(secs).transpose()?)
    .execute(&mut *tx)
    .await?;
    if done {
        sqlx::query(
            "UPDATE payment_outbox SET status = $2, claimed_until = 0 WHERE charge_key = $1",
        )
        .bind(key.0.as_slice())
        .bind(OutboxStatus::Done.code())
        .execute(&mut *tx)
        .await?;
    } else {
        // No answer: tried again after a backoff growing with the attempts.
        let attempts: i32 = sqlx::query_scalar(
            "UPDATE payment_outbox SET attempts = attempts + 1 WHERE charge_key = $1 RETURNING attempts",
        )
        .bind(key.0.as_slice())
        .fetch_one(&mut *tx)
        .await?;
        let attempts = u32::try_from(attempts).map_err(|_| Error::Corrupt("attempts"))?;
        sqlx::query(
            "UPDATE payment_outbox SET next_attempt_at = $2, claimed_until = 0 WHERE charge_key = $1",
        )
            .bind(key.0.as_slice())
            .bind(secs(at.saturating_add(crate::outbox::backoff(attempts)))?)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(charge)
}

pub(super) async fn ledger_report(pool: &PgPool) -> Result<LedgerReport, Error> {
    let count = |n: i64| u64::try_from(n).map_err(|_| Error::Corrupt("count"));
    let row = sqlx::query(
        "SELECT \
           (SELECT count(*) FROM (SELECT posting_id FROM payment_ledger GROUP BY posting_id \
              HAVING sum(amount) <> 0 OR count(*) <> 2) u) AS unbalanced, \
           COALESCE(sum(amount), 0)::TEXT AS total, \
           COALESCE(sum(amount) FILTER (WHERE account_kind = 1), 0)::TEXT AS riders, \
           COALESCE(sum(amount) FILTER (WHERE account_kind = 2), 0)::TEXT AS operators, \
           COALESCE(sum(amount) FILTER (WHERE account_kind = 3), 0)::TEXT AS providers, \
           count(DISTINCT posting_id) FILTER (WHERE kind = 1) AS charge_postings, \
           count(DISTINCT posting_id) FILTER (WHERE kind = 2) AS reversal_postings, \
           count(DISTINCT posting_id) FILTER (WHERE kind = 3) AS capture_postings, \
           count(DISTINCT posting_id) FILTER (WHERE kind = 4) AS refund_postings, \
           COALESCE(sum(amount) FILTER (WHERE kind = 4 AND account_kind = 1), 0)::TEXT AS refunded, \
           (SELECT count(*) FROM payment_ledger l LEFT JOIN payment_charges c USING (charge_key) \
              WHERE l.kind = 4 AND l.account_kind = 1 \
                AND (c.charge_key IS NULL OR c.status = 6 OR l.amount > c.amount)) AS bad_refunds, \
           (SELECT count(*) FROM payment_charges WHERE status = 3) AS succeeded, \
           (SELECT COALESCE(sum(amount), 0)::TEXT FROM payment_charges WHERE status = 3) AS captured, \
           (SELECT count(*) FROM payment_ledger l WHERE NOT EXISTS \
              (SELECT 1 FROM payment_charges c WHERE c.charge_key = l.charge_key)) AS orphans, \
           (SELECT count(*) FROM payment_charges) AS charges, \
           (SELECT count(*) FROM payment_charges WHERE status = 6) AS cancelled, \
           (SELECT COALESCE(sum(amount), 0)::TEXT FROM payment_charges WHERE status <> 6) AS live \
         FROM payment_ledger",
    )
    .fetch_one(pool)
    .await?;
    let big = |column: &'static str| -> Result<i128, Error> {
        let text: String = row.try_get(column)?;
        text.parse().map_err(|_| Error::Corrupt(column))
    };
    Ok(LedgerReport {
        unbalanced_postings: count(row.try_get("unbalanced")?)?,
        total: big("total")?,
        riders: big("riders")?,
        operators: big("operators")?,
        providers: big("providers")?,
        charge_postings: count(row.try_get("charge_postings")?)?,
        reversal_postings: count(row.try_get("reversal_postings")?)?,
        capture_postings: count(row.try_get("capture_postings")?)?,
        refund_postings: count(row.try_get("refund_postings")?)?,
        refunded: big("refunded")?,
        bad_refunds: count(row.try_get("bad_refunds")?)?,
        succeeded_charges: count(row.try_get("succeeded")?)?,
        captured: big("captured")?,
        charges: count(row.try_get("charges")?)?,
        cancelled_charges: count(row.try_get("cancelled")?)?,
        live_charged: big("live")?,
        orphan_postings: count(row.try_get("orphans")?)?,
    })
}
