//! The PostgreSQL store: the system of record.
//!
//! Queries are checked at run time (`sqlx::query` + `bind`), so building needs no
//! database; the schema is `migrations/`, applied at start-up ([`PostgresStore::new`]).
//! A rider's writes take turns on the rider's row (`SELECT … FOR UPDATE` of
//! `payment_riders`), which every link and tap of the rider locks first; under READ
//! COMMITTED each later statement sees what the previous holder committed. Unique
//! indexes back the rules up: a tap key once (`payment_taps`), a charge key once
//! (`ON CONFLICT DO NOTHING`, and then no posting or outbox row), one live charge per
//! trip, one open trip and one active link per rider.

use futures::future::BoxFuture;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};

mod outbox;
mod rider;
mod rows;
mod writes;

use self::rider::{lock_rider, rider_state};
use self::rows::{
    CANCELLED, CHARGE_COLUMNS, LINK_COLUMNS, TRIP_COLUMNS, charge_from, key16, link_from, secs,
    trip_from, u64_of,
};
use self::writes::apply;
use super::{ChargeRow, PaymentsStore, Rules, TripCursor, TripPage, TripQuery, TripView};
use crate::account::TransitAccount;
use crate::charge::{Charge, ChargeKey};
use crate::decision::Answer;
use crate::error::Error;
use crate::ledger::{Account, LedgerReport, PostingKind, Refund};
use crate::link::{Link, NewLink};
use crate::money::Fen;
use crate::outbox::{OutboxJob, OutboxMessage, OutboxStatus, Settlement};
use crate::trip::{TapKey, Trip, TripId, TripStatus};

/// The schema, in version order: every file of `migrations/` (a test checks the list
/// against the folder).
pub const MIGRATIONS: citypass_postgres::Embedded = citypass_postgres::embed_migrations![
    "20261203000001_payments.sql",
    "20261203000002_payment_taps_by_trip.sql",
    "20261203000003_payment_outbox_backoff.sql",
    "20261203000004_payment_outbox_claims.sql",
    "20261203000005_payment_refunds.sql",
    "20261203000010_payment_charges_by_provider_key.sql",
    "20261203000011_payment_taps_late.sql",
    "20261203000012_payment_charges_declined.sql",
];

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

    /// Uses an existing pool and applies the migrations.
    pub async fn new(pool: PgPool) -> Result<Self, Error> {
        citypass_postgres::migrate(&pool, MIGRATIONS).await?;
        Ok(PostgresStore { pool })
    }

    /// The connection pool (for health checks and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

// --- the rider's lock, state and writes ----------------------------------------------------
// The lock and the state the rules read: `rider.rs`.

async fn select_active_link(
    conn: &mut PgConnection,
    account: TransitAccount,
) -> Result<Option<Link>, Error> {
    let sql = format!(
        "SELECT {LINK_COLUMNS} FROM payment_links WHERE transit_account = $1 AND unlinked_at IS NULL"
    );
    sqlx::query(&sql)
        .bind(account.as_bytes().as_slice())
        .fetch_optional(conn)
        .await?
        .map(|row| link_from(&row))
        .transpose()
}

/// Whether `err` is a unique violation of `constraint`.
fn violates(err: &Error, constraint: &str) -> bool {
    matches!(err, Error::Database(sqlx::Error::Database(db))
        if db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint))
}

/// A unique index's refusal as the memory store's check names it, so both backends
/// answer a write the rules should never make with the same error.
fn as_memory_does(err: Error) -> Error {
    if violates(&err, "payment_trips_one_open") {
        Error::Corrupt("a second open trip")
    } else if violates(&err, "payment_charges_one_live_per_trip") {
        Error::Corrupt("a second live charge for one trip")
    } else if violates(&err, "payment_taps_pkey") {
        Error::ScanReused
    } else {
        err
    }
}

impl PaymentsStore for PostgresStore {
    fn link(&self, link: NewLink, now: u64) -> BoxFuture<'_, Result<Link, Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            lock_rider(&mut tx, link.account).await?;
            if select_active_link(&mut tx, link.account).await?.is_some() {
                return Err(Error::AlreadyLinked);
            }
            let result = sqlx::query(
                "INSERT INTO payment_links (link_id, transit_account, provider, provider_token, last4, \
                   consent_text_version, consented_at, linked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(link.id.0.as_slice())
            .bind(link.account.as_bytes().as_slice())
            .bind(link.provider.code())
            .bind(link.token.expose())
            .bind(link.last4.as_str())
            .bind(&link.consent.text_version)
            .bind(secs(link.consent.consented_at)?)
            .bind(secs(now)?)
            .execute(&mut *tx)
            .await
            .map_err(Error::from);
            if let Err(err) = result {
                return Err(if violates(&err, "payment_links_one_active") {
                    Error::AlreadyLinked
                } else {
                    err
                });
            }
            tx.commit().await?;
            Ok(Link::from_new(&link, now))
        })
    }

    fn unlink(&self, account: TransitAccount, now: u64) -> BoxFuture<'_, Result<Link, Error>> {
        Box::pin(async move {
            let sql = format!(
                "UPDATE payment_links SET unlinked_at = GREATEST($2, linked_at) \
                 WHERE transit_account = $1 AND unlinked_at IS NULL RETURNING {LINK_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(account.as_bytes().as_slice())
                .bind(secs(now)?)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(Error::NotLinked)?;
            link_from(&row)
        })
    }

    fn active_link(&self, account: TransitAccount) -> BoxFuture<'_, Result<Option<Link>, Error>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            select_active_link(&mut conn, account).await
        })
    }

    fn with_rider<'a>(
        &'a self,
        account: TransitAccount,
        tap: Option<TapKey>,
        at: u64,
        rules: Rules<'a>,
    ) -> BoxFuture<'a, Result<Answer, Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            lock_rider(&mut tx, account).await?;
            let state = rider_state(&mut tx, account, tap, at).await?;
            let decision = rules(&state)?;
            if decision.writes.is_empty() {
                // A replay or a refusal: not even the rider's lock row is kept.
                tx.rollback().await?;
                return Ok(decision.answer);
            }
            for write in &decision.writes {
                apply(&mut tx, write).await.map_err(as_memory_does)?;
            }
            tx.commit().await?;
            Ok(decision.answer)
        })
    }

    fn riders_open_since(
        &self,
        started_before: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<TransitAccount>, Error>> {
        Box::pin(async move {
            // The status as a constant, so the plan can use the partial index
            // `payment_trips_open_since` (see `rider.rs`).
            let sql = format!(
                "SELECT transit_account FROM payment_trips WHERE status = {} AND started_at < $1 \
                 ORDER BY started_at LIMIT $2",
                TripStatus::Open.code()
            );
            let rows = sqlx::query(&sql)
                .bind(secs(started_before)?)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|row| key16(row, "transit_account", TransitAccount::from_slice))
                .collect()
        })
    }

    fn trips(
        &self,
        account: TransitAccount,
        query: TripQuery,
    ) -> BoxFuture<'_, Result<TripPage, Error>> {
        Box::pin(async move {
            let limit = query.limit.max(1);
            let sql = format!(
                "SELECT {TRIP_COLUMNS} FROM payment_trips t \
                 WHERE t.transit_account = $1 \
                   AND ($2::BIGINT IS NULL OR t.started_at >= $2) \
                   AND ($3::BIGINT IS NULL OR t.started_at < $3) \
                   AND ($4::BIGINT IS NULL OR (t.started_at, t.trip_id) < ($4, $5)) \
                 ORDER BY t.started_at DESC, t.trip_id DESC LIMIT $6"
            );
            let rows = sqlx::query(&sql)
                .bind(account.as_bytes().as_slice())
                .bind(query.since.map(secs).transpose()?)
                .bind(query.until.map(secs).transpose()?)
                .bind(query.after.map(|c| secs(c.started_at)).transpose()?)
                .bind(query.after.map(|c| c.id.0.to_vec()).unwrap_or_default())
                .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
            let more = rows.len() > limit;
            let listed: Vec<Trip> = rows
                .iter()
                .take(limit)
                .map(trip_from)
                .collect::<Result<_, _>>()?;
            let ids: Vec<Vec<u8>> = listed.iter().map(|t| t.id.0.to_vec()).collect();
            let sql = format!(
                "SELECT {CHARGE_COLUMNS} FROM payment_charges c \
                 WHERE c.trip_id = ANY($1) AND c.status <> {CANCELLED}"
            );
            let charges: Vec<Charge> = sqlx::query(&sql)
                .bind(&ids)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(charge_from)
                .collect::<Result<_, _>>()?;
            let trips: Vec<TripView> = listed
                .into_iter()
                .map(|trip| TripView {
                    charge: charges.iter().find(|c| c.trip == trip.id).cloned(),
                    trip,
                })
                .collect();
            let next = more.then(|| trips.last()).flatten().map(|v| TripCursor {
                started_at: v.trip.started_at(),
                id: v.trip.id,
            });
            Ok(TripPage { trips, next })
        })
    }

    fn trip(
        &self,
        account: TransitAccount,
        id: TripId,
    ) -> BoxFuture<'_, Result<Option<TripView>, Error>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {TRIP_COLUMNS} FROM payment_trips t \
                 WHERE t.trip_id = $1 AND t.transit_account = $2"
            );
            let Some(row) = sqlx::query(&sql)
                .bind(id.0.as_slice())
                .bind(account.as_bytes().as_slice())
                .fetch_optional(&self.pool)
                .await?
            else {
                return Ok(None);
            };
            let trip = trip_from(&row)?;
            let sql = format!(
                "SELECT {CHARGE_COLUMNS} FROM payment_charges c \
                 WHERE c.trip_id = $1 AND c.status <> {CANCELLED}"
            );
            let charge = sqlx::query(&sql)
                .bind(id.0.as_slice())
                .fetch_optional(&self.pool)
                .await?
                .map(|row| charge_from(&row))
                .transpose()?;
            Ok(Some(TripView { trip, charge }))
        })
    }

    fn charges_made_between(
        &self,
        from: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<Vec<Charge>, Error>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {CHARGE_COLUMNS} FROM payment_charges c \
                 WHERE c.created_at >= $1 AND c.created_at < $2"
            );
            let rows = sqlx::query(&sql)
                .bind(secs(from)?)
                .bind(secs(until)?)
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(charge_from).collect()
        })
    }

    fn refunds_made_between(
        &self,
        from: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<Vec<Refund>, Error>> {
        Box::pin(async move {
            // The operator's entry of each refund posting (−amount).
            let rows = sqlx::query(
                "SELECT charge_key, account, -amount AS amount, at FROM payment_ledger \
                 WHERE kind = $1 AND account_kind = $2 AND at >= $3 AND at < $4",
            )
            .bind(PostingKind::Refund.code())
            .bind(Account::Operator(String::new()).kind_code())
            .bind(secs(from)?)
            .bind(secs(until)?)
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(Refund {
                        charge: key16(row, "charge_key", ChargeKey::from_slice)?,
                        operator: row.try_get("account")?,
                        amount: Fen::new(u64_of(row, "amount")?),
                        at: u64_of(row, "at")?,
                    })
                })
                .collect()
        })
    }

    fn charges(&self, account: TransitAccount) -> BoxFuture<'_, Result<Vec<Charge>, Error>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {CHARGE_COLUMNS} FROM payment_charges c WHERE c.transit_account = $1 \
                 ORDER BY c.created_at DESC, c.charge_key DESC"
            );
            let rows = sqlx::query(&sql)
                .bind(account.as_bytes().as_slice())
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(charge_from).collect()
        })
    }

    fn charge_by_provider_key(
        &self,
        key: ChargeKey,
    ) -> BoxFuture<'_, Result<Option<ChargeRow>, Error>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {CHARGE_COLUMNS}, o.status AS outbox_status FROM payment_charges c \
                 LEFT JOIN payment_outbox o ON o.charge_key = c.charge_key \
                 WHERE c.provider_key = $1"
            );
            let Some(row) = sqlx::query(&sql)
                .bind(key.0.as_slice())
                .fetch_optional(&self.pool)
                .await?
            else {
                return Ok(None);
            };
            let sent = row
                .try_get::<Option<i16>, _>("outbox_status")?
                .map(|code| OutboxStatus::from_code(code).ok_or(Error::Corrupt("outbox status")))
                .transpose()?;
            Ok(Some(ChargeRow {
                charge: charge_from(&row)?,
                outbox: sent,
            }))
        })
    }

    fn outbox(&self, limit: usize) -> BoxFuture<'_, Result<Vec<OutboxMessage>, Error>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT charge_key, status, created_at, attempts, next_attempt_at, claimed_until \
                 FROM payment_outbox \
                 ORDER BY seq LIMIT $1",
            )
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(OutboxMessage {
                        charge: key16(row, "charge_key", ChargeKey::from_slice)?,
                        status: OutboxStatus::from_code(row.try_get("status")?)
                            .ok_or(Error::Corrupt("status"))?,
                        created_at: u64_of(row, "created_at")?,
                        attempts: u32::try_from(row.try_get::<i32, _>("attempts")?)
                            .map_err(|_| Error::Corrupt("attempts"))?,
                        next_attempt_at: u64_of(row, "next_attempt_at")?,
                        claimed_until: u64_of(row, "claimed_until")?,
                    })
                })
                .collect()
        })
    }

    fn outbox_jobs(&self, limit: usize, now: u64) -> BoxFuture<'_, Result<Vec<OutboxJob>, Error>> {
        Box::pin(outbox::outbox_jobs(&self.pool, limit, now))
    }

    fn dispatch(&self, charge: ChargeKey) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(outbox::dispatch(&self.pool, charge))
    }

    fn settle(
        &self,
        key: ChargeKey,
        settlement: Settlement,
        at: u64,
    ) -> BoxFuture<'_, Result<Charge, Error>> {
        Box::pin(outbox::settle(&self.pool, key, settlement, at))
    }

    fn ledger_report(&self) -> BoxFuture<'_, Result<LedgerReport, Error>> {
        Box::pin(outbox::ledger_report(&self.pool))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_file_is_listed() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        super::MIGRATIONS.check_folder(&folder).unwrap();
    }
}
