//! What the issuer asks the identity service, behind a trait.
//!
//! Identity owns subjects and devices; the issuer only reads a device (its key and
//! status, its subject's status and attributes) to decide whether to issue, and records
//! each device certificate there before handing it out, so that no certificate exists
//! that revoking its device cannot find. Services never link each other's crates, so
//! the production implementation is the generated gRPC client ([`GrpcIdentity`]);
//! tests and embeddings may bring their own [`IdentityLookup`].
//!
//! GetDevice sits on the hot path of every issuance, so answers are reused for a few
//! seconds ([`CachedIdentity`], bounded). That delay is the longest an unbind or a
//! suspension takes to stop issuance; revocation of codes already issued is the
//! revocation service's job. Misses are remembered too, but only for [`MISS_TTL`]:
//! GetDevice runs before the device's signature can be checked (the key comes from
//! the answer), so junk requests repeating an unknown device id would otherwise each
//! cost a database lookup (security review, smaller findings); a device bound a moment
//! ago is refused for at most that second.

use citypass_proto::time::timestamp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::{
    Attributes, DeviceCertificate, DeviceStatus, GetDeviceRequest, RecordCertificateRequest,
    SubjectStatus,
};
use citypass_runtime::{Deadline, InjectTraceContext};
use citypass_token::{DeviceId, PublicKey, SubjectId};
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use futures::future::BoxFuture;

/// A device as the issuer needs it, with its subject's standing.
#[derive(Clone)]
pub struct DeviceRecord {
    /// The device's id.
    pub device: DeviceId,
    /// The subject the device is bound to.
    pub subject: SubjectId,
    /// The bound P-256 key that signs the device's requests (validated).
    pub public_key: PublicKey,
    /// Binding state.
    pub device_status: DeviceStatus,
    /// The subject's lifecycle state.
    pub subject_status: SubjectStatus,
    /// The subject's attributes, for the scene policy.
    pub attributes: Attributes,
}

impl std::fmt::Debug for DeviceRecord {
    // Ids stay out of debug output, which may end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRecord")
            .field("device_status", &self.device_status)
            .field("subject_status", &self.subject_status)
            .finish_non_exhaustive()
    }
}

/// A certificate to record at identity before it is returned.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    /// The random serial.
    pub serial: citypass_token::CertSerial,
    /// The device whose key requested it.
    pub device: DeviceId,
    /// The device's subject.
    pub subject: SubjectId,
    /// Validity start, Unix seconds.
    pub not_before: u64,
    /// Validity end, Unix seconds.
    pub not_after: u64,
}

impl std::fmt::Debug for CertificateRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateRecord")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Why identity could not answer. Texts carry no ids.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The identity service is unreachable or overloaded.
    #[error("identity service unavailable")]
    Unavailable(#[source] tonic::Status),
    /// The call ran out of time.
    #[error("identity service did not answer in time")]
    DeadlineExceeded,
    /// RecordCertificate: the device no longer exists.
    #[error("device not found")]
    DeviceNotFound,
    /// RecordCertificate: the device was unbound meanwhile.
    #[error("device is not active")]
    DeviceNotActive,
    /// RecordCertificate: the device already holds as many live certificates as
    /// identity allows.
    #[error("the device holds the most live certificates allowed")]
    CertificateLimit,
    /// The answer broke the API contract (a bug on one side).
    #[error("identity service answered unexpectedly: {0}")]
    Unexpected(&'static str),
    /// Identity answered with a status the issuer does not expect.
    #[error("identity service failed")]
    Failed(#[source] tonic::Status),
    /// The configured identity URL is not a valid endpoint.
    #[error("invalid identity service URL")]
    InvalidUrl(#[source] tonic::transport::Error),
}

/// The identity calls the issuer makes.
pub trait IdentityLookup: Send + Sync + 'static {
    /// The device with its subject's standing; `Ok(None)` if identity knows no such
    /// device. `deadline` is passed on to the remote call.
    fn get_device<'a>(
        &'a self,
        device: &'a DeviceId,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Option<Arc<DeviceRecord>>, IdentityError>>;

    /// Records a certificate about to be returned. Retrying the same record is safe.
    fn record_certificate<'a>(
        &'a self,
        certificate: &'a CertificateRecord,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<(), IdentityError>>;
}

/// The generated identity client, with W3C trace context on every call.
pub type IdentityClient = IdentityServiceClient<InjectTraceContext<Channel>>;

/// [`IdentityLookup`] over gRPC to the identity service.
#[derive(Debug, Clone)]
pub struct GrpcIdentity {
    client: IdentityClient,
}

impl GrpcIdentity {
    /// A client for `url` (e.g. `http://identity:50051`) that connects on first use and
    /// reconnects by itself, so the issuer starts even while identity is still starting.
    pub fn connect_lazy(url: &str, connect_timeout: Duration) -> Result<Self, IdentityError> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(IdentityError::InvalidUrl)?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self::new(channel))
    }

    /// A client on an existing channel.
    pub fn new(channel: Channel) -> Self {
        GrpcIdentity {
            client: IdentityServiceClient::new(InjectTraceContext::new(channel)),
        }
    }
}

fn request<T>(message: T, deadline: Option<Deadline>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(deadline) = deadline {
        deadline.apply(&mut request);
    }
    request
}

fn transport_error(status: tonic::Status) -> IdentityError {
    match status.code() {
        Code::DeadlineExceeded => IdentityError::DeadlineExceeded,
        Code::Unavailable | Code::ResourceExhausted | Code::Cancelled | Code::Unknown => {
            IdentityError::Unavailable(status)
        }
        _ => IdentityError::Failed(status),
    }
}

impl IdentityLookup for GrpcIdentity {
    fn get_device<'a>(
        &'a self,
        device: &'a DeviceId,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Option<Arc<DeviceRecord>>, IdentityError>> {
        Box::pin(async move {
            let message = GetDeviceRequest {
                device_id: device.to_string(),
            };
            let answer = match self
                .client
                .clone()
                .get_device(request(message, deadline))
                .await
            {
                Ok(answer) => answer.into_inner(),
                Err(status) if status.code() == Code::NotFound => return Ok(None),
                Err(status) => return Err(transport_error(status)),
            };
            let found = answer.device.ok_or(IdentityError::Unexpected(
                "GetDevice answered without a device",
            ))?;
            let answered = DeviceId::parse(&found.device_id)
                .map_err(|_| IdentityError::Unexpected("GetDevice answered a malformed id"))?;
            if answered != *device {
                return Err(IdentityError::Unexpected(
                    "GetDevice answered another device",
                ));
            }
            let subject = SubjectId::parse(&found.subject_id)
                .map_err(|_| IdentityError::Unexpected("GetDevice answered a malformed id"))?;
            let public_key = PublicKey::p256(&found.public_key)
                .map_err(|_| IdentityError::Unexpected("the device's key is malformed"))?;
            Ok(Some(Arc::new(DeviceRecord {
                device_status: DeviceStatus::try_from(found.status)
                    .unwrap_or(DeviceStatus::Unspecified),
                subject_status: SubjectStatus::try_from(answer.subject_status)
                    .unwrap_or(SubjectStatus::Unspecified),
                attributes: answer.subject_attributes.unwrap_or_default(),
                device: answered,
                subject,
                public_key,
            })))
        })
    }

    fn record_certificate<'a>(
        &'a self,
        certificate: &'a CertificateRecord,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<(), IdentityError>> {
        Box::pin(async move {
            let message = RecordCertificateRequest {
                certificate: Some(DeviceCertificate {
                    serial: certificate.serial.as_bytes().to_vec(),
                    device_id: certificate.device.to_string(),
                    subject_id: certificate.subject.to_string(),
                    not_before: Some(timestamp(certificate.not_before)),
                    not_after: Some(timestamp(certificate.not_after)),
                }),
            };
            match self
                .client
                .clone()
                .record_certificate(request(message, deadline))
                .await
            {
                Ok(_) => Ok(()),
                Err(status) => Err(match status.code() {
                    Code::NotFound => IdentityError::DeviceNotFound,
                    Code::FailedPrecondition => IdentityError::DeviceNotActive,
                    Code::ResourceExhausted
                        if citypass_runtime::reason_of(&status).as_deref()
                            == Some("CERTIFICATE_LIMIT") =>
                    {
                        IdentityError::CertificateLimit
                    }
                    _ => transport_error(status),
                }),
            }
        })
    }
}

/// How long a GetDevice miss is remembered (never longer than the cache's `ttl`).
pub const MISS_TTL: Duration = Duration::from_secs(1);

/// GetDevice answers reused for `ttl` (misses for [`MISS_TTL`]), at most `capacity`
/// devices (see the module documentation). RecordCertificate always goes through.
pub struct CachedIdentity {
    inner: Arc<dyn IdentityLookup>,
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<DeviceId, Remembered>>,
}

/// A remembered GetDevice answer (`None`: a miss) and when it goes stale.
type Remembered = (Instant, Option<Arc<DeviceRecord>>);

impl std::fmt::Debug for CachedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedIdentity")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl CachedIdentity {
    /// Caches `inner`'s answers for `ttl` (zero: no caching).
    pub fn new(inner: Arc<dyn IdentityLookup>, ttl: Duration, capacity: usize) -> Self {
        CachedIdentity {
            inner,
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The remembered answer, if still fresh: `Some(None)` is a remembered miss.
    fn cached(&self, device: &DeviceId) -> Option<Option<Arc<DeviceRecord>>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(device) {
            Some((expiry, record)) if *expiry > Instant::now() => Some(record.clone()),
            _ => None,
        }
    }

    fn remember(&self, device: DeviceId, found: &Option<Arc<DeviceRecord>>) {
        let now = Instant::now();
        let ttl = match found {
            Some(_) => self.ttl,
            None => self.ttl.min(MISS_TTL),
        };
        // A TTL beyond the clock's range (the configuration bounds it at 60 s; a library
        // caller might not) is not remembered rather than a panic.
        let Some(expiry) = now.checked_add(ttl) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&device) {
            entries.retain(|_, (expiry, _)| *expiry > now);
            if entries.len() >= self.capacity / 4 * 3 {
                // Mostly live entries: rather than sweep again at every insert, start
                // afresh (forgetting a cache entry only costs a lookup).
                entries.clear();
            }
        }
        entries.insert(device, (expiry, found.clone()));
    }
}

impl IdentityLookup for CachedIdentity {
    fn get_device<'a>(
        &'a self,
        device: &'a DeviceId,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Option<Arc<DeviceRecord>>, IdentityError>> {
        Box::pin(async move {
            if self.ttl.is_zero() {
                return self.inner.get_device(device, deadline).await;
            }
            if let Some(answer) = self.cached(device) {
                return Ok(answer);
            }
            let found = self.inner.get_device(device, deadline).await?;
            self.remember(*device, &found);
            Ok(found)
        })
    }

    fn record_certificate<'a>(
        &'a self,
        certificate: &'a CertificateRecord,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<(), IdentityError>> {
        self.inner.record_certificate(certificate, deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const MISSING: DeviceId = DeviceId::from_bytes([0xff; 16]);

    fn device(i: u8) -> DeviceId {
        DeviceId::from_bytes([i; 16])
    }

    struct Counting {
        calls: AtomicUsize,
        key: PublicKey,
    }

    impl IdentityLookup for Counting {
        fn get_device<'a>(
            &'a self,
            device: &'a DeviceId,
            _deadline: Option<Deadline>,
        ) -> BoxFuture<'a, Result<Option<Arc<DeviceRecord>>, IdentityError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let found = (*device != MISSING).then(|| {
                Arc::new(DeviceRecord {
                    device: *device,
                    subject: SubjectId::from_bytes([5; 16]),
                    public_key: self.key.clone(),
                    device_status: DeviceStatus::Active,
                    subject_status: SubjectStatus::Active,
                    attributes: Attributes::default(),
                })
            });
            Box::pin(std::future::ready(Ok(found)))
        }

        fn record_certificate<'a>(
            &'a self,
            _certificate: &'a CertificateRecord,
            _deadline: Option<Deadline>,
        ) -> BoxFuture<'a, Result<(), IdentityError>> {
            Box::pin(std::future::ready(Ok(())))
        }
    }

    fn counting() -> Arc<Counting> {
        let rng = citypass_token::SystemRandom::new();
        let key = citypass_token::DeviceKey::generate(&rng).expect("key");
        Arc::new(Counting {
            calls: AtomicUsize::new(0),
            key: key.public_key().clone(),
        })
    }

    #[tokio::test]
    async fn smaller_findings_answers_and_misses_are_reused_for_their_ttl_only() {
        let inner = counting();
        // Lookups between sleeps take microseconds; the TTLs leave a second's margin
        // for a busy machine.
        let cache = CachedIdentity::new(inner.clone(), Duration::from_secs(2), 10);
        for _ in 0..3 {
            assert!(cache.get_device(&device(1), None).await.unwrap().is_some());
        }
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        // Misses are remembered too, but only for MISS_TTL (1 s, shorter than the
        // cache's 2 s): junk repeating an unknown id costs one lookup a second.
        for _ in 0..3 {
            assert!(cache.get_device(&MISSING, None).await.unwrap().is_none());
        }
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert!(cache.get_device(&MISSING, None).await.unwrap().is_none());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3, "the miss expired");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(cache.get_device(&device(1), None).await.unwrap().is_some());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 4, "the answer expired");
    }

    /// Security review, smaller findings: `now + ttl` was unchecked, so a TTL beyond
    /// the clock's range panicked at the first answer. Now the answer is used and not
    /// remembered.
    #[tokio::test]
    async fn smaller_findings_a_ttl_beyond_the_clock_does_not_panic() {
        let inner = counting();
        let cache = CachedIdentity::new(inner.clone(), Duration::MAX, 10);
        for _ in 0..2 {
            assert!(cache.get_device(&device(1), None).await.unwrap().is_some());
        }
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2, "nothing remembered");
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let inner = counting();
        let cache = CachedIdentity::new(inner, Duration::from_secs(60), 4);
        for i in 0..50 {
            cache.get_device(&device(i), None).await.unwrap();
            let held = cache.entries.lock().unwrap().len();
            assert!(held <= 4, "{held}");
        }
    }
}
