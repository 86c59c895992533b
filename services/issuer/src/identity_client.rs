//! What the issuer asks the identity service, behind a trait.
//!
//! Identity owns subjects and devices; the issuer only reads a device (its key and
//! status, its subject's status and attributes) to decide whether to issue, and records
//! each device certificate there before handing it out, so that no certificate exists
//! that revoking its device cannot find. Services never link each other's crates, so
//! the production implementation is the generated gRPC client ([`GrpcIdentity`]);
//! tests and embeddings may bring their own [`IdentityLookup`].
//!
//! Reading a device (the call, the checks on its answer, the cache of answers) is
//! shared with the payments service, which reads devices too: it lives in
//! `citypass_identity_client`, and this module adds what only the issuer does
//! (RecordCertificate) and the trait the issuer's logic is written against.
//! GetDevice answers are reused for a few seconds ([`CachedIdentity`], over
//! `citypass_identity_client::DeviceCache`: misses for [`MISS_TTL`] only).

use citypass_proto::time::timestamp;
use std::sync::Arc;
use std::time::Duration;

use citypass_identity_client::{DeviceCache, IdentityClient, request, transport_error};
use citypass_proto::v1::{DeviceCertificate, RecordCertificateRequest};
use citypass_runtime::Deadline;
use citypass_token::{DeviceId, SubjectId};
use tonic::Code;
use tonic::transport::Channel;

use futures::future::BoxFuture;

pub use citypass_identity_client::{DeviceRecord, IdentityError, MISS_TTL};

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

/// [`IdentityLookup`] over gRPC to the identity service.
#[derive(Debug, Clone)]
pub struct GrpcIdentity {
    client: IdentityClient,
}

impl GrpcIdentity {
    /// A client for `url` (e.g. `http://identity:50051`) that connects on first use and
    /// reconnects by itself, so the issuer starts even while identity is still starting.
    pub fn connect_lazy(url: &str, connect_timeout: Duration) -> Result<Self, IdentityError> {
        Ok(GrpcIdentity {
            client: citypass_identity_client::connect_lazy(url, connect_timeout)?,
        })
    }

    /// A client on an existing channel.
    pub fn new(channel: Channel) -> Self {
        GrpcIdentity {
            client: citypass_identity_client::client(channel),
        }
    }
}

impl IdentityLookup for GrpcIdentity {
    fn get_device<'a>(
        &'a self,
        device: &'a DeviceId,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Option<Arc<DeviceRecord>>, IdentityError>> {
        Box::pin(async move {
            Ok(
                citypass_identity_client::get_device(&self.client, device, deadline)
                    .await?
                    .map(Arc::new),
            )
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

/// GetDevice answers reused for `ttl` (misses for [`MISS_TTL`]), at most `capacity`
/// devices (see the module documentation). RecordCertificate always goes through.
pub struct CachedIdentity {
    inner: Arc<dyn IdentityLookup>,
    devices: DeviceCache,
}

impl std::fmt::Debug for CachedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedIdentity")
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

impl CachedIdentity {
    /// Caches `inner`'s answers for `ttl` (zero: no caching).
    pub fn new(inner: Arc<dyn IdentityLookup>, ttl: Duration, capacity: usize) -> Self {
        CachedIdentity {
            inner,
            devices: DeviceCache::new(ttl, capacity),
        }
    }
}

impl IdentityLookup for CachedIdentity {
    fn get_device<'a>(
        &'a self,
        device: &'a DeviceId,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Option<Arc<DeviceRecord>>, IdentityError>> {
        Box::pin(
            self.devices
                .get_or_fetch(device, move || self.inner.get_device(device, deadline)),
        )
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
    use citypass_proto::v1::{Attributes, DeviceStatus, SubjectStatus};
    use citypass_token::PublicKey;
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
            let held = cache.devices.len();
            assert!(held <= 4, "{held}");
        }
    }
}
