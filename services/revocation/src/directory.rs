//! Where a device's or subject's certificate serials come from: the identity service.
//!
//! Identity owns devices and records every certificate the issuer makes, before the
//! issuer hands it out. Revoking a device or subject must also revoke its live
//! certificate serials (offline gates check serials; they cannot unseal subjects), so
//! the revocation service asks identity (`ListCertificates`) *before* it writes: if
//! identity cannot answer, the Revoke fails UNAVAILABLE and nothing is written, rather
//! than writing a revocation that offline gates would not enforce.
//!
//! Services never link each other's crates, so the production implementation is the
//! generated gRPC client ([`GrpcDirectory`]); tests bring their own
//! [`CertificateDirectory`].

use std::time::Duration;

use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::ListCertificatesRequest;
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_runtime::{Deadline, InjectTraceContext};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

pub use crate::error::DirectoryError;
use crate::model::Certificate;
use citypass_token::{CertSerial, DeviceId, SubjectId};
use futures::future::BoxFuture;

/// Whose certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// One device's.
    Device(&'a DeviceId),
    /// Every device's of one subject.
    Subject(&'a SubjectId),
}

/// Lists the certificates of a device or subject.
pub trait CertificateDirectory: Send + Sync + 'static {
    /// The certificates of `owner` that are still valid (identity's default), oldest
    /// first. An owner identity does not know has none. `deadline` goes with the call.
    fn live_certificates<'a>(
        &'a self,
        owner: Owner<'a>,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Vec<Certificate>, DirectoryError>>;
}

/// The generated identity client, with W3C trace context on every call.
pub type IdentityClient = IdentityServiceClient<InjectTraceContext<Channel>>;

/// [`CertificateDirectory`] over gRPC to the identity service.
#[derive(Debug, Clone)]
pub struct GrpcDirectory {
    client: IdentityClient,
    timeout: Duration,
}

impl GrpcDirectory {
    /// A client for `url` (e.g. `http://identity:50051`) that connects on first use and
    /// reconnects by itself; each call takes at most `timeout` (less if the caller's
    /// deadline is nearer).
    pub fn connect_lazy(url: &str, timeout: Duration) -> Result<Self, DirectoryError> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(DirectoryError::InvalidUrl)?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self::new(channel, timeout))
    }

    /// A client on an existing channel.
    pub fn new(channel: Channel, timeout: Duration) -> Self {
        GrpcDirectory {
            client: IdentityServiceClient::new(InjectTraceContext::new(channel)),
            timeout,
        }
    }
}

fn seconds(timestamp: Option<Timestamp>) -> Result<u64, DirectoryError> {
    timestamp
        .and_then(|t| u64::try_from(t.seconds).ok())
        .ok_or(DirectoryError::Unexpected(
            "certificate without valid times",
        ))
}

impl CertificateDirectory for GrpcDirectory {
    fn live_certificates<'a>(
        &'a self,
        owner: Owner<'a>,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Vec<Certificate>, DirectoryError>> {
        Box::pin(async move {
            let mut certificates = Vec::new();
            let mut page_token = String::new();
            // Identity pages its answer (security finding 3: an unpaged list could grow
            // past the message limit and block the revocation for good); follow every
            // page, within the one call's time.
            for _ in 0..MAX_PAGES {
                let message = match owner {
                    Owner::Device(id) => ListCertificatesRequest {
                        device_id: id.to_string(),
                        page_size: PAGE_SIZE,
                        page_token: page_token.clone(),
                        ..Default::default()
                    },
                    Owner::Subject(id) => ListCertificatesRequest {
                        subject_id: id.to_string(),
                        page_size: PAGE_SIZE,
                        page_token: page_token.clone(),
                        ..Default::default()
                    },
                };
                let mut request = tonic::Request::new(message);
                let timeout = deadline.map_or(self.timeout, |d| d.remaining().min(self.timeout));
                request.set_timeout(timeout);
                let answer = match self.client.clone().list_certificates(request).await {
                    Ok(answer) => answer.into_inner(),
                    // Identity may have forgotten the device or subject; revoking it
                    // anyway is the safe direction, and it has no certificates to
                    // cascade to.
                    Err(status) if status.code() == Code::NotFound => return Ok(Vec::new()),
                    Err(status) => return Err(directory_error(status)),
                };
                for c in answer.certificates {
                    certificates.push(certificate_of(owner, c)?);
                }
                if answer.next_page_token.is_empty() {
                    return Ok(certificates);
                }
                if answer.next_page_token == page_token {
                    return Err(DirectoryError::Unexpected(
                        "ListCertificates gave the same page token twice",
                    ));
                }
                page_token = answer.next_page_token;
            }
            Err(DirectoryError::Unexpected(
                "ListCertificates had more pages than any owner can have",
            ))
        })
    }
}

/// Certificates asked for per ListCertificates page (identity's maximum).
const PAGE_SIZE: i32 = 500;
/// Pages followed at most: far beyond the live certificates an owner can hold (the
/// devices per subject times the live certificates per device), so only a broken
/// answer reaches it.
const MAX_PAGES: usize = 100;

fn directory_error(status: tonic::Status) -> DirectoryError {
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Cancelled
        | Code::Unknown
        | Code::Aborted
        | Code::Internal => DirectoryError::Unavailable(status),
        _ => DirectoryError::Failed(status),
    }
}

/// One listed certificate, checked to be `owner`'s.
fn certificate_of(
    owner: Owner<'_>,
    c: citypass_proto::v1::DeviceCertificate,
) -> Result<Certificate, DirectoryError> {
    let matches = match owner {
        Owner::Device(id) => c.device_id == id.text().as_str(),
        Owner::Subject(id) => c.subject_id == id.text().as_str(),
    };
    if !matches {
        return Err(DirectoryError::Unexpected(
            "ListCertificates answered another owner's certificate",
        ));
    }
    Ok(Certificate {
        serial: CertSerial::from_slice(&c.serial)
            .map_err(|_| DirectoryError::Unexpected("serial is not 16 bytes"))?,
        not_before: seconds(c.not_before)?,
        not_after: seconds(c.not_after)?,
    })
}
