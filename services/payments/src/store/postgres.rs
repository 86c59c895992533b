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
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};

use super::{PaymentsStore, Rules, TripCursor, TripPage, TripQuery, TripView};
use crate::account::TransitAccount;
use crate::charge::{Charge, ChargeKey, ChargeStatus};
use crate::error::Error;
use crate::fare::Fare;
use crate::ledger::{LedgerReport, Posting};
use crate::link::{Consent, Last4, Link, LinkId, NewLink, Provider};
use crate::money::Fen;
use crate::outbox::{OutboxMessage, OutboxStatus};
use crate::tap::{Answer, RiderState, Write, window_start};
use crate::trip::{
    Side, Tap, TapKey, TapRecord, Trip, TripId, TripStatus, fare_class_code, fare_class_from_code,
    mode_code, mode_from_code,
};

/// The schema, in version order: every file of `migrations/` (a test checks the list
/// against the folder).
pub const MIGRATIONS: citypass_postgres::Embedded =
    citypass_postgres::embed_migrations!["20261203000001_payments.sql"];

const LINK_COLUMNS: &str = "link_id, transit_account, provider, last4, consent_text_version, \
    consented_at, linked_at, unlinked_at";

const TRIP_COLUMNS: &str = "t.trip_id, t.transit_account, t.mode, t.status, t.fare_class, \
    t.entry_gate, t.entry_place, t.entry_scan, t.entry_at, t.exit_gate, t.exit_place, \
    t.exit_scan, t.exit_at, t.fare_operator, t.fare_distance_m, t.fare_base, \
    t.fare_concession, t.fare_transfer, t.fare_capped, t.fare_due";

const CHARGE_COLUMNS: &str = "c.charge_key, c.trip_id, c.transit_account, c.link_id, \
    c.provider, c.operator, c.amount, c.status, c.decline_code, c.created_at, c.settled_at";

const CANCELLED: i16 = 6;

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

// --- values in and out -------------------------------------------------------------------

fn secs(value: u64) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| Error::invalid("tapped_at", "is out of range"))
}

fn fen(value: Fen) -> Result<i64, Error> {
    i64::try_from(value.get()).map_err(|_| Error::AmountOutOfRange("fen"))
}

fn u64_of(row: &PgRow, column: &'static str) -> Result<u64, Error> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| Error::Corrupt(column))
}

fn opt_u64(row: &PgRow, column: &'static str) -> Result<Option<u64>, Error> {
    let value: Option<i64> = row.try_get(column)?;
    value
        .map(|v| u64::try_from(v).map_err(|_| Error::Corrupt(column)))
        .transpose()
}

fn key16<T>(row: &PgRow, column: &'static str, make: fn(&[u8]) -> Option<T>) -> Result<T, Error> {
    let bytes: Vec<u8> = row.try_get(column)?;
    make(&bytes).ok_or(Error::Corrupt(column))
}

fn link_id(bytes: &[u8]) -> Option<LinkId> {
    bytes.try_into().ok().map(LinkId)
}

fn link_from(row: &PgRow) -> Result<Link, Error> {
    let last4: String = row.try_get("last4")?;
    let version: String = row.try_get("consent_text_version")?;
    Ok(Link {
        id: key16(row, "link_id", link_id)?,
        account: key16(row, "transit_account", TransitAccount::from_slice)?,
        provider: Provider::from_code(row.try_get("provider")?)
            .ok_or(Error::Corrupt("provider"))?,
        last4: Last4::parse(&last4).map_err(|_| Error::Corrupt("last4"))?,
        consent: Consent::new(&version, u64_of(row, "consented_at")?)
            .map_err(|_| Error::Corrupt("consent_text_version"))?,
        linked_at: u64_of(row, "linked_at")?,
        unlinked_at: opt_u64(row, "unlinked_at")?,
    })
}

fn tap_from(row: &PgRow, prefix: &str) -> Result<Option<Tap>, Error> {
    let gate: Option<String> = row.try_get(format!("{prefix}_gate").as_str())?;
    let Some(gate_id) = gate else {
        return Ok(None);
    };
    let at: Option<i64> = row.try_get(format!("{prefix}_at").as_str())?;
    Ok(Some(Tap {
        gate_id,
        place: row
            .try_get::<Option<String>, _>(format!("{prefix}_place").as_str())?
            .unwrap_or_default(),
        scan_id: row
            .try_get::<Option<String>, _>(format!("{prefix}_scan").as_str())?
            .unwrap_or_default(),
        at: at
            .and_then(|v| u64::try_from(v).ok())
            .ok_or(Error::Corrupt("tap time"))?,
    }))
}

fn trip_from(row: &PgRow) -> Result<Trip, Error> {
    let operator: Option<String> = row.try_get("fare_operator")?;
    let fare = match operator {
        None => None,
        Some(operator) => {
            let money = |column: &'static str| -> Result<Fen, Error> {
                Ok(Fen::new(
                    opt_u64(row, column)?.ok_or(Error::Corrupt(column))?,
                ))
            };
            let distance: Option<i64> = row.try_get("fare_distance_m")?;
            Some(Fare {
                operator,
                distance_m: distance
                    .map(|d| u32::try_from(d).map_err(|_| Error::Corrupt("fare_distance_m")))
                    .transpose()?,
                base: money("fare_base")?,
                concession: money("fare_concession")?,
                transfer: money("fare_transfer")?,
                capped: money("fare_capped")?,
                due: money("fare_due")?,
            })
        }
    };
    Ok(Trip {
        id: key16(row, "trip_id", TapKey::from_slice)?,
        account: key16(row, "transit_account", TransitAccount::from_slice)?,
        mode: mode_from_code(row.try_get("mode")?).ok_or(Error::Corrupt("mode"))?,
        status: TripStatus::from_code(row.try_get("status")?).ok_or(Error::Corrupt("status"))?,
        fare_class: fare_class_from_code(row.try_get("fare_class")?)
            .ok_or(Error::Corrupt("fare_class"))?,
        entry: tap_from(row, "entry")?,
        exit: tap_from(row, "exit")?,
        fare,
    })
}

fn charge_from(row: &PgRow) -> Result<Charge, Error> {
    let link: Option<Vec<u8>> = row.try_get("link_id")?;
    let provider: Option<i16> = row.try_get("provider")?;
    let link = match (link, provider) {
        (Some(id), Some(provider)) => Some((
            link_id(&id).ok_or(Error::Corrupt("link_id"))?,
            Provider::from_code(provider).ok_or(Error::Corrupt("provider"))?,
        )),
        _ => None,
    };
    Ok(Charge {
        key: key16(row, "charge_key", ChargeKey::from_slice)?,
        trip: key16(row, "trip_id", TapKey::from_slice)?,
        account: key16(row, "transit_account", TransitAccount::from_slice)?,
        link,
        operator: row.try_get("operator")?,
        amount: Fen::new(u64_of(row, "amount")?),
        status: ChargeStatus::from_code(row.try_get("status")?).ok_or(Error::Corrupt("status"))?,
        decline_code: row.try_get("decline_code")?,
        created_at: u64_of(row, "created_at")?,
        settled_at: opt_u64(row, "settled_at")?,
    })
}

// --- the rider's lock, state and writes ----------------------------------------------------

/// Creates the rider's row if needed and locks it until the transaction ends.
async fn lock_rider(conn: &mut PgConnection, account: TransitAccount) -> Result<(), Error> {
    sqlx::query("INSERT INTO payment_riders (transit_account) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(account.as_bytes().as_slice())
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT 1 FROM payment_riders WHERE transit_account = $1 FOR UPDATE")
        .bind(account.as_bytes().as_slice())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

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

async fn select_trip(conn: &mut PgConnection, id: TripId) -> Result<Trip, Error> {
    let sql = format!("SELECT {TRIP_COLUMNS} FROM payment_trips t WHERE t.trip_id = $1");
    let row = sqlx::query(&sql)
        .bind(id.0.as_slice())
        .fetch_optional(conn)
        .await?
        .ok_or(Error::Corrupt("tap without its trip"))?;
    trip_from(&row)
}

async fn rider_state(
    conn: &mut PgConnection,
    account: TransitAccount,
    tap: Option<TapKey>,
    at: u64,
) -> Result<RiderState, Error> {
    let link = select_active_link(conn, account).await?;
    let arrears: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(amount), 0)::BIGINT FROM payment_charges \
         WHERE transit_account = $1 AND status = $2",
    )
    .bind(account.as_bytes().as_slice())
    .bind(ChargeStatus::Declined.code())
    .fetch_one(&mut *conn)
    .await?;
    let arrears = Fen::new(u64::try_from(arrears).map_err(|_| Error::Corrupt("amount"))?);
    let tap = match tap {
        None => None,
        Some(key) => {
            let row = sqlx::query(
                "SELECT trip_id, side, at, voided FROM payment_taps WHERE tap_key = $1",
            )
            .bind(key.0.as_slice())
            .fetch_optional(&mut *conn)
            .await?;
            match row {
                None => None,
                Some(row) => {
                    let record = TapRecord {
                        key,
                        trip: key16(&row, "trip_id", TapKey::from_slice)?,
                        side: Side::from_code(row.try_get("side")?)
                            .ok_or(Error::Corrupt("side"))?,
                        at: u64_of(&row, "at")?,
                        voided: row.try_get("voided")?,
                    };
                    Some((record, select_trip(conn, record.trip).await?))
                }
            }
        }
    };
    let sql = format!(
        "SELECT {TRIP_COLUMNS} FROM payment_trips t WHERE t.transit_account = $1 AND t.status = $2"
    );
    let open = sqlx::query(&sql)
        .bind(account.as_bytes().as_slice())
        .bind(TripStatus::Open.code())
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| trip_from(&row))
        .transpose()?;
    let since = window_start(at, open.as_ref());
    let sql = format!(
        "SELECT {TRIP_COLUMNS} FROM payment_trips t \
         WHERE t.transit_account = $1 AND t.status <> $2 AND t.started_at >= $3"
    );
    let recent = sqlx::query(&sql)
        .bind(account.as_bytes().as_slice())
        .bind(TripStatus::Open.code())
        .bind(secs(since)?)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(trip_from)
        .collect::<Result<_, _>>()?;
    Ok(RiderState {
        link,
        arrears,
        tap,
        open,
        recent,
    })
}

async fn put_trip(conn: &mut PgConnection, trip: &Trip) -> Result<(), Error> {
    let tap = |t: &Option<Tap>| {
        t.as_ref()
            .map(|t| (t.gate_id.clone(), t.place.clone(), t.scan_id.clone(), t.at))
    };
    let (entry, exit) = (tap(&trip.entry), tap(&trip.exit));
    let fare = trip.fare.as_ref();
    let money = |f: fn(&Fare) -> Fen| fare.map(|fare| fen(f(fare))).transpose();
    sqlx::query(
        "INSERT INTO payment_trips (trip_id, transit_account, mode, status, fare_class, started_at, \
           entry_gate, entry_place, entry_scan, entry_at, exit_gate, exit_place, exit_scan, exit_at, \
           fare_operator, fare_distance_m, fare_base, fare_concession, fare_transfer, fare_capped, fare_due) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
         ON CONFLICT (trip_id) DO UPDATE SET status = EXCLUDED.status, \
           exit_gate = EXCLUDED.exit_gate, exit_place = EXCLUDED.exit_place, \
           exit_scan = EXCLUDED.exit_scan, exit_at = EXCLUDED.exit_at, \
           fare_operator = EXCLUDED.fare_operator, fare_distance_m = EXCLUDED.fare_distance_m, \
           fare_base = EXCLUDED.fare_base, fare_concession = EXCLUDED.fare_concession, \
           fare_transfer = EXCLUDED.fare_transfer, fare_capped = EXCLUDED.fare_capped, \
           fare_due = EXCLUDED.fare_due",
    )
    .bind(trip.id.0.as_slice())
    .bind(trip.account.as_bytes().as_slice())
    .bind(mode_code(trip.mode))
    .bind(trip.status.code())
    .bind(fare_class_code(trip.fare_class))
    .bind(secs(trip.started_at())?)
    .bind(entry.as_ref().map(|e| e.0.clone()))
    .bind(entry.as_ref().map(|e| e.1.clone()))
    .bind(entry.as_ref().map(|e| e.2.clone()))
    .bind(entry.as_ref().map(|e| secs(e.3)).transpose()?)
    .bind(exit.as_ref().map(|e| e.0.clone()))
    .bind(exit.as_ref().map(|e| e.1.clone()))
    .bind(exit.as_ref().map(|e| e.2.clone()))
    .bind(exit.as_ref().map(|e| secs(e.3)).transpose()?)
    .bind(fare.map(|f| f.operator.clone()))
    .bind(fare.and_then(|f| f.distance_m).map(i64::from))
    .bind(money(|f| f.base)?)
    .bind(money(|f| f.concession)?)
    .bind(money(|f| f.transfer)?)
    .bind(money(|f| f.capped)?)
    .bind(money(|f| f.due)?)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_posting(conn: &mut PgConnection, posting: &Posting) -> Result<(), Error> {
    for (seq, entry) in (0i16..).zip(posting.entries.iter()) {
        sqlx::query(
            "INSERT INTO payment_ledger (posting_id, seq, kind, charge_key, account_kind, account, amount, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(posting.id.0.as_slice())
        .bind(seq)
        .bind(posting.kind.code())
        .bind(posting.charge.0.as_slice())
        .bind(entry.account.kind_code())
        .bind(entry.account.name())
        .bind(entry.amount)
        .bind(secs(posting.at)?)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn insert_charge(conn: &mut PgConnection, charge: &Charge) -> Result<(), Error> {
    let posting = Posting::charge(charge).ok_or(Error::AmountOutOfRange("charge"))?;
    let inserted = sqlx::query(
        "INSERT INTO payment_charges (charge_key, trip_id, transit_account, link_id, provider, \
           operator, amount, status, decline_code, created_at, settled_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (charge_key) DO NOTHING",
    )
    .bind(charge.key.0.as_slice())
    .bind(charge.trip.0.as_slice())
    .bind(charge.account.as_bytes().as_slice())
    .bind(charge.link.map(|(id, _)| id.0.to_vec()))
    .bind(charge.link.map(|(_, p)| p.code()))
    .bind(&charge.operator)
    .bind(fen(charge.amount)?)
    .bind(charge.status.code())
    .bind(charge.decline_code.as_deref())
    .bind(secs(charge.created_at)?)
    .bind(charge.settled_at.map(secs).transpose()?)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(()); // written before: no second posting, no second outbox row
    }
    insert_posting(conn, &posting).await?;
    if charge.status == ChargeStatus::Pending {
        sqlx::query(
            "INSERT INTO payment_outbox (charge_key, status, created_at) VALUES ($1, $2, $3)",
        )
        .bind(charge.key.0.as_slice())
        .bind(OutboxStatus::Pending.code())
        .bind(secs(charge.created_at)?)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn cancel_charge(conn: &mut PgConnection, trip: TripId, at: u64) -> Result<(), Error> {
    let sql = format!(
        "SELECT {CHARGE_COLUMNS}, o.status AS outbox_status FROM payment_charges c \
         LEFT JOIN payment_outbox o ON o.charge_key = c.charge_key \
         WHERE c.trip_id = $1 AND c.status <> $2 FOR UPDATE OF c"
    );
    let Some(row) = sqlx::query(&sql)
        .bind(trip.0.as_slice())
        .bind(CANCELLED)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(());
    };
    let mut charge = charge_from(&row)?;
    let outbox: Option<i16> = row.try_get("outbox_status")?;
    if outbox == Some(OutboxStatus::Dispatched.code()) {
        return Err(Error::VoidTooLate("its charge has been sent"));
    }
    charge.status = ChargeStatus::Cancelled;
    let reversal = Posting::reversal(&charge, at).ok_or(Error::AmountOutOfRange("charge"))?;
    sqlx::query("UPDATE payment_charges SET status = $2, settled_at = $3 WHERE charge_key = $1")
        .bind(charge.key.0.as_slice())
        .bind(CANCELLED)
        .bind(secs(at)?)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE payment_outbox SET status = $2 WHERE charge_key = $1")
        .bind(charge.key.0.as_slice())
        .bind(OutboxStatus::Cancelled.code())
        .execute(&mut *conn)
        .await?;
    insert_posting(conn, &reversal).await
}

async fn apply(conn: &mut PgConnection, write: &Write) -> Result<(), Error> {
    match write {
        Write::PutTrip(trip) => put_trip(conn, trip).await,
        Write::RecordTap(record) => {
            let inserted = sqlx::query(
                "INSERT INTO payment_taps (tap_key, trip_id, side, at, voided) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tap_key) DO NOTHING",
            )
            .bind(record.key.0.as_slice())
            .bind(record.trip.0.as_slice())
            .bind(record.side.code())
            .bind(secs(record.at)?)
            .bind(record.voided)
            .execute(conn)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(Error::ScanReused);
            }
            Ok(())
        }
        Write::VoidTap(key) => {
            sqlx::query("UPDATE payment_taps SET voided = true WHERE tap_key = $1")
                .bind(key.0.as_slice())
                .execute(conn)
                .await?;
            Ok(())
        }
        Write::Charge(charge) => insert_charge(conn, charge).await,
        Write::CancelCharge { trip, at } => cancel_charge(conn, *trip, *at).await,
    }
}

/// Whether `err` is a unique violation of `constraint`.
fn violates(err: &Error, constraint: &str) -> bool {
    matches!(err, Error::Database(sqlx::Error::Database(db))
        if db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint))
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
            for write in &decision.writes {
                apply(&mut tx, write).await?;
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
            let rows = sqlx::query(
                "SELECT transit_account FROM payment_trips WHERE status = $1 AND started_at < $2 \
                 ORDER BY started_at LIMIT $3",
            )
            .bind(TripStatus::Open.code())
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

    fn outbox(&self, limit: usize) -> BoxFuture<'_, Result<Vec<OutboxMessage>, Error>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT charge_key, status, created_at FROM payment_outbox ORDER BY seq LIMIT $1",
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
                    })
                })
                .collect()
        })
    }

    fn ledger_report(&self) -> BoxFuture<'_, Result<LedgerReport, Error>> {
        Box::pin(async move {
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
                   (SELECT count(*) FROM payment_ledger l WHERE NOT EXISTS \
                      (SELECT 1 FROM payment_charges c WHERE c.charge_key = l.charge_key)) AS orphans, \
                   (SELECT count(*) FROM payment_charges) AS charges, \
                   (SELECT count(*) FROM payment_charges WHERE status = 6) AS cancelled, \
                   (SELECT COALESCE(sum(amount), 0)::TEXT FROM payment_charges WHERE status <> 6) AS live \
                 FROM payment_ledger",
            )
            .fetch_one(&self.pool)
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
                charges: count(row.try_get("charges")?)?,
                cancelled_charges: count(row.try_get("cancelled")?)?,
                live_charged: big("live")?,
                orphan_postings: count(row.try_get("orphans")?)?,
            })
        })
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
