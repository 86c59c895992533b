//! Messages in and out: a [`VerifyRequest`] checked for shape into a [`Scan`]
//! (INVALID_ARGUMENT otherwise), an [`Answer`] into a [`VerifyResponse`], and every
//! refusal to its `DenyReason` (one per failure, as the proto lists them).

use std::time::Duration;

use citypass_face::Embedding;
use citypass_gate::DenyReason;
use citypass_proto::v1::{self as pb, VerifyRequest, VerifyResponse};
use citypass_token::TokenError;

use crate::error::VerifierError;
use crate::face::{FaceCheck, FaceResult, ScoreBand};
use crate::fraud::{FraudKind, SignalPage};
use crate::model::{
    Answer, Direction, FacePassRefusal, FaceScan, PolicyRefusal, PresentedKind, Refusal, Scan,
    SceneResult, VoidScan, Voided,
};
use crate::transit::TapRefused;
use crate::upload::{Malformed, OfflineScan, ScanResult, TapPassed, Upload, UploadOutcome};

/// Longest `station_id` accepted. A `scan_id` follows the one rule of transit tap ids
/// (`citypass_proto::tap_id`: 1 to 64 of `[A-Za-z0-9._:-]`, a UUID fits), for every
/// scene: a transit scan's id is its tap's key at payments, and a gate should not learn
/// at its first metro rider that its ids are refused there.
pub const MAX_ID_BYTES: usize = 128;

/// The scan a request describes, or why its shape is wrong. The code's text is not
/// checked here: a malformed code is a DENY with its reason, not an error.
pub fn scan(request: VerifyRequest) -> Result<Scan, VerifierError> {
    if request.gate_id.is_empty() {
        return Err(VerifierError::MissingGateId);
    }
    if !citypass_proto::tap_id::is_valid(&request.scan_id) {
        return Err(VerifierError::BadScanId);
    }
    let scene =
        citypass_proto::scene::from_api(request.scene).ok_or(VerifierError::MissingScene)?;
    if request.qr_text.is_empty() {
        return Err(VerifierError::MissingCode);
    }
    if request.station_id.len() > MAX_ID_BYTES {
        return Err(VerifierError::BadStationId);
    }
    let direction = direction(request.direction)?;
    let live_face = request
        .live_face
        .map(|face| Embedding::from_normalised(face.embedding))
        .transpose()
        .map_err(VerifierError::BadFaceEmbedding)?;
    Ok(Scan {
        gate_id: request.gate_id,
        scene,
        scan_id: request.scan_id,
        qr_text: request.qr_text,
        direction,
        station_id: request.station_id,
        live_face,
    })
}

/// The face scan a VerifyFace request describes, or why its shape is wrong.
pub fn face_scan(request: pb::VerifyFaceRequest) -> Result<FaceScan, VerifierError> {
    if !citypass_proto::tap_id::is_valid(&request.scan_id) {
        return Err(VerifierError::BadScanId);
    }
    let face = request.live_face.ok_or(VerifierError::MissingFace)?;
    let live_face =
        Embedding::from_normalised(face.embedding).map_err(VerifierError::BadFaceEmbedding)?;
    let direction = direction(request.direction)?;
    // A check that was not run, a score outside [0, 1] (or not a number), or one that
    // names no model is no liveness (face review G9).
    let liveness = request
        .liveness
        .filter(|l| l.checked && (0.0..=1.0).contains(&l.score) && !l.model.trim().is_empty())
        .map(|l| l.score);
    Ok(FaceScan {
        scan_id: request.scan_id,
        live_face,
        liveness,
        direction,
    })
}

fn direction(direction: i32) -> Result<Direction, VerifierError> {
    match pb::Direction::try_from(direction) {
        Ok(pb::Direction::Unspecified) => Ok(Direction::Unspecified),
        Ok(pb::Direction::Entry) => Ok(Direction::Entry),
        Ok(pb::Direction::Exit) => Ok(Direction::Exit),
        Err(_) => Err(VerifierError::BadDirection),
    }
}

/// The void a VoidScan request describes, or why its shape is wrong.
pub fn void_scan(request: pb::VoidScanRequest) -> Result<VoidScan, VerifierError> {
    if request.gate_id.is_empty() {
        return Err(VerifierError::MissingGateId);
    }
    if !citypass_proto::tap_id::is_valid(&request.scan_id) {
        return Err(VerifierError::BadScanId);
    }
    if request.qr_text.is_empty() {
        return Err(VerifierError::MissingCode);
    }
    Ok(VoidScan {
        gate_id: request.gate_id,
        scan_id: request.scan_id,
        qr_text: request.qr_text,
    })
}

/// A void's answer.
pub fn void_response(voided: Voided) -> pb::VoidScanResponse {
    pb::VoidScanResponse {
        trip_id: voided.trip_id,
        trip_voided: voided.trip_voided,
    }
}

/// `scan_id` as a stream's error may repeat it: only a usable one (the tap id rule), so
/// that a gate cannot make the verifier echo megabytes or control characters.
pub fn echoed_scan_id(scan_id: &str) -> String {
    if citypass_proto::tap_id::is_valid(scan_id) {
        scan_id.to_owned()
    } else {
        String::new()
    }
}

fn duration(age: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(age.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(age.subsec_nanos()).unwrap_or(0),
    }
}

use citypass_proto::prost_types;

/// The response for `answer` to the scan `scan_id`.
pub fn response(answer: &Answer, scan_id: &str) -> VerifyResponse {
    let (decision, deny_reason) = match &answer.refusal {
        None => (pb::Decision::Allow, pb::DenyReason::Unspecified),
        Some(refusal) => (pb::Decision::Deny, deny_reason(refusal)),
    };
    VerifyResponse {
        decision: decision as i32,
        deny_reason: deny_reason as i32,
        scan_id: scan_id.to_owned(),
        scene_result: answer.scene.as_ref().map(scene_result),
        revocation_epoch: answer.basis.revocation_epoch,
        revocation_age: answer.basis.revocation_age.map(duration),
        key_set_age: answer.basis.key_set_age.map(duration),
        fail_open: answer.fail_open,
        idempotent_replay: answer.idempotent_replay,
        code_kind: match answer.code_kind {
            None => pb::CodeKind::Unspecified,
            Some(PresentedKind::Online) => pb::CodeKind::Online,
            Some(PresentedKind::Offline) => pb::CodeKind::Offline,
            Some(PresentedKind::Face) => pb::CodeKind::Face,
        } as i32,
        decided_at: Some(citypass_proto::time::timestamp(answer.decided_at)),
        face_check: answer.face.map(face_check),
    }
}

/// The API's face check.
fn face_check(check: FaceCheck) -> pb::FaceCheck {
    let result = match check.result {
        FaceResult::Match => pb::FaceResult::Match,
        FaceResult::NoMatch => pb::FaceResult::NoMatch,
        FaceResult::NotEnrolled => pb::FaceResult::NotEnrolled,
        FaceResult::NotPresented => pb::FaceResult::NotPresented,
        FaceResult::Unavailable => pb::FaceResult::Unavailable,
    };
    let band = match check.band {
        None => pb::FaceScoreBand::Unspecified,
        Some(ScoreBand::High) => pb::FaceScoreBand::High,
        Some(ScoreBand::Medium) => pb::FaceScoreBand::Medium,
        Some(ScoreBand::Low) => pb::FaceScoreBand::Low,
        Some(ScoreBand::None) => pb::FaceScoreBand::None,
    };
    pb::FaceCheck {
        result: result as i32,
        band: band as i32,
        id_card_required: check.id_card_required,
    }
}

/// The API's scene result.
pub fn scene_result(result: &SceneResult) -> pb::verify_response::SceneResult {
    use pb::verify_response::SceneResult as R;
    match result {
        SceneResult::Hospital {
            patient_pseudonym,
            medical_insurance_linked,
        } => R::Hospital(pb::HospitalResult {
            patient_pseudonym: patient_pseudonym.clone(),
            medical_insurance_linked: *medical_insurance_linked,
        }),
        SceneResult::Scenic {
            venue_pseudonym,
            entries_today,
            remaining_capacity,
        } => R::Scenic(pb::ScenicResult {
            venue_pseudonym: venue_pseudonym.clone(),
            entries_today: *entries_today,
            remaining_capacity: *remaining_capacity,
        }),
        SceneResult::Government {
            masked_name,
            assurance_level,
            government_pseudonym,
        } => R::Government(pb::GovernmentResult {
            masked_name: masked_name.clone(),
            assurance_level: *assurance_level as i32,
            government_pseudonym: government_pseudonym.clone(),
        }),
        SceneResult::Transit(trip) => R::Transit(pb::TransitResult {
            trip_id: trip.trip_id.clone(),
            fare_charged: Some(pb::Money {
                currency_code: trip.currency_code.clone(),
                minor_units: trip.fare_minor_units,
            }),
            charge_status: trip.charge_status as i32,
            transit_account: trip.transit_account.clone(),
            fare_class: trip.fare_class as i32,
        }),
    }
}

/// The API's reason for a policy's refusal.
pub fn policy_reason(refusal: PolicyRefusal) -> pb::DenyReason {
    use pb::DenyReason as R;
    match refusal {
        PolicyRefusal::SubjectInactive => R::SubjectInactive,
        PolicyRefusal::UnknownSubject => R::UnknownSubject,
        PolicyRefusal::UnsealFailed => R::UnsealFailed,
        PolicyRefusal::RealNameRequired => R::RealNameRequired,
        PolicyRefusal::CapacityReached => R::CapacityReached,
        PolicyRefusal::AlreadyEnteredToday => R::AlreadyEnteredToday,
        PolicyRefusal::NoGovernmentPseudonym => R::NoGovernmentPseudonym,
        PolicyRefusal::NoPaymentLink => R::NoPaymentLink,
        PolicyRefusal::Arrears => R::Arrears,
        PolicyRefusal::TripAlreadyOpen => R::TripAlreadyOpen,
    }
}

/// The API's reason for a refusal.
pub fn deny_reason(refusal: &Refusal) -> pb::DenyReason {
    use pb::DenyReason as R;
    match refusal {
        Refusal::UnknownGate => R::UnknownGate,
        Refusal::SceneMismatch => R::SceneMismatch,
        Refusal::ScanIdConflict => R::ScanIdConflict,
        Refusal::SubjectUnreadable => R::UnsealFailed,
        Refusal::ServiceUnavailable => R::ServiceUnavailable,
        Refusal::Policy(refusal) => policy_reason(*refusal),
        Refusal::FacePass(refusal) => match refusal {
            FacePassRefusal::NotHere => R::FacePassNotHere,
            FacePassRefusal::LivenessRequired => R::LivenessRequired,
            FacePassRefusal::LivenessFailed => R::LivenessFailed,
            FacePassRefusal::NotRecognised => R::FaceNotRecognised,
            FacePassRefusal::Unavailable => R::FacePassUnavailable,
        },
        Refusal::Code(reason) => match reason {
            DenyReason::Token(error) => token_reason(error),
            DenyReason::ScopeNotAllowed => R::ScopeNotAllowed,
            DenyReason::TokenRevoked => R::TokenRevoked,
            DenyReason::CertificateRevoked => R::CertificateRevoked,
            DenyReason::KeyRevoked => R::KeyRevoked,
            DenyReason::SubjectRevoked => R::SubjectRevoked,
            DenyReason::Replayed => R::Replayed,
            DenyReason::CounterReplay => R::CounterReplay,
            DenyReason::MemoryFull => R::ServiceUnavailable,
            DenyReason::RevocationsStale => R::RevocationDataStale,
        },
    }
}

/// The API's reason for a token error (the proto's list follows `TokenError`).
pub fn token_reason(error: &TokenError) -> pb::DenyReason {
    use TokenError as E;
    use pb::DenyReason as R;
    match error {
        E::TooLarge { .. } => R::TooLarge,
        E::BadPrefix => R::BadPrefix,
        E::WrongPrefix => R::WrongPrefix,
        E::BadBase45 => R::BadBase45,
        E::Truncated => R::Truncated,
        E::IndefiniteLength => R::IndefiniteLength,
        E::TooDeep { .. } => R::NestingTooDeep,
        E::ItemTooLarge => R::ItemTooLarge,
        E::TrailingBytes => R::TrailingBytes,
        E::Malformed => R::Malformed,
        E::NotCoseSign1 => R::NotCoseSign1,
        E::MissingAlg => R::MissingAlg,
        E::AlgInUnprotected => R::AlgInUnprotectedHeader,
        E::UnprotectedHeaderNotEmpty => R::UnprotectedHeaderNotEmpty,
        E::UnsupportedAlg => R::UnsupportedAlg,
        E::AlgMismatch => R::AlgMismatch,
        E::BadKid => R::BadKid,
        // No code key has this kid (the proto has no reason of its own for a key of
        // another usage yet).
        E::UnknownKid | E::WrongKeyUsage => R::UnknownKid,
        E::KeyRevoked => R::KeyRevoked,
        E::KeyExpired => R::KeyExpired,
        E::UnknownCriticalHeader => R::UnknownCriticalHeader,
        E::MissingTyp => R::MissingTyp,
        E::WrongTyp => R::WrongTyp,
        E::BadSignature => R::BadSignature,
        E::MissingClaim(_) => R::MissingClaim,
        E::InvalidClaim(_) => R::InvalidClaim,
        E::DuplicateClaim => R::DuplicateClaim,
        E::BadLifetime => R::BadLifetime,
        E::Expired => R::Expired,
        E::NotYetValid => R::NotYetValid,
        E::CertificateExpired => R::CertificateExpired,
        E::CertificateNotYetValid => R::CertificateNotYetValid,
        E::CertificateInvalid(_) => R::CertificateInvalid,
        E::OutsideCertificate => R::OutsideCertificate,
        E::Unseal | E::UnknownSubjectKey { .. } | E::UnsupportedSealVersion { .. } => {
            R::UnsealFailed
        }
        // Not produced by verifying a code; anything new is malformed until named.
        _ => R::Malformed,
    }
}

/// Signals per ListFraudSignals page unless asked otherwise, and at most.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// See [`DEFAULT_PAGE_SIZE`].
pub const MAX_PAGE_SIZE: usize = 200;

/// The upload a request describes. Each malformed scan becomes the scan id to echo
/// (answered `INVALID`), so that one bad scan never holds back the others; only the
/// request itself (no gate, no scene) is an error.
pub fn upload(request: pb::UploadOfflineScansRequest) -> Result<Upload, VerifierError> {
    if request.gate_id.is_empty() {
        return Err(VerifierError::MissingGateId);
    }
    let scene =
        citypass_proto::scene::from_api(request.scene).ok_or(VerifierError::MissingScene)?;
    let scans = request.scans.into_iter().map(offline_scan).collect();
    Ok(Upload {
        gate_id: request.gate_id,
        scene,
        scans,
    })
}

fn offline_scan(scan: pb::OfflineScan) -> Result<OfflineScan, Malformed> {
    let malformed = |reason| {
        Err(Malformed {
            echo: echoed_scan_id(&scan.scan_id),
            reason,
        })
    };
    // Payments' rule for tap ids, checked before the mark is spent: a scan whose tap
    // payments would reject for its id is not recorded (its ride would go uncharged).
    if !citypass_proto::tap_id::is_valid(&scan.scan_id) {
        return malformed("BAD_SCAN_ID");
    }
    if scan.qr_text.is_empty() {
        return malformed("MISSING_CODE");
    }
    let Some(scanned_at) = scan
        .scanned_at
        .as_ref()
        .and_then(citypass_proto::time::seconds)
    else {
        return malformed("MISSING_SCANNED_AT");
    };
    let direction = match pb::Direction::try_from(scan.direction) {
        Ok(pb::Direction::Unspecified) => Direction::Unspecified,
        Ok(pb::Direction::Entry) => Direction::Entry,
        Ok(pb::Direction::Exit) => Direction::Exit,
        Err(_) => return malformed("BAD_DIRECTION"),
    };
    if scan.station_id.len() > MAX_ID_BYTES {
        return malformed("BAD_STATION_ID");
    }
    Ok(OfflineScan {
        scan_id: scan.scan_id,
        qr_text: scan.qr_text,
        scanned_at,
        direction,
        station_id: scan.station_id,
    })
}

/// The response for an upload's results.
pub fn upload_response(results: Vec<ScanResult>) -> pb::UploadOfflineScansResponse {
    use pb::UploadOutcome as O;
    let results = results
        .into_iter()
        .map(|result| {
            let (outcome, reason) = match &result.outcome {
                UploadOutcome::Recorded => (O::Recorded, pb::DenyReason::Unspecified),
                UploadOutcome::AlreadyRecorded | UploadOutcome::DecidedLive => {
                    (O::AlreadyRecorded, pb::DenyReason::Unspecified)
                }
                UploadOutcome::FraudSuspected(_) => {
                    (O::FraudSuspected, pb::DenyReason::Unspecified)
                }
                UploadOutcome::CodeRefused(refusal) => (O::CodeRefused, deny_reason(refusal)),
                UploadOutcome::OutsideWindow => (O::OutsideWindow, pb::DenyReason::Unspecified),
                UploadOutcome::ScanIdConflict => (O::ScanIdConflict, pb::DenyReason::Unspecified),
                UploadOutcome::Unavailable => (O::Unavailable, pb::DenyReason::Unspecified),
                UploadOutcome::Invalid(_) => (O::Invalid, pb::DenyReason::Unspecified),
            };
            let invalid_reason = match &result.outcome {
                UploadOutcome::Invalid(reason) => (*reason).to_owned(),
                _ => String::new(),
            };
            let (tap, trip, tap_reason) = uploaded_tap(result.tap);
            pb::OfflineScanResult {
                scan_id: result.scan_id,
                outcome: outcome as i32,
                deny_reason: reason as i32,
                tap: tap as i32,
                trip,
                tap_reason,
                invalid_reason,
            }
        })
        .collect();
    pb::UploadOfflineScansResponse { results }
}

/// What payments did with an uploaded scan, as the result shows it (the trip without
/// the transit account, which the gate does not need back).
fn uploaded_tap(
    tap: Option<TapPassed>,
) -> (pb::OfflineTapOutcome, Option<pb::TransitResult>, String) {
    use pb::OfflineTapOutcome as T;
    match tap {
        None => (T::Unspecified, None, String::new()),
        Some(TapPassed::Trip(trip)) => (
            T::Recorded,
            Some(pb::TransitResult {
                trip_id: trip.trip_id,
                fare_charged: Some(pb::Money {
                    currency_code: trip.currency_code,
                    minor_units: trip.fare_minor_units,
                }),
                charge_status: trip.charge_status as i32,
                transit_account: String::new(),
                fare_class: trip.fare_class as i32,
            }),
            String::new(),
        ),
        Some(TapPassed::Refused(TapRefused::NoPaymentLink)) => {
            (T::NoPaymentLink, None, String::new())
        }
        // Payments never refuses a late tap for these (the rider went through).
        Some(TapPassed::Refused(TapRefused::Arrears)) => (T::Rejected, None, "ARREARS".into()),
        Some(TapPassed::Refused(TapRefused::TripAlreadyOpen)) => {
            (T::Rejected, None, "TRIP_ALREADY_OPEN".into())
        }
        Some(TapPassed::Rejected(reason)) => (T::Rejected, None, reason),
        Some(TapPassed::UnknownHolder) => (T::UnknownHolder, None, String::new()),
    }
}

/// The page a ListFraudSignals request asks for: its size and where it starts.
pub fn signal_page(
    request: pb::ListFraudSignalsRequest,
) -> Result<(usize, Option<String>), VerifierError> {
    let size = match usize::try_from(request.page_size) {
        Err(_) => return Err(VerifierError::BadPageSize),
        Ok(0) => DEFAULT_PAGE_SIZE,
        Ok(n) => n.min(MAX_PAGE_SIZE),
    };
    if request.page_token.len() > MAX_ID_BYTES {
        return Err(VerifierError::BadPageToken);
    }
    let token = (!request.page_token.is_empty()).then_some(request.page_token);
    Ok((size, token))
}

/// The response for a page of signals.
pub fn signals_response(page: SignalPage) -> pb::ListFraudSignalsResponse {
    pb::ListFraudSignalsResponse {
        signals: page
            .signals
            .into_iter()
            .map(|signal| pb::FraudSignal {
                detected_at: Some(citypass_proto::time::timestamp(signal.detected_at)),
                scanned_at: Some(citypass_proto::time::timestamp(signal.scanned_at)),
                gate_id: signal.gate_id,
                scene: citypass_proto::scene::to_api(signal.scene),
                kind: match signal.kind {
                    FraudKind::CodeReused => pb::FraudKind::CodeReused,
                    FraudKind::CounterReused => pb::FraudKind::CounterReused,
                } as i32,
                mark_digest: signal.mark_digest,
            })
            .collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> VerifyRequest {
        VerifyRequest {
            gate_id: "metro-entry-1".into(),
            scene: pb::Scene::Metro as i32,
            scan_id: "scan-1".into(),
            qr_text: "CP1:X".into(),
            ..VerifyRequest::default()
        }
    }

    #[test]
    fn shapes_are_checked() {
        assert!(scan(request()).is_ok());
        type Change = fn(&mut VerifyRequest);
        let cases: [(Change, &str); 8] = [
            (|r| r.gate_id.clear(), "MISSING_GATE_ID"),
            (|r| r.scan_id.clear(), "BAD_SCAN_ID"),
            (|r| r.scan_id = "x".repeat(65), "BAD_SCAN_ID"),
            (|r| r.scan_id = "scan 1".into(), "BAD_SCAN_ID"),
            (|r| r.scan_id = "scan/1".into(), "BAD_SCAN_ID"),
            (|r| r.scene = 0, "MISSING_SCENE"),
            (|r| r.qr_text.clear(), "MISSING_CODE"),
            (|r| r.direction = 9, "BAD_DIRECTION"),
        ];
        for (change, reason) in cases {
            let mut r = request();
            change(&mut r);
            let err = scan(r).expect_err(reason);
            assert_eq!(citypass_runtime::ServiceError::reason(&err), reason);
        }
    }
}
