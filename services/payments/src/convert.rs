//! Messages in, model types out, and back: the request's shape is checked here
//! (INVALID_ARGUMENT naming the field), so the logic never sees a prost type.

use citypass_device_proof::{Proof, SignedRequest, body_sha256};
use citypass_proto::v1;
use citypass_token::DeviceId;

use crate::account::TransitAccount;
use crate::charge::{Charge, ChargeStatus};
use crate::citizen::DeviceCall;
use crate::error::Error;
use crate::fare::{FareClass, Mode};
use crate::link::{Link, Provider};
use crate::money::Fen;
use crate::notification::{Applied, SignedNotification};
use crate::payments::Arrears;
use crate::settlement::DailySettlement;
use crate::store::{TripCursor, TripPage, TripQuery, TripView};
use crate::tap::{LateKind, LateTap, Place, Refusal, TapIn, TapOut, Void};
use crate::trip::{Tap, TapKey, TripStatus};

/// The currency of every amount.
pub const CURRENCY: &str = "CNY";

/// The transit account of a request.
pub fn account(text: &str) -> Result<TransitAccount, Error> {
    if text.is_empty() {
        return Err(Error::invalid(TransitAccount::FIELD, "is required"));
    }
    TransitAccount::parse(text).ok_or_else(|| {
        Error::invalid(
            TransitAccount::FIELD,
            "must be 32 lower-case hexadecimal characters",
        )
    })
}

/// A fare class; UNSPECIFIED is priced as adult (common.proto).
pub fn fare_class(value: i32) -> Result<FareClass, Error> {
    match v1::FareClass::try_from(value) {
        Ok(v1::FareClass::Unspecified | v1::FareClass::Adult) => Ok(FareClass::Adult),
        Ok(v1::FareClass::Student) => Ok(FareClass::Student),
        Ok(v1::FareClass::Senior) => Ok(FareClass::Senior),
        Ok(v1::FareClass::Disabled) => Ok(FareClass::Disabled),
        Err(_) => Err(Error::invalid("fare_class", "is not a known fare class")),
    }
}

fn fare_class_to_api(class: FareClass) -> v1::FareClass {
    match class {
        FareClass::Adult => v1::FareClass::Adult,
        FareClass::Student => v1::FareClass::Student,
        FareClass::Senior => v1::FareClass::Senior,
        FareClass::Disabled => v1::FareClass::Disabled,
    }
}

/// The server's clock and how far a gate's `tapped_at` may be from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// The server's time, Unix seconds.
    pub now: u64,
    /// The largest difference accepted, either way.
    pub max_skew: std::time::Duration,
}

impl Clock {
    /// The server's clock now, with `max_skew`.
    pub fn now(max_skew: std::time::Duration) -> Self {
        Clock {
            now: citypass_token::unix_now(),
            max_skew,
        }
    }

    /// `at` if it is at most `window` before `now` and at most `max_skew` after it
    /// (a late tap: the gate's scan time), else INVALID_ARGUMENT naming `field`.
    pub fn check_late(
        &self,
        field: &'static str,
        at: u64,
        window: std::time::Duration,
    ) -> Result<u64, Error> {
        if at > self.now.saturating_add(self.max_skew.as_secs()) {
            return Err(Error::invalid(
                field,
                format!(
                    "is more than {} s ahead of the server's clock",
                    self.max_skew.as_secs()
                ),
            ));
        }
        if at < self.now.saturating_sub(window.as_secs()) {
            return Err(Error::invalid(
                field,
                format!(
                    "is more than {} s before the server's clock (the late-tap window)",
                    window.as_secs()
                ),
            ));
        }
        Ok(at)
    }

    /// `at` if it is within `max_skew` of `now`, else INVALID_ARGUMENT naming `field`.
    pub fn check(&self, field: &'static str, at: u64) -> Result<u64, Error> {
        if at.abs_diff(self.now) > self.max_skew.as_secs() {
            return Err(Error::invalid(
                field,
                format!(
                    "is more than {} s from the server's clock",
                    self.max_skew.as_secs()
                ),
            ));
        }
        Ok(at)
    }
}

fn tapped_at(at: Option<&citypass_proto::prost_types::Timestamp>) -> Result<u64, Error> {
    time("tapped_at", at)
}

/// A required time named `field`, Unix seconds.
fn time(
    field: &'static str,
    at: Option<&citypass_proto::prost_types::Timestamp>,
) -> Result<u64, Error> {
    let at = at.ok_or_else(|| Error::invalid(field, "is required"))?;
    optional_time(field, Some(at)).map(|t| t.unwrap_or_default())
}

/// An optional time named `field`, Unix seconds.
fn optional_time(
    field: &'static str,
    at: Option<&citypass_proto::prost_types::Timestamp>,
) -> Result<Option<u64>, Error> {
    let Some(at) = at else { return Ok(None) };
    if !(0..1_000_000_000).contains(&at.nanos) {
        return Err(Error::invalid(field, "nanos must be 0 to 999 999 999"));
    }
    citypass_proto::time::seconds(at)
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "must not be before 1970"))
}

/// A citizen's request: signed by a device, naming that device and, optionally, the
/// transit account it acts for.
pub trait CitizenRequest: SignedRequest {
    /// The device id and the transit account (empty: none), as sent.
    fn ids(&self) -> (String, String);
}

macro_rules! citizen_request {
    ($($request:ty),* $(,)?) => {
        $(impl CitizenRequest for $request {
            fn ids(&self) -> (String, String) {
                (self.device_id.clone(), self.transit_account.clone())
            }
        })*
    };
}

citizen_request!(
    v1::LinkAccountRequest,
    v1::UnlinkAccountRequest,
    v1::GetLinkRequest,
    v1::GetTripsRequest,
    v1::GetArrearsRequest,
    v1::RepayArrearsRequest,
);

/// The device-signed part of a citizen's request: the proof taken out, the body hashed
/// with it unset (the re-encoding of what was decoded, so unknown fields fail the
/// signature), the device id parsed, and the transit account the request names (empty:
/// none).
pub fn device_call<R: CitizenRequest>(request: &mut R) -> Result<DeviceCall, Error> {
    let (device_id, transit_account) = request.ids();
    let proof = request.proof_mut().take();
    let body_sha256 = body_sha256(request);
    if device_id.is_empty() {
        return Err(Error::invalid("device_id", "is required"));
    }
    let device = DeviceId::parse(&device_id)
        .map_err(|_| Error::invalid("device_id", "is not a device id"))?;
    let account = match transit_account.as_str() {
        "" => None,
        text => Some(account(text)?),
    };
    Ok(DeviceCall {
        method: R::METHOD,
        device,
        proof: proof.map(Proof::from),
        body_sha256,
        account,
    })
}

/// A citizen's call that asks for nothing beyond its account (UnlinkAccount, GetLink,
/// GetArrears): the device's call alone.
pub fn bare_call<R: CitizenRequest>(mut request: R) -> Result<(DeviceCall, ()), Error> {
    Ok((device_call(&mut request)?, ()))
}

/// A LinkAccount request's link, owned (the account comes from the device).
#[derive(Clone)]
pub struct LinkForm {
    /// The provider.
    pub provider: Provider,
    /// The provider's token (checked by the logic).
    pub token: String,
    /// Last 4 digits (checked by the logic).
    pub last4: String,
    /// The consent text's version (checked by the logic).
    pub consent_version: String,
    /// When the citizen consented (the app's clock).
    pub consented_at: u64,
}

impl std::fmt::Debug for LinkForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkForm")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// A provider's wire value; UNSPECIFIED and unknown values are refused.
pub fn provider(value: i32) -> Result<Provider, Error> {
    match v1::PaymentProvider::try_from(value) {
        Ok(v1::PaymentProvider::Sandbox) => Ok(Provider::Sandbox),
        Ok(v1::PaymentProvider::Alipay) => Ok(Provider::Alipay),
        Ok(v1::PaymentProvider::WechatPay) => Ok(Provider::WechatPay),
        Ok(v1::PaymentProvider::Unionpay) => Ok(Provider::UnionPay),
        _ => Err(Error::invalid("provider", "must name a payment provider")),
    }
}

/// A NotifyCharge request: its provider, key id, body and signature (checked for
/// shape and size only; [`crate::notification::NotificationKeys::verify`] checks the
/// signature).
pub fn notify_charge(request: v1::NotifyChargeRequest) -> Result<SignedNotification, Error> {
    let provider = provider(request.provider)?;
    if request.key_id.is_empty() || request.key_id.len() > 64 {
        return Err(Error::invalid("key_id", "1 to 64 bytes"));
    }
    if request.body.is_empty() || request.body.len() > crate::notification::MAX_BODY_BYTES {
        return Err(Error::invalid("body", "1 byte to 4 KiB"));
    }
    if request.signature.is_empty() || request.signature.len() > 512 {
        return Err(Error::invalid("signature", "1 to 512 bytes"));
    }
    Ok(SignedNotification {
        provider,
        key_id: request.key_id,
        body: request.body,
        signature: request.signature,
    })
}

/// What a notification did, and its charge's status after it.
pub fn notified(applied: Applied, charge: &Charge) -> v1::NotifyChargeResponse {
    let outcome = match applied {
        Applied::Now => v1::NotificationOutcome::Applied,
        Applied::Already => v1::NotificationOutcome::AlreadyApplied,
        Applied::Superseded => v1::NotificationOutcome::Superseded,
    };
    v1::NotifyChargeResponse {
        outcome: outcome as i32,
        status: charge_status_to_api(charge.status) as i32,
    }
}

fn provider_to_api(provider: Provider) -> v1::PaymentProvider {
    match provider {
        Provider::Sandbox => v1::PaymentProvider::Sandbox,
        Provider::Alipay => v1::PaymentProvider::Alipay,
        Provider::WechatPay => v1::PaymentProvider::WechatPay,
        Provider::UnionPay => v1::PaymentProvider::Unionpay,
    }
}

/// LinkAccount: the device's call and the link asked for.
pub fn link_account(mut request: v1::LinkAccountRequest) -> Result<(DeviceCall, LinkForm), Error> {
    let call = device_call(&mut request)?;
    let consent = request
        .consent
        .ok_or_else(|| Error::invalid("consent", "is required"))?;
    Ok((
        call,
        LinkForm {
            provider: provider(request.provider)?,
            token: request.provider_token,
            last4: request.last4,
            consent_version: consent.text_version,
            consented_at: time("consent.consented_at", consent.consented_at.as_ref())?,
        },
    ))
}

/// The page token of a cursor: the last trip's start and id, hex.
pub fn page_token(cursor: &TripCursor) -> String {
    let mut bytes = Vec::with_capacity(24);
    bytes.extend_from_slice(&cursor.started_at.to_be_bytes());
    bytes.extend_from_slice(&cursor.id.0);
    hex::encode(bytes)
}

fn cursor(token: &str) -> Result<Option<TripCursor>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed = || Error::invalid("page_token", "is not a token this service gave");
    let bytes = hex::decode(token).map_err(|_| malformed())?;
    if bytes.len() != 24 {
        return Err(malformed());
    }
    let (started, id) = bytes.split_at(8);
    let started_at = u64::from_be_bytes(started.try_into().map_err(|_| malformed())?);
    let id = TapKey::from_slice(id).ok_or_else(malformed)?;
    Ok(Some(TripCursor { started_at, id }))
}

/// GetTrips: the device's call and the page asked for (`limit` 0: the default; the
/// logic caps it).
pub fn get_trips(mut request: v1::GetTripsRequest) -> Result<(DeviceCall, TripQuery), Error> {
    let call = device_call(&mut request)?;
    let query = TripQuery {
        since: optional_time("since", request.since.as_ref())?,
        until: optional_time("until", request.until.as_ref())?,
        after: cursor(&request.page_token)?,
        limit: usize::try_from(request.page_size).unwrap_or(usize::MAX),
    };
    Ok((call, query))
}

/// RepayArrears: the device's call and the caller's idempotency key.
pub fn repay_arrears(mut request: v1::RepayArrearsRequest) -> Result<(DeviceCall, String), Error> {
    let call = device_call(&mut request)?;
    if request.idempotency_key.is_empty() {
        return Err(Error::invalid("idempotency_key", "is required"));
    }
    Ok((call, request.idempotency_key))
}

/// A link as the API shows it (never its token).
pub fn link(link: &Link) -> v1::PaymentLink {
    v1::PaymentLink {
        link_id: link.id.to_string(),
        transit_account: link.account.to_string(),
        provider: provider_to_api(link.provider) as i32,
        last4: link.last4.as_str().to_owned(),
        status: if link.is_active() {
            v1::LinkStatus::Active
        } else {
            v1::LinkStatus::Unlinked
        } as i32,
        consent: Some(v1::Consent {
            text_version: link.consent.text_version.clone(),
            consented_at: Some(citypass_proto::time::timestamp(link.consent.consented_at)),
        }),
        linked_at: Some(citypass_proto::time::timestamp(link.linked_at)),
        unlinked_at: link.unlinked_at.map(citypass_proto::time::timestamp),
    }
}

fn charge_status_to_api(status: ChargeStatus) -> v1::ChargeStatus {
    match status {
        ChargeStatus::Pending => v1::ChargeStatus::Pending,
        ChargeStatus::Succeeded => v1::ChargeStatus::Succeeded,
        ChargeStatus::Declined => v1::ChargeStatus::Declined,
        ChargeStatus::Retrying => v1::ChargeStatus::Retrying,
        // Never shown: a cancelled charge is not owed and not listed.
        ChargeStatus::Cancelled => v1::ChargeStatus::NotRequired,
    }
}

/// A charge as the API shows it.
pub fn charge(charge: &Charge) -> v1::Charge {
    v1::Charge {
        charge_id: charge.key.to_string(),
        trip_id: charge.trip.to_string(),
        amount: Some(money(charge.amount)),
        status: charge_status_to_api(charge.status) as i32,
        decline_code: charge.decline_code.clone().unwrap_or_default(),
        created_at: Some(citypass_proto::time::timestamp(charge.created_at)),
        settled_at: charge.settled_at.map(citypass_proto::time::timestamp),
    }
}

/// A page of trips; a voided trip is shown VOIDED.
pub fn trips(page: &TripPage) -> Result<v1::GetTripsResponse, Error> {
    Ok(v1::GetTripsResponse {
        trips: page
            .trips
            .iter()
            .map(trip_or_voided)
            .collect::<Result<_, _>>()?,
        next_page_token: page.next.as_ref().map(page_token).unwrap_or_default(),
    })
}

/// What is owed.
pub fn arrears(arrears: &Arrears) -> v1::GetArrearsResponse {
    v1::GetArrearsResponse {
        in_arrears: arrears.total > Fen::ZERO,
        total: Some(money(arrears.total)),
        charges: arrears.charges.iter().map(charge).collect(),
    }
}

/// A VoidTap request; `voided_at` is checked against the server's clock by the logic.
pub fn void_tap(request: v1::VoidTapRequest) -> Result<Void, Error> {
    Ok(Void {
        account: account(&request.transit_account)?,
        gate_id: request.gate_id,
        scan_id: request.scan_id,
        at: time("voided_at", request.voided_at.as_ref())?,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian `YYYY-MM-DD` (field `date`).
pub fn date(text: &str) -> Result<i64, Error> {
    let malformed = || Error::invalid("date", "must be a date YYYY-MM-DD");
    let bytes = text.as_bytes();
    if bytes.len() != 10
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit())
    {
        return Err(malformed());
    }
    let number = |range: std::ops::Range<usize>| {
        text.get(range)
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(malformed)
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(malformed()),
    };
    if !(1..=days_in_month).contains(&day) {
        return Err(malformed());
    }
    Ok(days_from_civil(year, month, day))
}

/// Howard Hinnant's days_from_civil.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A day's settlement as the API shows it.
pub fn settlement(date: &str, settlement: &DailySettlement) -> v1::GetSettlementResponse {
    v1::GetSettlementResponse {
        date: date.to_owned(),
        operators: settlement
            .lines
            .iter()
            .map(|line| v1::OperatorSettlement {
                operator: line.operator.clone(),
                charges: line.charges,
                due: Some(money(line.due)),
                confirmed: Some(money(line.confirmed)),
                pending: Some(money(line.pending)),
                declined: Some(money(line.declined)),
                refunded: Some(money(line.refunded)),
            })
            .collect(),
        csv: settlement.to_csv(),
    }
}

/// A TapIn request: SCENE_METRO (an entry at `station_id`) or SCENE_BUS (a boarding on
/// the route named by `station_id`).
/// `tapped_at` must be within the clock's skew of the server's time.
pub fn tap_in(request: v1::TapInRequest, clock: &Clock) -> Result<TapIn, Error> {
    let place = match v1::Scene::try_from(request.scene) {
        Ok(v1::Scene::Metro) => Place::Metro(request.station_id),
        Ok(v1::Scene::Bus) => Place::Bus(request.station_id),
        _ => return Err(Error::invalid("scene", "must be SCENE_METRO or SCENE_BUS")),
    };
    Ok(TapIn {
        account: account(&request.transit_account)?,
        gate_id: request.gate_id,
        scan_id: request.scan_id,
        place,
        at: clock.check("tapped_at", tapped_at(request.tapped_at.as_ref())?)?,
        fare_class: fare_class(request.fare_class)?,
    })
}

/// A TapOut request; `tapped_at` as for [`tap_in`].
pub fn tap_out(request: v1::TapOutRequest, clock: &Clock) -> Result<TapOut, Error> {
    Ok(TapOut {
        account: account(&request.transit_account)?,
        gate_id: request.gate_id,
        scan_id: request.scan_id,
        station: request.station_id,
        at: clock.check("tapped_at", tapped_at(request.tapped_at.as_ref())?)?,
        fare_class: fare_class(request.fare_class)?,
    })
}

/// A RecordOfflineTap request; `tapped_at` within `window` before the server's clock
/// (and the skew after it).
pub fn offline_tap(
    request: v1::RecordOfflineTapRequest,
    clock: &Clock,
    window: std::time::Duration,
) -> Result<LateTap, Error> {
    let kind = match v1::OfflineTapKind::try_from(request.kind) {
        Ok(v1::OfflineTapKind::MetroEntry) => LateKind::MetroEntry,
        Ok(v1::OfflineTapKind::MetroExit) => LateKind::MetroExit,
        Ok(v1::OfflineTapKind::Bus) => LateKind::Bus,
        _ => {
            return Err(Error::invalid(
                "kind",
                "must be METRO_ENTRY, METRO_EXIT or BUS",
            ));
        }
    };
    Ok(LateTap {
        account: account(&request.transit_account)?,
        kind,
        gate_id: request.gate_id,
        scan_id: request.scan_id,
        place: request.station_id,
        at: clock.check_late("tapped_at", tapped_at(request.tapped_at.as_ref())?, window)?,
        fare_class: fare_class(request.fare_class)?,
    })
}

/// An amount in CNY.
pub fn money(amount: Fen) -> v1::Money {
    v1::Money {
        currency_code: CURRENCY.to_owned(),
        // Amounts are bounded by the fare table, far inside i64.
        minor_units: i64::try_from(amount.get()).unwrap_or(i64::MAX),
    }
}

/// A refusal's wire value.
pub fn refusal(refusal: Refusal) -> v1::TapRefusal {
    match refusal {
        Refusal::NoPaymentLink => v1::TapRefusal::NoPaymentLink,
        Refusal::Arrears => v1::TapRefusal::Arrears,
        Refusal::TripAlreadyOpen => v1::TapRefusal::TripAlreadyOpen,
    }
}

fn charge_status(view: &TripView) -> v1::ChargeStatus {
    match view.charge.as_ref().map(|c| c.status) {
        None => v1::ChargeStatus::NotRequired,
        Some(ChargeStatus::Pending) => v1::ChargeStatus::Pending,
        Some(ChargeStatus::Succeeded) => v1::ChargeStatus::Succeeded,
        Some(ChargeStatus::Declined) => v1::ChargeStatus::Declined,
        Some(ChargeStatus::Retrying) => v1::ChargeStatus::Retrying,
        // Not live: never in a view.
        Some(ChargeStatus::Cancelled) => v1::ChargeStatus::NotRequired,
    }
}

/// A trip as a tap's answer shows it. A VOIDED trip is [`Error::TapVoided`]: a tap
/// answered with a voided trip was itself a repeat of the voided tap.
pub fn trip(view: &TripView) -> Result<v1::Trip, Error> {
    if view.trip.status == TripStatus::Voided {
        return Err(Error::TapVoided);
    }
    trip_or_voided(view)
}

/// A trip as listings and VoidTap show it: VOIDED included.
pub fn trip_or_voided(view: &TripView) -> Result<v1::Trip, Error> {
    let trip = &view.trip;
    let status = match trip.status {
        TripStatus::Open => v1::TripStatus::Open,
        TripStatus::Closed => v1::TripStatus::Closed,
        TripStatus::Unmatched => v1::TripStatus::Unmatched,
        TripStatus::Voided => v1::TripStatus::Voided,
    };
    let place = |tap: &Option<Tap>| tap.as_ref().map(|t| t.place.clone()).unwrap_or_default();
    let gate = |tap: &Option<Tap>| tap.as_ref().map(|t| t.gate_id.clone()).unwrap_or_default();
    let at = |tap: &Option<Tap>| tap.as_ref().map(|t| citypass_proto::time::timestamp(t.at));
    Ok(v1::Trip {
        trip_id: trip.id.to_string(),
        transit_account: trip.account.to_string(),
        scene: match trip.mode {
            Mode::Metro => v1::Scene::Metro,
            Mode::Bus => v1::Scene::Bus,
        } as i32,
        status: status as i32,
        fare_class: fare_class_to_api(trip.fare_class) as i32,
        entry_station_id: place(&trip.entry),
        entry_gate_id: gate(&trip.entry),
        entered_at: at(&trip.entry),
        exit_station_id: place(&trip.exit),
        exit_gate_id: gate(&trip.exit),
        exited_at: at(&trip.exit),
        fare: Some(money(trip.due())),
        charge_status: charge_status(view) as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_proto::prost_types::Timestamp;

    fn request() -> v1::TapInRequest {
        v1::TapInRequest {
            transit_account: "00112233445566778899aabbccddeeff".to_owned(),
            scene: v1::Scene::Metro as i32,
            gate_id: "g".to_owned(),
            station_id: "xidan".to_owned(),
            scan_id: "s".to_owned(),
            tapped_at: Some(Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            fare_class: 0,
        }
    }

    const CLOCK: Clock = Clock {
        now: 1_800_000_000,
        max_skew: std::time::Duration::from_secs(300),
    };

    #[test]
    fn a_time_far_from_the_servers_clock_is_refused() {
        for (offset, ok) in [
            (-301, false),
            (-300, true),
            (0, true),
            (300, true),
            (301, false),
        ] {
            let mut request = request();
            request.tapped_at = Some(Timestamp {
                seconds: 1_800_000_000 + offset,
                nanos: 0,
            });
            let out = v1::TapOutRequest {
                transit_account: request.transit_account.clone(),
                gate_id: "g".to_owned(),
                station_id: "xidan".to_owned(),
                scan_id: "s".to_owned(),
                tapped_at: request.tapped_at,
                fare_class: 0,
            };
            for result in [
                tap_in(request, &CLOCK).map(|t| t.at),
                tap_out(out, &CLOCK).map(|t| t.at),
            ] {
                match result {
                    Ok(at) => assert!(ok && at == 1_800_000_000_u64.saturating_add_signed(offset)),
                    Err(Error::InvalidArgument { field, reason }) => {
                        assert!(!ok, "{offset}");
                        assert_eq!(field, "tapped_at");
                        assert!(reason.contains("server's clock"), "{reason}");
                    }
                    Err(other) => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn dates_and_page_tokens() {
        assert_eq!(date("1970-01-01").unwrap(), 0);
        assert_eq!(date("2026-12-03").unwrap(), 20_790);
        assert_eq!(date("2024-02-29").unwrap(), 19_782);
        for bad in [
            "2025-02-29",
            "2026-13-01",
            "2026-1-01",
            "20261203",
            "2026-12-3x",
            "",
        ] {
            assert!(
                matches!(date(bad), Err(Error::InvalidArgument { field: "date", .. })),
                "{bad}"
            );
        }
        let cursor = TripCursor {
            started_at: 1_800_000_000,
            id: TapKey::of("g", "s"),
        };
        assert_eq!(super::cursor(&page_token(&cursor)).unwrap(), Some(cursor));
        assert_eq!(super::cursor("").unwrap(), None);
        for bad in ["zz", "00", &"0".repeat(50)] {
            assert!(matches!(
                super::cursor(bad),
                Err(Error::InvalidArgument {
                    field: "page_token",
                    ..
                })
            ));
        }
    }

    #[test]
    fn each_malformed_field_is_named() {
        let tap = tap_in(request(), &CLOCK).unwrap();
        assert_eq!(tap.place, Place::Metro("xidan".to_owned()));
        assert_eq!(tap.fare_class, FareClass::Adult, "unspecified is adult");
        type Spoil = fn(&mut v1::TapInRequest);
        let cases: [(Spoil, &str); 6] = [
            (|r| r.transit_account.clear(), "transit_account"),
            (|r| r.transit_account = "ABC".to_owned(), "transit_account"),
            (|r| r.scene = v1::Scene::Hospital as i32, "scene"),
            (|r| r.tapped_at = None, "tapped_at"),
            (
                |r| {
                    r.tapped_at = Some(Timestamp {
                        seconds: -1,
                        nanos: 0,
                    })
                },
                "tapped_at",
            ),
            (|r| r.fare_class = 99, "fare_class"),
        ];
        for (spoil, field) in cases {
            let mut request = request();
            spoil(&mut request);
            match tap_in(request, &CLOCK) {
                Err(Error::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
