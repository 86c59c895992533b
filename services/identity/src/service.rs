//! The gRPC face of the service: `IdentityService` from `identity.proto`, kept thin.
//!
//! Each method parses its request into validated domain values ([`crate::convert`]:
//! every malformed field is INVALID_ARGUMENT naming the field, before anything is read
//! or written), calls [`Identity`], and formats the answer (`convert` again). Errors
//! become statuses in one place, `citypass_runtime::to_status`, through [`Error`]'s
//! `ServiceError` impl.

use citypass_device_proof::{Proof, SignedRequest, body_sha256};
use citypass_proto::v1::{self, identity_service_server::IdentityService};
use citypass_runtime::{Caller, IntoStatus, Principal, Role};
use tonic::{Request, Response, Status};

use crate::challenge;
use crate::convert::{
    self, DEFAULT_CERTIFICATE_PAGE, DEFAULT_DEVICE_PAGE, MAX_CERTIFICATE_PAGE, MAX_DEVICE_PAGE,
    MAX_LABEL_CHARS, MAX_REASON_CHARS, attributes, binding_authority, certificate,
    certificate_page_token, certificate_page_token_of, device, device_page_token,
    device_page_token_of, enum_field, free_text, page_size, parse_public_key, parse_serial,
    parse_signature, timestamp_field,
};
use crate::device_call::DeviceCall;
use crate::document::Document;
use crate::error::Error;
use crate::identity::{BindRequest, FaceCaller, Identity};
use crate::ids::{DeviceId, SubjectId};
use crate::model::{
    AttributesUpdate, CertificateOwner, CertificatePage, DevicePage, NewCertificate,
};
use crate::name::Name;
use crate::retries::RequestId;

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
}

/// Who makes a face call (see identity.proto): a request naming a device or carrying a
/// proof is the app's, checked as a device-signed call; without either, the caller
/// must be an operator at a counter: a `face-counter` (any face call), or an
/// `identity-admin` where `admin_allowed` (consents, withdrawals; not enrolment,
/// finding F8: PERMISSION_DENIED `FACE_COUNTER_REQUIRED`). Anyone else is
/// UNAUTHENTICATED (`PROOF_MISSING`) as any unsigned citizen call is.
fn face_caller<R: SignedRequest>(
    caller: Option<&Caller>,
    request: &R,
    device_id: &str,
    admin_allowed: bool,
) -> Result<FaceCaller, Error> {
    if !device_id.is_empty() || request.proof().is_some() {
        return Ok(FaceCaller::Device(DeviceCall {
            method: R::METHOD,
            device: DeviceId::parse(device_id)?,
            proof: request.proof().cloned().map(Proof::from),
            body_sha256: body_sha256(request),
        }));
    }
    match caller.and_then(|c| c.principal.as_deref()) {
        Some(Principal::Operator { name, roles }) if roles.contains(&Role::FaceCounter) => {
            Ok(FaceCaller::Counter {
                counter: name.clone(),
            })
        }
        Some(Principal::Operator { name, roles }) if roles.contains(&Role::IdentityAdmin) => {
            if admin_allowed {
                Ok(FaceCaller::Operator {
                    operator: name.clone(),
                })
            } else {
                Err(Error::FaceCounterRequired)
            }
        }
        _ => Err(Error::Proof(citypass_device_proof::ProofError::Missing)),
    }
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
                    subject: Some(convert::subject(enrolled.subject)),
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
                    subject: Some(convert::subject(subject)),
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
                    subject: Some(convert::subject(subject)),
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
                    subject: Some(convert::subject(subject)),
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

    async fn record_face_consent(
        &self,
        request: Request<v1::RecordFaceConsentRequest>,
    ) -> Result<Response<v1::RecordFaceConsentResponse>, Status> {
        let caller = face_caller(
            Caller::of(&request),
            request.get_ref(),
            &request.get_ref().device_id,
            true,
        );
        let req = request.into_inner();
        answer(
            async {
                let caller = caller?;
                let consent = convert::consent_request(&req)?;
                let recorded = self.identity.record_face_consent(caller, consent).await?;
                Ok(v1::RecordFaceConsentResponse {
                    consent: Some(convert::consent(recorded)),
                })
            }
            .await,
        )
    }

    async fn withdraw_face_consent(
        &self,
        request: Request<v1::WithdrawFaceConsentRequest>,
    ) -> Result<Response<v1::WithdrawFaceConsentResponse>, Status> {
        let caller = face_caller(
            Caller::of(&request),
            request.get_ref(),
            &request.get_ref().device_id,
            true,
        );
        let req = request.into_inner();
        answer(
            async {
                let caller = caller?;
                let subject = SubjectId::parse(&req.subject_id)?;
                let purpose = enum_field::<v1::FacePurpose>(req.purpose, "purpose")?;
                let withdrawal = self
                    .identity
                    .withdraw_face_consent(caller, subject, purpose)
                    .await?;
                Ok(v1::WithdrawFaceConsentResponse {
                    withdrawn: withdrawal.withdrawn.into_iter().map(i32::from).collect(),
                    template_deleted: withdrawal.template_deleted,
                })
            }
            .await,
        )
    }

    async fn enrol_face(
        &self,
        request: Request<v1::EnrolFaceRequest>,
    ) -> Result<Response<v1::EnrolFaceResponse>, Status> {
        let caller = face_caller(
            Caller::of(&request),
            request.get_ref(),
            &request.get_ref().device_id,
            false,
        );
        let req = request.into_inner();
        answer(
            async {
                let caller = caller?;
                let subject = SubjectId::parse(&req.subject_id)?;
                let embedding = convert::embedding(&req.embedding)?;
                let enrolment = self
                    .identity
                    .enrol_face(caller, subject, &embedding)
                    .await?;
                Ok(v1::EnrolFaceResponse {
                    subject_id: enrolment.subject_id.to_string(),
                    purposes: enrolment.purposes.into_iter().map(i32::from).collect(),
                    channel: enrolment.channel.into(),
                    enrolled_at: Some(enrolment.enrolled_at.to_proto()),
                })
            }
            .await,
        )
    }

    async fn get_face_enrolment_stats(
        &self,
        _request: Request<v1::GetFaceEnrolmentStatsRequest>,
    ) -> Result<Response<v1::GetFaceEnrolmentStatsResponse>, Status> {
        answer(
            async {
                let stats = self.identity.face_stats().await?;
                let threshold = self.identity.faces().filing_threshold();
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                Ok(v1::GetFaceEnrolmentStatsResponse {
                    enrolled_people: count(stats.enrolled_people),
                    filing_threshold: count(threshold),
                    filing_threshold_reached: stats.enrolled_people >= threshold,
                    counter_check_consents: count(stats.counter_check_consents),
                    face_pass_consents: count(stats.face_pass_consents),
                })
            }
            .await,
        )
    }

    async fn list_face_template_changes(
        &self,
        request: Request<v1::ListFaceTemplateChangesRequest>,
    ) -> Result<Response<v1::ListFaceTemplateChangesResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                if req.after_sequence < 0 {
                    return Err(Error::invalid("after_sequence", "must not be negative"));
                }
                let limit = page_size(
                    req.page_size,
                    convert::DEFAULT_FACE_PAGE,
                    convert::MAX_FACE_PAGE,
                )?;
                let (entries, more) = self
                    .identity
                    .face_changes(req.after_sequence, limit)
                    .await?;
                // Read after the page: at least every sequence the page holds.
                let last_sequence = self.identity.face_last_sequence().await?;
                let next_sequence = entries.last().map_or(req.after_sequence, |e| e.sequence);
                Ok(v1::ListFaceTemplateChangesResponse {
                    changes: entries.into_iter().map(convert::feed_entry).collect(),
                    next_sequence,
                    more,
                    last_sequence: Some(last_sequence),
                })
            }
            .await,
        )
    }
}
