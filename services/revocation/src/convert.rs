//! Between the generated proto messages and the model: the only place that knows both.
//!
//! Requests become [`crate::model`] types here, their shape checked first and without
//! I/O (`INVALID_ARGUMENT`): target kind and id, reasons, timestamps (to whole Unix
//! seconds, rounded up), the List page token, the Snapshot kinds. The rules that need
//! the settings or the clock (bounds of the times, page size caps, the note) are the
//! logic's ([`crate::registry`]). Answers and Watch events become messages here too.
//!
//! Entries (with their chain hashes) and the signed head convert in
//! `citypass_revocation::proto` (feature `proto`), which followers share. Enum numbers
//! are the same on both sides.

use std::num::NonZeroU32;
use std::time::UNIX_EPOCH;

use citypass_proto::prost_types::Timestamp;
use citypass_proto::time::system_timestamp;
use citypass_proto::v1 as pb;
use citypass_revocation::{Kinds, ReinstateReason, RevocationReason, Target, TargetKind};

use crate::error::Error;
pub use citypass_proto::time::timestamp;

use crate::model::{
    EpochSnapshot, ListPage, ListQuery, Record, ReinstateRequest, RevokeRequest, Revoked,
    WatchEvent,
};

/// Prefix of List page tokens: `after:<epoch>`.
const PAGE_TOKEN_PREFIX: &str = "after:";

/// Revoke's request: kind, id, reason and times parsed; the note and the times' bounds
/// are checked by the logic.
pub fn revoke_request(request: pb::RevokeRequest) -> Result<RevokeRequest, Error> {
    let kind = target_kind("target_kind", request.target_kind)?;
    let target = Target::parse(kind, &request.target_id)?;
    let reason = revocation_reason(request.reason)?;
    let revoked_before = request
        .revoked_before
        .as_ref()
        .map(|t| seconds_ceil("revoked_before", t))
        .transpose()?;
    let expires_at = request
        .expires_at
        .as_ref()
        .map(|t| seconds_ceil("expires_at", t))
        .transpose()?;
    Ok(RevokeRequest {
        target,
        reason,
        revoked_before,
        expires_at,
        note: request.note,
    })
}

/// Revoke's answer.
pub fn revoke_response(revoked: &Revoked) -> pb::RevokeResponse {
    pb::RevokeResponse {
        entry: Some(entry(&revoked.entry)),
        cascaded: revoked.cascaded.iter().map(entry).collect(),
    }
}

/// Reinstate's request: kind, id and reason parsed.
pub fn reinstate_request(request: pb::ReinstateRequest) -> Result<ReinstateRequest, Error> {
    let kind = target_kind("target_kind", request.target_kind)?;
    let target = Target::parse(kind, &request.target_id)?;
    let reason = reinstate_reason(request.reason)?;
    Ok(ReinstateRequest {
        target,
        reason,
        note: request.note,
    })
}

/// Reinstate's answer.
pub fn reinstate_response(record: &Record) -> pb::ReinstateResponse {
    pb::ReinstateResponse {
        entry: Some(entry(record)),
    }
}

/// List's request: a page token, when given, wins over `since_epoch`; page size 0 is
/// the server's default.
pub fn list_query(request: &pb::ListRevocationsRequest) -> Result<ListQuery, Error> {
    let since = if request.page_token.is_empty() {
        request.since_epoch
    } else {
        request
            .page_token
            .strip_prefix(PAGE_TOKEN_PREFIX)
            .filter(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|rest| rest.parse().ok())
            .ok_or_else(|| Error::invalid("page_token", "not a token from a previous List"))?
    };
    Ok(ListQuery {
        since,
        page_size: NonZeroU32::new(request.page_size),
    })
}

/// How much of each entry a reader sees (security finding 8).
///
/// The audit fields (the operator's reason, who wrote an entry, and the note) are for
/// the people who answer for the log: operators with the `auditor` or `revoker` role.
/// The services that follow the log and the gates get the minimal view, with all three
/// left empty: what they need to decide (target, action, whether it was revoked as
/// compromised, times, chain hash) and nothing about who acted or why. A reason such
/// as fraud or arrears is personal data; the chained encoding every follower checks
/// carries only the `compromised` bit, so leaving the reason out changes no hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Every field, audit fields included.
    Audit,
    /// No reason, no actor, no note.
    Minimal,
}

/// List's answer: the next page's token when the page did not reach the head.
pub fn list_response(page: &ListPage, view: View) -> pb::ListRevocationsResponse {
    pb::ListRevocationsResponse {
        entries: page.records.iter().map(|r| entry_in(r, view)).collect(),
        next_page_token: page
            .next_since
            .map(|since| format!("{PAGE_TOKEN_PREFIX}{since}"))
            .unwrap_or_default(),
        head_epoch: page.head,
        head: Some(citypass_revocation::proto::head_to_proto(&page.signed_head)),
    }
}

/// One Watch message.
pub fn watch_response(event: &WatchEvent, view: View) -> pb::WatchRevocationsResponse {
    pb::WatchRevocationsResponse {
        entries: event.entries.iter().map(|r| entry_in(r, view)).collect(),
        head_epoch: event.head_epoch,
        // Never before 1970 on the wire (a clock that far off sends the epoch itself).
        sent_at: Some(system_timestamp(event.sent_at.max(UNIX_EPOCH))),
        head: event
            .head
            .as_ref()
            .map(citypass_revocation::proto::head_to_proto),
    }
}

/// Snapshot's request: no kinds is every kind.
pub fn snapshot_kinds(request: &pb::GetRevocationSnapshotRequest) -> Result<Kinds, Error> {
    if request.kinds.is_empty() {
        return Ok(Kinds::ALL);
    }
    let kinds = request
        .kinds
        .iter()
        .map(|&k| target_kind("kinds", k))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Kinds::of(kinds))
}

/// Snapshot's answer.
pub fn snapshot_response(snapshot: EpochSnapshot) -> pb::GetRevocationSnapshotResponse {
    pb::GetRevocationSnapshotResponse {
        snapshot: snapshot.signed.bytes,
        signature: snapshot.signed.signature,
        kid: snapshot.signed.kid.0.to_vec(),
        epoch: snapshot.epoch,
    }
}

/// A request's timestamp as Unix seconds, rounded up: codes carry whole seconds, and
/// `iat < 100.5` is `iat < 101` for them. Refuses negative or malformed timestamps.
pub fn seconds_ceil(field: &'static str, t: &Timestamp) -> Result<u64, Error> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::invalid(field, "nanos must be within 0..1e9"));
    }
    let seconds = u64::try_from(t.seconds)
        .map_err(|_| Error::invalid(field, "before 1970 is not accepted"))?;
    // Far beyond any valid time; refused by the callers' range checks.
    Ok(seconds.saturating_add(u64::from(t.nanos > 0)))
}

/// The kind named by a request field.
pub fn target_kind(field: &'static str, code: i32) -> Result<TargetKind, Error> {
    TargetKind::from_code(code).ok_or_else(|| {
        if code == 0 {
            Error::invalid(
                field,
                "required: TARGET_KIND_UNSPECIFIED is not a target kind",
            )
        } else {
            Error::invalid(field, format!("unknown target kind {code}"))
        }
    })
}

/// The revocation reason named by a request field.
pub fn revocation_reason(code: i32) -> Result<RevocationReason, Error> {
    RevocationReason::from_code(code)
        .ok_or_else(|| Error::invalid("reason", format!("unknown revocation reason {code}")))
}

/// The reinstatement reason named by a request field.
pub fn reinstate_reason(code: i32) -> Result<ReinstateReason, Error> {
    ReinstateReason::from_code(code)
        .ok_or_else(|| Error::invalid("reason", format!("unknown reinstate reason {code}")))
}

/// A log record as the API's entry, audit fields included (the answers to a write).
pub fn entry(record: &Record) -> pb::RevocationEntry {
    entry_in(record, View::Audit)
}

/// A log record as `view` shows it.
pub fn entry_in(record: &Record, view: View) -> pb::RevocationEntry {
    let audit = match view {
        View::Audit => Some(citypass_revocation::proto::AuditFields {
            reason: record.reason,
            actor: &record.actor,
            note: &record.note,
        }),
        View::Minimal => None,
    };
    citypass_revocation::proto::to_proto(&record.chained(), audit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_times_round_up_to_whole_seconds() {
        let t = |seconds, nanos| Timestamp { seconds, nanos };
        assert_eq!(seconds_ceil("f", &t(100, 0)).unwrap(), 100);
        assert_eq!(seconds_ceil("f", &t(100, 1)).unwrap(), 101);
        assert!(seconds_ceil("f", &t(-1, 0)).is_err());
        assert!(seconds_ceil("f", &t(100, 1_000_000_000)).is_err());
        assert!(seconds_ceil("f", &t(100, -1)).is_err());
    }

    #[test]
    fn kinds_are_required() {
        assert_eq!(
            target_kind("target_kind", 0).unwrap_err().to_string(),
            "target_kind: required: TARGET_KIND_UNSPECIFIED is not a target kind"
        );
        assert_eq!(
            target_kind("target_kind", 9).unwrap_err().to_string(),
            "target_kind: unknown target kind 9"
        );
        assert_eq!(target_kind("k", 5).unwrap(), TargetKind::Key);
        let kinds = |kinds: Vec<i32>| snapshot_kinds(&pb::GetRevocationSnapshotRequest { kinds });
        assert_eq!(kinds(vec![]).unwrap(), Kinds::ALL);
        assert_eq!(
            kinds(vec![1, 4]).unwrap(),
            Kinds::of([TargetKind::Token, TargetKind::Certificate])
        );
        assert_eq!(
            kinds(vec![0]).unwrap_err().to_string(),
            "kinds: required: TARGET_KIND_UNSPECIFIED is not a target kind"
        );
    }
}
