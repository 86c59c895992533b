//! The rider's lock and state: what every tap reads before the rules decide, in as
//! few round trips as the lock's ordering allows.
//!
//! A tap holds a pooled connection for all of its statements, so each round trip
//! taken off the tap is throughput on the same pool (BENCHMARKS.md run 9: payments'
//! TapIn on PostgreSQL bounded the transit gates). The lock stays a statement of its
//! own, since under READ COMMITTED only a statement that starts after the lock is
//! granted sees what the previous holder committed (a read joined into the locking
//! statement would see the rows as they were before it waited). After it:
//!
//! 1. the active link, and whether any charge is declined (the declined charges
//!    themselves are read only when there are some: arrears are rare);
//! 2. the tap's record under its key, joined with its trip (a new tap finds none;
//!    for a known one, the trip's other taps follow);
//! 3. the open trip and the recent ones in one `UNION ALL`, each half on its index;
//!    the window reaches further back than two days before the tap only when the
//!    open trip started before the tap, and the rest of it is then read apart.
//!
//! The statuses these read by are written into the SQL as the constants they are,
//! not bound: a prepared statement's generic plan cannot use a partial index
//! (`payment_trips_one_open`, `payment_charges_declined`) for a bound status. Each
//! statement's text is built once (`LazyLock`), not on every tap.

use std::sync::LazyLock;

use sqlx::{PgConnection, Row};

use super::rows::{
    CHARGE_COLUMNS, LINK_COLUMNS, TRIP_COLUMNS, charge_from, key16, link_from, secs, trip_from,
    u64_of,
};
use crate::account::TransitAccount;
use crate::charge::{Charge, ChargeStatus};
use crate::decision::{RiderState, arrears_of, window_start};
use crate::error::Error;
use crate::link::Link;
use crate::trip::{Side, TapKey, TapRecord, Trip, TripStatus};

/// Locks the rider's row until the transaction ends, creating it first for a rider
/// never seen: one statement for every tap but a rider's first.
pub(super) async fn lock_rider(
    conn: &mut PgConnection,
    account: TransitAccount,
) -> Result<(), Error> {
    let lock = || {
        sqlx::query("SELECT 1 FROM payment_riders WHERE transit_account = $1 FOR UPDATE")
            .bind(account.as_bytes().as_slice())
    };
    if lock().fetch_optional(&mut *conn).await?.is_some() {
        return Ok(());
    }
    // Not there when the statement began: create it (waiting for a concurrent first
    // tap's insert to commit or roll back), then lock it; the row is there now, so a
    // lock that finds none is an error, never a tap without its lock.
    sqlx::query("INSERT INTO payment_riders (transit_account) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(account.as_bytes().as_slice())
        .execute(&mut *conn)
        .await?;
    lock().fetch_one(&mut *conn).await?;
    Ok(())
}

/// The rider's state for the rules (see the module's steps), the rider locked first.
pub(super) async fn rider_state(
    conn: &mut PgConnection,
    account: TransitAccount,
    tap: Option<TapKey>,
    at: u64,
) -> Result<RiderState, Error> {
    let (link, any_declined) = link_and_arrears(conn, account).await?;
    let declined = if any_declined {
        declined_charges(conn, account).await?
    } else {
        Vec::new()
    };
    let arrears = arrears_of(&declined)?;
    let tap = match tap {
        None => None,
        Some(key) => tap_with_trip(conn, key).await?,
    };
    let trip_taps = match &tap {
        Some((record, _)) => other_taps(conn, record).await?,
        None => Vec::new(),
    };
    let (open, recent) = trips(conn, account, at).await?;
    Ok(RiderState {
        link,
        arrears,
        declined,
        tap,
        trip_taps,
        open,
        recent,
    })
}

/// The active link, and whether the rider has a declined charge.
async fn link_and_arrears(
    conn: &mut PgConnection,
    account: TransitAccount,
) -> Result<(Option<Link>, bool), Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let declined = ChargeStatus::Declined.code();
        format!(
            "SELECT EXISTS (SELECT 1 FROM payment_charges c \
                            WHERE c.transit_account = $1 AND c.status = {declined}) AS any_declined, \
                    {LINK_COLUMNS} \
             FROM (SELECT 1 AS one) AS rider \
             LEFT JOIN payment_links l ON l.transit_account = $1 AND l.unlinked_at IS NULL"
        )
    });
    let row = sqlx::query(&SQL)
        .bind(account.as_bytes().as_slice())
        .fetch_one(&mut *conn)
        .await?;
    let linked: Option<Vec<u8>> = row.try_get("link_id")?;
    let link = linked.map(|_| link_from(&row)).transpose()?;
    Ok((link, row.try_get("any_declined")?))
}

async fn declined_charges(
    conn: &mut PgConnection,
    account: TransitAccount,
) -> Result<Vec<Charge>, Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {CHARGE_COLUMNS} FROM payment_charges c \
             WHERE c.transit_account = $1 AND c.status = {}",
            ChargeStatus::Declined.code()
        )
    });
    sqlx::query(&SQL)
        .bind(account.as_bytes().as_slice())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(charge_from)
        .collect()
}

/// The tap taken under `key` and its trip, if the key was taken.
async fn tap_with_trip(
    conn: &mut PgConnection,
    key: TapKey,
) -> Result<Option<(TapRecord, Trip)>, Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT p.trip_id AS tap_trip, p.side, p.at, p.voided, p.late, {TRIP_COLUMNS} \
             FROM payment_taps p LEFT JOIN payment_trips t ON t.trip_id = p.trip_id \
             WHERE p.tap_key = $1"
        )
    });
    let Some(row) = sqlx::query(&SQL)
        .bind(key.0.as_slice())
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let trip_id: Option<Vec<u8>> = row.try_get("trip_id")?;
    if trip_id.is_none() {
        return Err(Error::Corrupt("tap without its trip"));
    }
    let record = TapRecord {
        key,
        trip: key16(&row, "tap_trip", TapKey::from_slice)?,
        side: Side::from_code(row.try_get("side")?).ok_or(Error::Corrupt("side"))?,
        at: u64_of(&row, "at")?,
        voided: row.try_get("voided")?,
        late: row.try_get("late")?,
    };
    Ok(Some((record, trip_from(&row)?)))
}

/// The other taps of `record`'s trip.
async fn other_taps(conn: &mut PgConnection, record: &TapRecord) -> Result<Vec<TapRecord>, Error> {
    sqlx::query(
        "SELECT tap_key, side, at, voided, late FROM payment_taps WHERE trip_id = $1 AND tap_key <> $2",
    )
    .bind(record.trip.0.as_slice())
    .bind(record.key.0.as_slice())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(TapRecord {
            key: key16(row, "tap_key", TapKey::from_slice)?,
            trip: record.trip,
            side: Side::from_code(row.try_get("side")?).ok_or(Error::Corrupt("side"))?,
            at: u64_of(row, "at")?,
            voided: row.try_get("voided")?,
            late: row.try_get("late")?,
        })
    })
    .collect()
}

/// The open trip, and the others started since [`window_start`]: one statement
/// unless the open trip started before the tap (a metro exit), when the window's
/// earlier part is read by a second.
async fn trips(
    conn: &mut PgConnection,
    account: TransitAccount,
    at: u64,
) -> Result<(Option<Trip>, Vec<Trip>), Error> {
    static OPEN_AND_RECENT: LazyLock<String> = LazyLock::new(|| {
        let open = TripStatus::Open.code();
        format!(
            "(SELECT {TRIP_COLUMNS} FROM payment_trips t \
              WHERE t.transit_account = $1 AND t.status = {open}) \
             UNION ALL \
             (SELECT {TRIP_COLUMNS} FROM payment_trips t \
              WHERE t.transit_account = $1 AND t.status <> {open} AND t.started_at >= $2)"
        )
    });
    static EARLIER: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {TRIP_COLUMNS} FROM payment_trips t \
             WHERE t.transit_account = $1 AND t.status <> {} \
               AND t.started_at >= $2 AND t.started_at < $3",
            TripStatus::Open.code()
        )
    });
    let from_tap = window_start(at, None);
    let rows = sqlx::query(&OPEN_AND_RECENT)
        .bind(account.as_bytes().as_slice())
        .bind(secs(from_tap)?)
        .fetch_all(&mut *conn)
        .await?;
    let mut open = None;
    let mut recent = Vec::with_capacity(rows.len());
    for row in &rows {
        let trip = trip_from(row)?;
        if trip.status == TripStatus::Open {
            // At most one (a unique index); the first, as the memory store takes it.
            open.get_or_insert(trip);
        } else {
            recent.push(trip);
        }
    }
    let since = window_start(at, open.as_ref());
    if since < from_tap {
        let earlier = sqlx::query(&EARLIER)
            .bind(account.as_bytes().as_slice())
            .bind(secs(since)?)
            .bind(secs(from_tap)?)
            .fetch_all(&mut *conn)
            .await?;
        for row in &earlier {
            recent.push(trip_from(row)?);
        }
    }
    Ok((open, recent))
}
