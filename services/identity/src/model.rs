//! The identity service's records, as the logic and the stores share them.
//!
//! These are the stored facts, free of wire concerns: no document number or unmasked
//! name appears in any of them. Enumerations reuse the generated proto enums, whose
//! numbers `common.proto` declares stable "in stored data", so the PostgreSQL columns
//! hold exactly those numbers.

pub mod face;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use citypass_proto::prost_types;
use citypass_proto::v1::{
    AssuranceLevel, DeviceStatus, DocumentType, FareClass, RealNameCheckOutcome, SubjectStatus,
};

use crate::document::{DocumentHash, KeyedDocumentHash};
use crate::ids::{CertSerial, DeviceId, SubjectId};
use citypass_pseudonym::KeyId;
use citypass_pseudonym::Pseudonym;

/// A point in time with microsecond precision (what PostgreSQL keeps), as microseconds
/// since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Latest accepted time: 9999-12-31T23:59:59Z.
const MAX_SECONDS: i64 = 253_402_300_799;

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Timestamp(micros)
    }

    /// From microseconds since the epoch.
    pub fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the epoch.
    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down).
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// `self + duration`, saturating.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(micros))
    }

    /// The wire form.
    pub fn to_proto(self) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: self.0.div_euclid(1_000_000),
            // In 0..1e9 by construction.
            nanos: i32::try_from(self.0.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
        }
    }

    /// From the wire form: between 1970 and 9999 with nanos in range, or `None`.
    /// Sub-microsecond digits are dropped.
    pub fn from_proto(ts: &prost_types::Timestamp) -> Option<Self> {
        if !(0..=MAX_SECONDS).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos) {
            return None;
        }
        Some(Timestamp(
            ts.seconds * 1_000_000 + i64::from(ts.nanos / 1_000),
        ))
    }
}

/// The attributes scene policies and the issuer use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// Fare class for the fare table.
    pub fare_class: FareClass,
    /// Whether a medical insurance account is linked.
    pub medical_insurance_linked: bool,
    /// Strength of the real-name binding.
    pub assurance_level: AssuranceLevel,
}

/// A change of attributes: `None` keeps the current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttributesUpdate {
    pub fare_class: Option<FareClass>,
    pub medical_insurance_linked: Option<bool>,
    pub assurance_level: Option<AssuranceLevel>,
}

/// A citizen, as stored (the document only as its keyed hash, which is not returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub id: SubjectId,
    /// Masked display form of the name.
    pub masked_name: String,
    pub document_type: DocumentType,
    pub status: SubjectStatus,
    pub attributes: Attributes,
    pub real_name_check: RealNameCheckOutcome,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What enrolment stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubject {
    pub id: SubjectId,
    /// The document's hash under the current document key, with that key's id.
    pub document_hash: KeyedDocumentHash,
    /// The same document under the other configured keys (during a rotation): an
    /// enrolled subject under any of them conflicts too.
    pub other_document_hashes: Vec<DocumentHash>,
    /// The transit account, derived once here and stored (never re-derived).
    pub transit_account: Pseudonym,
    /// The government-service pseudonym of a resident ID number (with its key id),
    /// derived once here; `None` for other documents.
    pub government_pseudonym: Option<Pseudonym>,
    pub document_type: DocumentType,
    pub masked_name: String,
    /// PENDING, ACTIVE or REJECTED, from the real-name check.
    pub status: SubjectStatus,
    pub real_name_check: RealNameCheckOutcome,
    pub attributes: Attributes,
    /// The enrolment secret granted with it (its hash and expiry).
    pub enrolment: EnrolmentGrant,
    /// The birth date a resident ID carries (for the face-consent rule on children
    /// under 14); `None` for other documents.
    pub born_on: Option<crate::document::Date>,
}

impl NewSubject {
    /// Every hash of the document this subject is enrolled with, the stored one first.
    pub fn all_document_hashes(&self) -> Vec<DocumentHash> {
        std::iter::once(self.document_hash.hash)
            .chain(self.other_document_hashes.iter().copied())
            .collect()
    }

    /// The subject this becomes when stored at `now`.
    pub fn into_subject(self, now: Timestamp) -> Subject {
        Subject {
            id: self.id,
            masked_name: self.masked_name,
            document_type: self.document_type,
            status: self.status,
            attributes: self.attributes,
            real_name_check: self.real_name_check,
            created_at: now,
            updated_at: now,
        }
    }
}

/// What the verifier's scene policies need about a subject (GetSubjectProfile).
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectProfile {
    pub subject: Subject,
    /// The transit account (32 lower-case hex characters).
    pub transit_account: String,
    /// The government-service pseudonym, for subjects enrolled with a resident ID.
    pub government_pseudonym: Option<String>,
}

impl std::fmt::Debug for SubjectProfile {
    /// Without pseudonyms or the name (personal data).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectProfile")
            .field("status", &self.subject.status)
            .field("attributes", &self.subject.attributes)
            .finish_non_exhaustive()
    }
}

/// A subject's transit account as stored: the value enrolment derived, with its key id,
/// or (for subjects stored before values were) only the key id to derive it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPseudonym {
    pub key_id: KeyId,
    pub value: Option<String>,
}

/// A bound (or formerly bound) device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    pub subject_id: SubjectId,
    /// Uncompressed SEC1 P-256 point, 65 bytes, validated before storing.
    pub public_key: Vec<u8>,
    pub status: DeviceStatus,
    pub label: String,
    pub bound_at: Timestamp,
    /// Set once UNBOUND.
    pub unbound_at: Option<Timestamp>,
}

/// A device binding to store, with the challenge it consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub id: DeviceId,
    pub subject_id: SubjectId,
    pub public_key: Vec<u8>,
    pub label: String,
    /// The challenge the device signed; consumed by the binding.
    pub challenge: [u8; 32],
    /// The subject's authority for the binding (an enrolment secret is consumed).
    pub authority: Authority,
}

/// Where a page of devices starts: after this one (a subject's devices are ordered by
/// `bound_at`, then id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCursor {
    pub bound_at: Timestamp,
    pub device_id: DeviceId,
}

impl DeviceCursor {
    /// The cursor just after `device`.
    pub fn after(device: &Device) -> Self {
        DeviceCursor {
            bound_at: device.bound_at,
            device_id: device.id,
        }
    }
}

/// One page of a device listing: at most `limit`, after `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePage {
    pub after: Option<DeviceCursor>,
    pub limit: usize,
}

impl DevicePage {
    /// Every device, in one page (tests and tools).
    pub const ALL: DevicePage = DevicePage {
        after: None,
        limit: usize::MAX,
    };
}

/// A device with what the issuer needs about its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    pub device: Device,
    pub subject_status: SubjectStatus,
    pub subject_attributes: Attributes,
}

/// An outstanding binding challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// 32 random bytes.
    pub bytes: [u8; 32],
    pub subject_id: SubjectId,
    pub expires_at: Timestamp,
}

/// A device certificate the issuer recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// 16 random bytes.
    pub serial: CertSerial,
    pub device_id: DeviceId,
    pub subject_id: SubjectId,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

/// A certificate to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCertificate {
    pub serial: CertSerial,
    pub device_id: DeviceId,
    /// The subject the caller believes owns the device, if it said; must match.
    pub subject_id: Option<SubjectId>,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

/// Where a page of certificates starts: after this one (certificates are ordered by
/// `not_before`, then serial).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateCursor {
    pub not_before: Timestamp,
    pub serial: CertSerial,
}

impl CertificateCursor {
    /// The cursor just after `certificate`.
    pub fn after(certificate: &Certificate) -> Self {
        CertificateCursor {
            not_before: certificate.not_before,
            serial: certificate.serial,
        }
    }
}

/// One page of a certificate listing: at most `limit`, after `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificatePage {
    pub after: Option<CertificateCursor>,
    pub limit: usize,
}

/// Whose certificates to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateOwner {
    Device(DeviceId),
    Subject(SubjectId),
}

/// The SHA-256 of an enrolment secret: all the store ever sees of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 32]);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(…)")
    }
}

/// A subject's current enrolment secret, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrolmentGrant {
    /// The hash of the secret.
    pub secret_hash: SecretHash,
    /// After this (exclusive) the secret is refused.
    pub expires_at: Timestamp,
}

/// The subject's authority for one binding, as the store checks it (the bound
/// device's signature has been verified before the store is asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// An enrolment secret, to be consumed.
    EnrolmentSecret(SecretHash),
    /// A device that must be an ACTIVE device of the same subject.
    BoundDevice(DeviceId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_the_wire_form() {
        let t = Timestamp::from_micros(1_800_000_000_123_456);
        let wire = t.to_proto();
        assert_eq!(wire.seconds, 1_800_000_000);
        assert_eq!(wire.nanos, 123_456_000);
        assert_eq!(Timestamp::from_proto(&wire), Some(t));
        let bad_nanos = prost_types::Timestamp {
            seconds: 1,
            nanos: 1_000_000_000,
        };
        assert_eq!(Timestamp::from_proto(&bad_nanos), None);
        let too_late = prost_types::Timestamp {
            seconds: MAX_SECONDS + 1,
            nanos: 0,
        };
        assert_eq!(Timestamp::from_proto(&too_late), None);
        let negative = prost_types::Timestamp {
            seconds: -1,
            nanos: 0,
        };
        assert_eq!(Timestamp::from_proto(&negative), None);
    }
}
