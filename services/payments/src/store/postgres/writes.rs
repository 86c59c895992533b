//! A [`Write`] of the tap rules, made in the rider's transaction: trips (upserted),
//! tap records (a key once), charges with their posting and outbox row (a key once:
//! `ON CONFLICT DO NOTHING`, and then nothing else is written), cancellations with
//! their reversal, refunds (once per charge).

use sqlx::PgConnection;

use super::rows::{CANCELLED, CHARGE_COLUMNS, charge_from, fen, secs};
use crate::charge::{Charge, ChargeStatus};
use crate::decision::Write;
use crate::error::Error;
use crate::fare::Fare;
use crate::ledger::{Posting, PostingKind};
use crate::money::Fen;
use crate::outbox::OutboxStatus;
use crate::trip::{Tap, Trip, TripId, fare_class_code, mode_code};

/// Inserts the trip or replaces every column of the stored one (as the memory store
/// replaces the whole trip).
pub(super) async fn put_trip(conn: &mut PgConnection, trip: &Trip) -> Result<(), Error> {
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
         ON CONFLICT (trip_id) DO UPDATE SET transit_account = EXCLUDED.transit_account, \
           mode = EXCLUDED.mode, status = EXCLUDED.status, fare_class = EXCLUDED.fare_class, \
           started_at = EXCLUDED.started_at, entry_gate = EXCLUDED.entry_gate, \
           entry_place = EXCLUDED.entry_place, entry_scan = EXCLUDED.entry_scan, \
           entry_at = EXCLUDED.entry_at, \
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

/// A posting's two ledger rows, `$1`–`$10` of the statements below (as
/// [`bind_posting`] binds them).
const POSTING_ROWS: &str = "($1, 0::SMALLINT, $2, $3, $4, $5, $6, $7), \
                            ($1, 1::SMALLINT, $2, $3, $8, $9, $10, $7)";

/// Binds `posting` as [`POSTING_ROWS`] reads it.
fn bind_posting<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    posting: &'q Posting,
) -> Result<sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>, Error> {
    let [first, second] = &posting.entries;
    Ok(query
        .bind(posting.id.0.as_slice())
        .bind(posting.kind.code())
        .bind(posting.charge.0.as_slice())
        .bind(first.account.kind_code())
        .bind(first.account.name())
        .bind(first.amount)
        .bind(secs(posting.at)?)
        .bind(second.account.kind_code())
        .bind(second.account.name())
        .bind(second.amount))
}

/// A posting's two rows in one statement.
pub(super) async fn insert_posting(
    conn: &mut PgConnection,
    posting: &Posting,
) -> Result<(), Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "INSERT INTO payment_ledger (posting_id, seq, kind, charge_key, account_kind, account, amount, at) \
         SELECT posting_id, seq, kind, charge_key, account_kind, account, amount, at \
         FROM (VALUES {POSTING_ROWS}) \
           AS e(posting_id, seq, kind, charge_key, account_kind, account, amount, at)"
        )
    });
    bind_posting(sqlx::query(&SQL), posting)?
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A charge with its posting and (when pending) its outbox row, in one statement: the
/// posting and the outbox row are written only when the charge's key is new (a
/// charge written before gets no second posting and no second outbox row).
pub(super) async fn insert_charge(conn: &mut PgConnection, charge: &Charge) -> Result<(), Error> {
    let posting = Posting::charge(charge).ok_or(Error::AmountOutOfRange("charge"))?;
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH charge AS ( \
           INSERT INTO payment_charges (charge_key, trip_id, transit_account, link_id, provider, \
             operator, amount, status, decline_code, created_at, settled_at, provider_key) \
           VALUES ($3, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
           ON CONFLICT (charge_key) DO NOTHING RETURNING charge_key \
         ), posting AS ( \
           INSERT INTO payment_ledger (posting_id, seq, kind, charge_key, account_kind, account, amount, at) \
           SELECT e.posting_id, e.seq, e.kind, e.charge_key, e.account_kind, e.account, e.amount, e.at \
           FROM charge, (VALUES {POSTING_ROWS}) \
             AS e(posting_id, seq, kind, charge_key, account_kind, account, amount, at) \
         ) \
         INSERT INTO payment_outbox (charge_key, status, created_at) \
         SELECT charge_key, $22, $19 FROM charge WHERE $23"
        )
    });
    bind_posting(sqlx::query(&SQL), &posting)?
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
        .bind(charge.provider_key.0.as_slice())
        .bind(OutboxStatus::Pending.code())
        .bind(charge.status == ChargeStatus::Pending)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn cancel_charge(
    conn: &mut PgConnection,
    trip: TripId,
    at: u64,
) -> Result<(), Error> {
    // The charge's lock first (the worker's dispatch takes it too), then its outbox
    // row read by a statement of its own: under READ COMMITTED a statement that waited
    // on the charge's lock re-checks only the locked row, so an outbox status joined
    // into it would be the one from before a dispatch that held the lock; a new
    // statement sees what that dispatch committed.
    let Some(mut charge) = lock_live_charge(conn, trip).await? else {
        return Ok(());
    };
    if refunded(conn, &charge).await? {
        return Err(Error::VoidTooLate("its charge has been refunded in part"));
    }
    let outbox: Option<i16> =
        sqlx::query_scalar("SELECT status FROM payment_outbox WHERE charge_key = $1 FOR UPDATE")
            .bind(charge.key.0.as_slice())
            .fetch_optional(&mut *conn)
            .await?;
    let sent = outbox == Some(OutboxStatus::Dispatched.code())
        || outbox == Some(OutboxStatus::Done.code())
        || !matches!(
            charge.status,
            ChargeStatus::Pending | ChargeStatus::Declined
        );
    if sent {
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

/// The trip's live (not cancelled) charge, locked for this transaction: a
/// cancellation, a refund and the worker's dispatch all take this lock first.
async fn lock_live_charge(conn: &mut PgConnection, trip: TripId) -> Result<Option<Charge>, Error> {
    let sql = format!(
        "SELECT {CHARGE_COLUMNS} FROM payment_charges c \
         WHERE c.trip_id = $1 AND c.status <> $2 FOR UPDATE"
    );
    sqlx::query(&sql)
        .bind(trip.0.as_slice())
        .bind(CANCELLED)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| charge_from(&row))
        .transpose()
}

/// Whether the charge has its refund posting.
async fn refunded(conn: &mut PgConnection, charge: &Charge) -> Result<bool, Error> {
    let kind = PostingKind::Refund.code();
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM payment_ledger WHERE charge_key = $1 AND kind = $2)",
    )
    .bind(charge.key.0.as_slice())
    .bind(kind)
    .fetch_one(&mut *conn)
    .await?)
}

/// Returns `amount` of the trip's live charge, once (see [`Write::Refund`]). The
/// charge's lock first, as a cancellation takes it.
pub(super) async fn refund(
    conn: &mut PgConnection,
    trip: TripId,
    amount: Fen,
    at: u64,
) -> Result<(), Error> {
    let Some(charge) = lock_live_charge(conn, trip).await? else {
        return Ok(());
    };
    if refunded(conn, &charge).await? {
        return Ok(());
    }
    let posting = Posting::refund(&charge, amount, at).ok_or(Error::AmountOutOfRange("refund"))?;
    insert_posting(conn, &posting).await
}

pub(super) async fn apply(conn: &mut PgConnection, write: &Write) -> Result<(), Error> {
    match write {
        Write::PutTrip(trip) => put_trip(conn, trip).await,
        Write::RecordTap(record) => {
            let inserted = sqlx::query(
                "INSERT INTO payment_taps (tap_key, trip_id, side, at, voided, late) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tap_key) DO NOTHING",
            )
            .bind(record.key.0.as_slice())
            .bind(record.trip.0.as_slice())
            .bind(record.side.code())
            .bind(secs(record.at)?)
            .bind(record.voided)
            .bind(record.late)
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
        Write::Refund { trip, amount, at } => refund(conn, *trip, *amount, *at).await,
        Write::Requeue {
            charge,
            provider_key,
            link,
            at,
        } => {
            let updated = sqlx::query(
                "UPDATE payment_charges SET status = $2, provider_key = $3, link_id = $4, \
                   provider = $5, decline_code = NULL, settled_at = NULL \
                 WHERE charge_key = $1 AND status = $6",
            )
            .bind(charge.0.as_slice())
            .bind(ChargeStatus::Pending.code())
            .bind(provider_key.0.as_slice())
            .bind(link.0.0.as_slice())
            .bind(link.1.code())
            .bind(ChargeStatus::Declined.code())
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if updated == 1 {
                sqlx::query(
                    "INSERT INTO payment_outbox (charge_key, status, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (charge_key) DO UPDATE SET status = EXCLUDED.status, next_attempt_at = 0",
                )
                .bind(charge.0.as_slice())
                .bind(OutboxStatus::Pending.code())
                .bind(secs(*at)?)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }
    }
}
