//! Messages into the service's own types and back: every request field is checked
//! here (a malformed one is INVALID_ARGUMENT naming it, before anything is read or
//! written), and every answer is formatted here, so that `service.rs` only calls
//! [`crate::identity::Identity`] between the two. Page tokens are opaque to callers.

use citypass_proto::prost_types;
use citypass_proto::v1;
use citypass_token::PublicKey;

use crate::enrolment::EnrolmentSecret;
use crate::error::Error;
use crate::identity::BindingAuthority;
use crate::ids::{CertSerial, DeviceId};
use crate::model::{
    Attributes, Certificate, CertificateCursor, Device, DeviceCursor, Subject, Timestamp,
};

/// Longest device label, in characters.
pub(crate) const MAX_LABEL_CHARS: usize = 64;
/// Longest audit reason, in characters.
pub(crate) const MAX_REASON_CHARS: usize = 256;

/// A subject as callers see it: never its transit account, which only
/// GetTransitAccount gives, to the services the authorisation table names.
pub(crate) fn subject(subject: Subject) -> v1::Subject {
    v1::Subject {
        subject_id: subject.id.to_string(),
        masked_name: subject.masked_name,
        document_type: subject.document_type.into(),
        status: subject.status.into(),
        attributes: Some(attributes(subject.attributes)),
        real_name_check: subject.real_name_check.into(),
        created_at: Some(subject.created_at.to_proto()),
        updated_at: Some(subject.updated_at.to_proto()),
    }
}

pub(crate) fn attributes(a: Attributes) -> v1::Attributes {
    v1::Attributes {
        fare_class: a.fare_class.into(),
        medical_insurance_linked: a.medical_insurance_linked,
        assurance_level: a.assurance_level.into(),
    }
}

pub(crate) fn device(d: Device) -> v1::Device {
    v1::Device {
        device_id: d.id.to_string(),
        subject_id: d.subject_id.to_string(),
        public_key: d.public_key,
        status: d.status.into(),
        label: d.label,
        bound_at: Some(d.bound_at.to_proto()),
        unbound_at: d.unbound_at.map(Timestamp::to_proto),
    }
}

pub(crate) fn certificate(c: Certificate) -> v1::DeviceCertificate {
    v1::DeviceCertificate {
        serial: c.serial.as_bytes().to_vec(),
        device_id: c.device_id.to_string(),
        subject_id: c.subject_id.to_string(),
        not_before: Some(c.not_before.to_proto()),
        not_after: Some(c.not_after.to_proto()),
    }
}

// --- request validation ---------------------------------------------------------------

/// A proto enum field: a known value, with UNSPECIFIED (0) as `None`.
pub(crate) fn enum_field<T: TryFrom<i32>>(
    value: i32,
    field: &'static str,
) -> Result<Option<T>, Error> {
    if value == 0 {
        return Ok(None);
    }
    T::try_from(value)
        .map(Some)
        .map_err(|_| Error::invalid(field, "unknown enum value"))
}

/// Free text for labels and audit reasons: bounded, printable.
/// A label or reason (see `citypass_runtime::text`).
pub(crate) fn free_text(
    text: &str,
    field: &'static str,
    max_chars: usize,
) -> Result<String, Error> {
    citypass_runtime::text::bounded_text(text, max_chars)
        .map(str::to_owned)
        .map_err(|err| Error::invalid(field, err.to_string()))
}

pub(crate) fn timestamp_field(
    ts: Option<&prost_types::Timestamp>,
    field: &'static str,
) -> Result<Timestamp, Error> {
    let ts = ts.ok_or_else(|| Error::invalid(field, "required"))?;
    Timestamp::from_proto(ts)
        .ok_or_else(|| Error::invalid(field, "must be between 1970 and 9999 with nanos in 0..1e9"))
}

pub(crate) fn parse_public_key(bytes: &[u8]) -> Result<PublicKey, Error> {
    if bytes.is_empty() {
        return Err(Error::invalid("public_key", "required"));
    }
    PublicKey::p256(bytes).map_err(|_| {
        Error::invalid(
            "public_key",
            "must be an uncompressed P-256 point on the curve (65 bytes: 0x04 || X || Y)",
        )
    })
}

pub(crate) fn parse_signature(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    match bytes.len() {
        0 => Err(Error::invalid("signature", "required")),
        64 => Ok(bytes.to_vec()),
        _ => Err(Error::invalid(
            "signature",
            "must be 64 bytes (ES256, raw r || s)",
        )),
    }
}

pub(crate) fn parse_serial(bytes: &[u8]) -> Result<CertSerial, Error> {
    CertSerial::from_slice(bytes)
        .map_err(|_| Error::invalid("certificate.serial", "must be 16 bytes"))
}

/// The binding's authority: exactly one of the enrolment secret or a bound device.
pub(crate) fn binding_authority(
    authority: Option<v1::bind_device_request::Authority>,
) -> Result<BindingAuthority, Error> {
    use v1::bind_device_request::Authority as A;
    match authority {
        Some(A::EnrolmentSecret(secret)) => Ok(BindingAuthority::EnrolmentSecret(
            EnrolmentSecret::parse(&secret)?,
        )),
        Some(A::BoundDevice(bound)) => Ok(BindingAuthority::BoundDevice {
            device_id: DeviceId::parse(&bound.device_id).map_err(|err| match err {
                citypass_token::IdError::Missing { .. } => {
                    Error::invalid("bound_device.device_id", "is required")
                }
                _ => Error::invalid(
                    "bound_device.device_id",
                    "must be 32 lower-case hexadecimal characters",
                ),
            })?,
            signature: parse_signature(&bound.signature)?,
        }),
        None => Err(Error::invalid(
            "authority",
            "required: the enrolment secret from Enrol, or a signature by a bound device",
        )),
    }
}

/// Certificates per ListCertificates page unless the caller asks.
pub(crate) const DEFAULT_CERTIFICATE_PAGE: usize = 100;
/// Most certificates per page (well under gRPC's 4 MiB message limit).
pub(crate) const MAX_CERTIFICATE_PAGE: usize = 500;
pub(crate) const CERTIFICATE_PAGE_PREFIX: &str = "c1:";

/// The page token for the page after `cursor`: `c1:<not_before µs>:<serial hex>`.
pub(crate) fn certificate_page_token_of(cursor: CertificateCursor) -> String {
    format!(
        "{CERTIFICATE_PAGE_PREFIX}{}:{}",
        cursor.not_before.as_micros(),
        hex::encode(cursor.serial)
    )
}

/// The cursor a page token names; an empty token is the first page.
pub(crate) fn certificate_page_token(token: &str) -> Result<Option<CertificateCursor>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid("page_token", "not a token from a previous ListCertificates");
    let rest = token
        .strip_prefix(CERTIFICATE_PAGE_PREFIX)
        .ok_or_else(bad)?;
    let (micros, serial) = rest.split_once(':').ok_or_else(bad)?;
    if micros.is_empty() || !micros.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let serial = hex::decode(serial)
        .ok()
        .and_then(|bytes| CertSerial::from_slice(&bytes).ok())
        .ok_or_else(bad)?;
    Ok(Some(CertificateCursor {
        not_before: Timestamp::from_micros(micros),
        serial,
    }))
}

/// Devices per ListDevices page unless the caller asks.
pub(crate) const DEFAULT_DEVICE_PAGE: usize = 50;
/// Most devices per page.
pub(crate) const MAX_DEVICE_PAGE: usize = 200;
pub(crate) const DEVICE_PAGE_PREFIX: &str = "d1:";

/// A page size as the request gives it: 0 for the default, at most `max`.
pub(crate) fn page_size(size: i32, default: usize, max: usize) -> Result<usize, Error> {
    match size {
        0 => Ok(default),
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        n => Ok(usize::try_from(n).unwrap_or(max).min(max)),
    }
}

/// The page token for the page after `cursor`: `d1:<bound_at µs>:<device id>`.
pub(crate) fn device_page_token_of(cursor: DeviceCursor) -> String {
    format!(
        "{DEVICE_PAGE_PREFIX}{}:{}",
        cursor.bound_at.as_micros(),
        cursor.device_id
    )
}

/// The cursor a ListDevices page token names; an empty token is the first page.
pub(crate) fn device_page_token(token: &str) -> Result<Option<DeviceCursor>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid("page_token", "not a token from a previous ListDevices");
    let rest = token.strip_prefix(DEVICE_PAGE_PREFIX).ok_or_else(bad)?;
    let (micros, id) = rest.split_once(':').ok_or_else(bad)?;
    if micros.is_empty() || !micros.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    Ok(Some(DeviceCursor {
        bound_at: Timestamp::from_micros(micros.parse().map_err(|_| bad())?),
        device_id: DeviceId::parse(id).map_err(|_| bad())?,
    }))
}

// --- face (issue 14) ------------------------------------------------------------------

/// Default and largest page of the verifier's face feed.
pub(crate) const DEFAULT_FACE_PAGE: usize = 200;
/// At most about 4.3 KB per change (the sealed template is 2 076 bytes, up to 32 places
/// of 64 characters): 500 stay well under a client's default 4 MiB message limit.
pub(crate) const MAX_FACE_PAGE: usize = 500;

/// Longest notice-text version, and of a place id.
const MAX_TEXT_VERSION: usize = 64;

/// A face consent request's fields.
pub(crate) fn consent_request(
    req: &v1::RecordFaceConsentRequest,
) -> Result<crate::face::ConsentRequest, Error> {
    use v1::FacePurpose;
    let subject_id = crate::ids::SubjectId::parse(&req.subject_id)?;
    let purpose = enum_field::<FacePurpose>(req.purpose, "purpose")?
        .ok_or_else(|| Error::invalid("purpose", "required"))?;
    let version = &req.text_version;
    if version.is_empty()
        || version.len() > MAX_TEXT_VERSION
        || !version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Error::invalid(
            "text_version",
            "must be 1 to 64 of [A-Za-z0-9._-]",
        ));
    }
    match purpose {
        FacePurpose::CounterCheck if !req.places.is_empty() => {
            return Err(Error::invalid(
                "places",
                "a COUNTER_CHECK consent names no places",
            ));
        }
        FacePurpose::FacePass if req.places.is_empty() => {
            return Err(Error::invalid(
                "places",
                "a FACE_PASS consent names the stations and venues it covers",
            ));
        }
        _ => {}
    }
    if req.places.len() > crate::face::MAX_PLACES {
        return Err(Error::invalid("places", "at most 32"));
    }
    let mut places: Vec<String> = Vec::with_capacity(req.places.len());
    for place in &req.places {
        if !citypass_proto::face_place::is_valid(place) {
            return Err(Error::invalid(
                "places",
                "each must be station:<id> or venue:<id>, the id 1 to 64 of [A-Za-z0-9._-] as the gate registry writes it",
            ));
        }
        if !places.contains(place) {
            places.push(place.clone());
        }
    }
    let guardian = match req.guardian_subject_id.as_str() {
        "" => None,
        id => Some(crate::ids::SubjectId::parse(id).map_err(|_| {
            Error::invalid(
                "guardian_subject_id",
                "must be empty or 32 lower-case hexadecimal characters",
            )
        })?),
    };
    Ok(crate::face::ConsentRequest {
        subject_id,
        purpose,
        text_version: version.clone(),
        places,
        guardian,
    })
}

/// A consent as the API returns it.
pub(crate) fn consent(c: crate::face::Consent) -> v1::FaceConsent {
    v1::FaceConsent {
        subject_id: c.subject_id.to_string(),
        purpose: c.purpose.into(),
        text_version: c.text_version,
        places: c.places,
        guardian_subject_id: c.guardian.map(|g| g.to_string()).unwrap_or_default(),
        channel: c.channel.into(),
        granted_at: Some(c.granted_at.to_proto()),
    }
}

/// An embedding field: 512 finite components of unit length.
pub(crate) fn embedding(values: &[f32]) -> Result<citypass_face::Embedding, Error> {
    citypass_face::Embedding::from_normalised(values.to_vec())
        .map_err(|e| Error::invalid("embedding", e.to_string()))
}

/// A feed entry as the verifier receives it.
pub(crate) fn feed_entry(entry: crate::face::FeedEntry) -> v1::FaceTemplateChange {
    v1::FaceTemplateChange {
        sequence: entry.sequence,
        subject_id: entry.subject_id.to_string(),
        template: entry.template.map(|t| v1::FaceTemplate {
            key_id: u32::from(t.sealed.key_id),
            sealed: t.sealed.bytes,
            purposes: t.purposes.into_iter().map(i32::from).collect(),
            face_pass_places: t.face_pass_places,
            enrolled_at: Some(t.enrolled_at.to_proto()),
            channel: t.channel.into(),
            enrolled_by_device_id: t.device.map(|d| d.to_string()).unwrap_or_default(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_is_bounded_and_printable() {
        assert_eq!(free_text(" my phone ", "label", 64).unwrap(), "my phone");
        assert!(free_text("a\nb", "label", 64).is_err());
        assert!(free_text(&"x".repeat(65), "label", 64).is_err());
    }

    #[test]
    fn enum_fields_refuse_unknown_values() {
        assert_eq!(enum_field::<v1::FareClass>(0, "fare_class").unwrap(), None);
        assert_eq!(
            enum_field::<v1::FareClass>(2, "fare_class").unwrap(),
            Some(v1::FareClass::Student)
        );
        let err = enum_field::<v1::FareClass>(99, "fare_class").unwrap_err();
        assert_eq!(err.to_string(), "fare_class: unknown enum value");
    }

    #[test]
    fn device_page_tokens_round_trip_and_refuse_anything_else() {
        let cursor = DeviceCursor {
            bound_at: Timestamp::from_micros(1_800_000_000_123_456),
            device_id: DeviceId::from_bytes([7; 16]),
        };
        let token = device_page_token_of(cursor);
        assert_eq!(device_page_token(&token).unwrap(), Some(cursor));
        assert_eq!(device_page_token("").unwrap(), None);
        for bad in [
            "d1:",
            "d1:12",
            "c1:1:00",
            "d1:-1:0707",
            "d1:1:zz",
            &token[1..],
        ] {
            assert!(device_page_token(bad).is_err(), "{bad}");
        }
        assert_eq!(page_size(0, 50, 200).unwrap(), 50);
        assert_eq!(page_size(1000, 50, 200).unwrap(), 200);
        assert!(page_size(-1, 50, 200).is_err());
    }

    #[test]
    fn signatures_and_keys_are_shape_checked() {
        assert!(parse_signature(&[0; 64]).is_ok());
        assert!(parse_signature(&[0; 63]).is_err());
        assert!(parse_public_key(&[4; 65]).is_err());
        assert!(parse_public_key(&[]).is_err());
    }
}
