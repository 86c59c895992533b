//! The gRPC face of the service: `IdentityService` from `identity.proto`, kept thin.
//!
//! Each method parses its request into validated domain values (every malformed field
//! is INVALID_ARGUMENT naming the field, before anything is read or written), calls
//! [`Identity`], and formats the answer. Errors become statuses in one place,
//! `citypass_runtime::to_status`, through [`Error`]'s `ServiceError` impl.

use citypass_proto::prost_types;
use citypass_proto::v1::{self, identity_service_server::IdentityService};
use citypass_runtime::{Caller, IntoStatus};
use citypass_token::PublicKey;
use tonic::{Request, Response, Status};

use crate::challenge;
use crate::document::Document;
use crate::enrolment::EnrolmentSecret;
use crate::error::Error;
use crate::identity::{BindRequest, BindingAuthority, Identity};
use crate::ids::{CertSerial, DeviceId, SubjectId};
use crate::model::{
    Attributes, AttributesUpdate, Certificate, CertificateCursor, CertificateOwner,
    CertificatePage, Device, DeviceCursor, DevicePage, NewCertificate, Subject, Timestamp,
};
use crate::name::Name;
use crate::retries::RequestId;

/// Longest device label, in characters.
const MAX_LABEL_CHARS: usize = 64;
/// Longest audit reason, in characters.
const MAX_REASON_CHARS: usize = 256;

/// The tonic service: wrap it in `IdentityServiceServer::new` (or use
/// [`crate::service`]).
#[derive(Debug)]
pub struct IdentityApi {
    identity: Identity,
}

impl IdentityApi {
    /// The gRPC service over `identity`.
    pub fn new(identity: Identity) -> Self {
        IdentityApi { identity }
    }

    /// The logic underneath.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A subject as callers see it: never its transit account, which only
    /// GetTransitAccount gives, to the services the authorisation table names.
    fn subject(&self, subject: Subject) -> v1::Subject {
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
}

fn attributes(a: Attributes) -> v1::Attributes {
    v1::Attributes {
        fare_class: a.fare_class.into(),
        medical_insurance_linked: a.medical_insurance_linked,
        assurance_level: a.assurance_level.into(),
    }
}

fn device(d: Device) -> v1::Device {
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

fn certificate(c: Certificate) -> v1::DeviceCertificate {
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
fn enum_field<T: TryFrom<i32>>(value: i32, field: &'static str) -> Result<Option<T>, Error> {
    if value == 0 {
        return Ok(None);
    }
    T::try_from(value)
        .map(Some)
        .map_err(|_| Error::invalid(field, "unknown enum value"))
}

/// Free text for labels and audit reasons: bounded, printable.
/// A label or reason (see `citypass_runtime::text`).
fn free_text(text: &str, field: &'static str, max_chars: usize) -> Result<String, Error> {
    citypass_runtime::text::bounded_text(text, max_chars)
        .map(str::to_owned)
        .map_err(|err| Error::invalid(field, err.to_string()))
}

fn timestamp_field(
    ts: Option<&prost_types::Timestamp>,
    field: &'static str,
) -> Result<Timestamp, Error> {
    let ts = ts.ok_or_else(|| Error::invalid(field, "required"))?;
    Timestamp::from_proto(ts)
        .ok_or_else(|| Error::invalid(field, "must be between 1970 and 9999 with nanos in 0..1e9"))
}

fn parse_public_key(bytes: &[u8]) -> Result<PublicKey, Error> {
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

fn parse_signature(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    match bytes.len() {
        0 => Err(Error::invalid("signature", "required")),
        64 => Ok(bytes.to_vec()),
        _ => Err(Error::invalid(
            "signature",
            "must be 64 bytes (ES256, raw r || s)",
        )),
    }
}

fn parse_serial(bytes: &[u8]) -> Result<CertSerial, Error> {
    CertSerial::from_slice(bytes)
        .map_err(|_| Error::invalid("certificate.serial", "must be 16 bytes"))
}

/// The binding's authority: exactly one of the enrolment secret or a bound device.
fn binding_authority(
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
const DEFAULT_CERTIFICATE_PAGE: usize = 100;
/// Most certificates per page (well under gRPC's 4 MiB message limit).
const MAX_CERTIFICATE_PAGE: usize = 500;
const CERTIFICATE_PAGE_PREFIX: &str = "c1:";

/// The page token for the page after `cursor`: `c1:<not_before µs>:<serial hex>`.
fn certificate_page_token_of(cursor: CertificateCursor) -> String {
    format!(
        "{CERTIFICATE_PAGE_PREFIX}{}:{}",
        cursor.not_before.as_micros(),
        hex::encode(cursor.serial)
    )
}

/// The cursor a page token names; an empty token is the first page.
fn certificate_page_token(token: &str) -> Result<Option<CertificateCursor>, Error> {
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
const DEFAULT_DEVICE_PAGE: usize = 50;
/// Most devices per page.
const MAX_DEVICE_PAGE: usize = 200;
const DEVICE_PAGE_PREFIX: &str = "d1:";

/// A page size as the request gives it: 0 for the default, at most `max`.
fn page_size(size: i32, default: usize, max: usize) -> Result<usize, Error> {
    match size {
        0 => Ok(default),
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        n => Ok(usize::try_from(n).unwrap_or(max).min(max)),
    }
}

/// The page token for the page after `cursor`: `d1:<bound_at µs>:<device id>`.
fn device_page_token_of(cursor: DeviceCursor) -> String {
    format!(
        "{DEVICE_PAGE_PREFIX}{}:{}",
        cursor.bound_at.as_micros(),
        cursor.device_id
    )
}

/// The cursor a ListDevices page token names; an empty token is the first page.
fn device_page_token(token: &str) -> Result<Option<DeviceCursor>, Error> {
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

/// Runs a handler body and turns its error into the caller's status.
fn answer<T>(result: Result<T, Error>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(IntoStatus::into_status)
}

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn enrol(
        &self,
        request: Request<v1::EnrolRequest>,
    ) -> Result<Response<v1::EnrolResponse>, Status> {
        // The caller's address, as the authorisation layer saw it: what enrolment
        // attempts are counted under.
        let address = Caller::of(&request).and_then(|caller| caller.address);
        let req = request.into_inner();
        answer(
            async {
                let kind = enum_field::<v1::DocumentType>(req.document_type, "document_type")?
                    .ok_or_else(|| Error::invalid("document_type", "required"))?;
                let document = Document::parse(kind, &req.document_number, Identity::today())?;
                let name = Name::parse(&req.name)?;
                let request_id = RequestId::parse(&req.request_id)?;
                let enrolled = self
                    .identity
                    .enrol(document, name, address, request_id)
                    .await?;
                Ok(v1::EnrolResponse {
                    subject: Some(self.subject(enrolled.subject)),
                    enrolment_secret: enrolled.secret.as_bytes().to_vec(),
                    enrolment_secret_expires_at: Some(enrolled.secret_expires_at.to_proto()),
                })
            }
            .await,
        )
    }

    async fn get_subject(
        &self,
        request: Request<v1::GetSubjectRequest>,
    ) -> Result<Response<v1::GetSubjectResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let id = SubjectId::parse(&req.subject_id)?;
                let subject = self.identity.get_subject(id).await?;
                Ok(v1::GetSubjectResponse {
                    subject: Some(self.subject(subject)),
                })
            }
            .await,
        )
    }

    async fn get_transit_account(
        &self,
        request: Request<v1::GetTransitAccountRequest>,
    ) -> Result<Response<v1::GetTransitAccountResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let id = SubjectId::parse(&req.subject_id)?;
                Ok(v1::GetTransitAccountResponse {
                    transit_account: self.identity.transit_account(id).await?,
                })
            }
            .await,
        )
    }

    async fn get_subject_profile(
        &self,
        request: Request<v1::GetSubjectProfileRequest>,
    ) -> Result<Response<v1::GetSubjectProfileResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let id = SubjectId::parse(&req.subject_id)?;
                let profile = self.identity.subject_profile(id).await?;
                Ok(v1::GetSubjectProfileResponse {
                    status: profile.subject.status as i32,
                    attributes: Some(attributes(profile.subject.attributes)),
                    transit_account: profile.transit_account,
                    government_pseudonym: profile.government_pseudonym.unwrap_or_default(),
                    masked_name: profile.subject.masked_name,
                })
            }
            .await,
        )
    }

    async fn set_attributes(
        &self,
        request: Request<v1::SetAttributesRequest>,
    ) -> Result<Response<v1::SetAttributesResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let id = SubjectId::parse(&req.subject_id)?;
                let update = AttributesUpdate {
                    fare_class: enum_field(req.fare_class, "fare_class")?,
                    medical_insurance_linked: req.medical_insurance_linked,
                    assurance_level: enum_field(req.assurance_level, "assurance_level")?,
                };
                let subject = self.identity.set_attributes(id, update).await?;
                Ok(v1::SetAttributesResponse {
                    subject: Some(self.subject(subject)),
                })
            }
            .await,
        )
    }

    async fn set_subject_status(
        &self,
        request: Request<v1::SetSubjectStatusRequest>,
    ) -> Result<Response<v1::SetSubjectStatusResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let id = SubjectId::parse(&req.subject_id)?;
                let status = match enum_field::<v1::SubjectStatus>(req.status, "status")? {
                    Some(s @ (v1::SubjectStatus::Active | v1::SubjectStatus::Suspended)) => s,
                    _ => return Err(Error::invalid("status", "must be ACTIVE or SUSPENDED")),
                };
                let reason = free_text(&req.reason, "reason", MAX_REASON_CHARS)?;
                let subject = self.identity.set_status(id, status, &reason).await?;
                Ok(v1::SetSubjectStatusResponse {
                    subject: Some(self.subject(subject)),
                })
            }
            .await,
        )
    }

    async fn create_binding_challenge(
        &self,
        request: Request<v1::CreateBindingChallengeRequest>,
    ) -> Result<Response<v1::CreateBindingChallengeResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let id = SubjectId::parse(&req.subject_id)?;
                let challenge = self.identity.create_challenge(id).await?;
                Ok(v1::CreateBindingChallengeResponse {
                    challenge: challenge.bytes.to_vec(),
                    expires_at: Some(challenge.expires_at.to_proto()),
                })
            }
            .await,
        )
    }

    async fn bind_device(
        &self,
        request: Request<v1::BindDeviceRequest>,
    ) -> Result<Response<v1::BindDeviceResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let request = BindRequest {
                    subject_id: SubjectId::parse(&req.subject_id)?,
                    public_key: parse_public_key(&req.public_key)?,
                    challenge: challenge::parse(&req.challenge)?,
                    signature: parse_signature(&req.signature)?,
                    label: free_text(&req.label, "label", MAX_LABEL_CHARS)?,
                    authority: binding_authority(req.authority)?,
                };
                let bound = self.identity.bind_device(request).await?;
                Ok(v1::BindDeviceResponse {
                    device: Some(device(bound)),
                })
            }
            .await,
        )
    }

    async fn issue_enrolment_secret(
        &self,
        request: Request<v1::IssueEnrolmentSecretRequest>,
    ) -> Result<Response<v1::IssueEnrolmentSecretResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let id = SubjectId::parse(&req.subject_id)?;
                let (secret, expires_at) = self.identity.issue_enrolment_secret(id).await?;
                Ok(v1::IssueEnrolmentSecretResponse {
                    enrolment_secret: secret.as_bytes().to_vec(),
                    expires_at: Some(expires_at.to_proto()),
                })
            }
            .await,
        )
    }

    async fn unbind_device(
        &self,
        request: Request<v1::UnbindDeviceRequest>,
    ) -> Result<Response<v1::UnbindDeviceResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let subject_id = SubjectId::parse(&req.subject_id)?;
                let device_id = DeviceId::parse(&req.device_id)?;
                let reason = free_text(&req.reason, "reason", MAX_REASON_CHARS)?;
                let unbound = self
                    .identity
                    .unbind_device(subject_id, device_id, &reason)
                    .await?;
                Ok(v1::UnbindDeviceResponse {
                    device: Some(device(unbound)),
                })
            }
            .await,
        )
    }

    async fn list_devices(
        &self,
        request: Request<v1::ListDevicesRequest>,
    ) -> Result<Response<v1::ListDevicesResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let id = SubjectId::parse(&req.subject_id)?;
                let page = DevicePage {
                    after: device_page_token(&req.page_token)?,
                    limit: page_size(req.page_size, DEFAULT_DEVICE_PAGE, MAX_DEVICE_PAGE)?,
                };
                let (devices, next) = self
                    .identity
                    .list_devices(id, req.include_unbound, page)
                    .await?;
                Ok(v1::ListDevicesResponse {
                    devices: devices.into_iter().map(device).collect(),
                    next_page_token: next.map(device_page_token_of).unwrap_or_default(),
                })
            }
            .await,
        )
    }

    async fn get_device(
        &self,
        request: Request<v1::GetDeviceRequest>,
    ) -> Result<Response<v1::GetDeviceResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let id = DeviceId::parse(&req.device_id)?;
                let view = self.identity.get_device(id).await?;
                Ok(v1::GetDeviceResponse {
                    device: Some(device(view.device)),
                    subject_status: view.subject_status.into(),
                    subject_attributes: Some(attributes(view.subject_attributes)),
                })
            }
            .await,
        )
    }

    async fn record_certificate(
        &self,
        request: Request<v1::RecordCertificateRequest>,
    ) -> Result<Response<v1::RecordCertificateResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let cert = req
                    .certificate
                    .ok_or_else(|| Error::invalid("certificate", "required"))?;
                let new = NewCertificate {
                    serial: parse_serial(&cert.serial)?,
                    device_id: DeviceId::parse(&cert.device_id).map_err(|_| {
                        Error::invalid(
                            "certificate.device_id",
                            "must be 32 lower-case hexadecimal characters",
                        )
                    })?,
                    subject_id: match cert.subject_id.as_str() {
                        "" => None,
                        id => Some(SubjectId::parse(id).map_err(|_| {
                            Error::invalid(
                                "certificate.subject_id",
                                "must be empty or 32 lower-case hexadecimal characters",
                            )
                        })?),
                    },
                    not_before: timestamp_field(
                        cert.not_before.as_ref(),
                        "certificate.not_before",
                    )?,
                    not_after: timestamp_field(cert.not_after.as_ref(), "certificate.not_after")?,
                };
                if new.not_after <= new.not_before {
                    return Err(Error::invalid(
                        "certificate.not_after",
                        "must be later than not_before",
                    ));
                }
                let recorded = self.identity.record_certificate(new).await?;
                Ok(v1::RecordCertificateResponse {
                    certificate: Some(certificate(recorded)),
                })
            }
            .await,
        )
    }

    async fn list_certificates(
        &self,
        request: Request<v1::ListCertificatesRequest>,
    ) -> Result<Response<v1::ListCertificatesResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let owner = match (req.device_id.is_empty(), req.subject_id.is_empty()) {
                    (false, true) => CertificateOwner::Device(DeviceId::parse(&req.device_id)?),
                    (true, false) => CertificateOwner::Subject(SubjectId::parse(&req.subject_id)?),
                    _ => {
                        return Err(Error::invalid(
                            "device_id",
                            "exactly one of device_id and subject_id must be set",
                        ));
                    }
                };
                let page = CertificatePage {
                    after: certificate_page_token(&req.page_token)?,
                    limit: match req.page_size {
                        0 => DEFAULT_CERTIFICATE_PAGE,
                        n if n < 0 => {
                            return Err(Error::invalid("page_size", "must not be negative"));
                        }
                        n => usize::try_from(n)
                            .unwrap_or(MAX_CERTIFICATE_PAGE)
                            .min(MAX_CERTIFICATE_PAGE),
                    },
                };
                let (certificates, next) = self
                    .identity
                    .list_certificates(owner, req.include_expired, page)
                    .await?;
                Ok(v1::ListCertificatesResponse {
                    certificates: certificates.into_iter().map(certificate).collect(),
                    next_page_token: next.map(certificate_page_token_of).unwrap_or_default(),
                })
            }
            .await,
        )
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
