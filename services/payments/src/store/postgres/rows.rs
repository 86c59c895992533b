//! Values in and out of PostgreSQL: the column lists, and rows decoded into model types
//! (a value that does not decode is [`Error::Corrupt`], naming the column).

use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::account::TransitAccount;
use crate::charge::{Charge, ChargeKey, ChargeStatus};
use crate::error::Error;
use crate::fare::Fare;
use crate::link::{Consent, Last4, Link, LinkId, Provider};
use crate::money::Fen;
use crate::trip::{Tap, TapKey, Trip, TripStatus, fare_class_from_code, mode_from_code};

pub(super) const LINK_COLUMNS: &str = "link_id, transit_account, provider, last4, consent_text_version, \
    consented_at, linked_at, unlinked_at";

pub(super) const TRIP_COLUMNS: &str = "t.trip_id, t.transit_account, t.mode, t.status, t.fare_class, \
    t.entry_gate, t.entry_place, t.entry_scan, t.entry_at, t.exit_gate, t.exit_place, \
    t.exit_scan, t.exit_at, t.fare_operator, t.fare_distance_m, t.fare_base, \
    t.fare_concession, t.fare_transfer, t.fare_capped, t.fare_due";

pub(super) const CHARGE_COLUMNS: &str = "c.charge_key, c.provider_key, c.trip_id, c.transit_account, c.link_id, \
    c.provider, c.operator, c.amount, c.status, c.decline_code, c.created_at, c.settled_at";

pub(super) const CANCELLED: i16 = 6;

pub(super) fn secs(value: u64) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| Error::invalid("tapped_at", "is out of range"))
}

pub(super) fn fen(value: Fen) -> Result<i64, Error> {
    i64::try_from(value.get()).map_err(|_| Error::AmountOutOfRange("fen"))
}

pub(super) fn u64_of(row: &PgRow, column: &'static str) -> Result<u64, Error> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| Error::Corrupt(column))
}

pub(super) fn opt_u64(row: &PgRow, column: &'static str) -> Result<Option<u64>, Error> {
    let value: Option<i64> = row.try_get(column)?;
    value
        .map(|v| u64::try_from(v).map_err(|_| Error::Corrupt(column)))
        .transpose()
}

pub(super) fn key16<T>(
    row: &PgRow,
    column: &'static str,
    make: fn(&[u8]) -> Option<T>,
) -> Result<T, Error> {
    let bytes: Vec<u8> = row.try_get(column)?;
    make(&bytes).ok_or(Error::Corrupt(column))
}

pub(super) fn link_id(bytes: &[u8]) -> Option<LinkId> {
    bytes.try_into().ok().map(LinkId)
}

pub(super) fn link_from(row: &PgRow) -> Result<Link, Error> {
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

pub(super) fn tap_from(row: &PgRow, prefix: &str) -> Result<Option<Tap>, Error> {
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

pub(super) fn trip_from(row: &PgRow) -> Result<Trip, Error> {
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

pub(super) fn charge_from(row: &PgRow) -> Result<Charge, Error> {
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
        provider_key: key16(row, "provider_key", ChargeKey::from_slice)?,
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
