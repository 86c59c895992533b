//! Who a citizen's device-signed call to identity acts for: the subject of the bound
//! device that signed it (the face consent and enrolment calls from the app).
//!
//! Checked as the issuer and payments check theirs, with the same code
//! (`citypass_device_proof`), in this order:
//! 1. the proof's shape and freshness, before any lookup (`UNAUTHENTICATED`);
//! 2. the device in identity's own store: unknown is `NOT_FOUND`;
//! 3. the signature with the device's bound key, then the nonce, first use wins
//!    (`UNAUTHENTICATED`); nonces live in identity's store (PostgreSQL in deployments,
//!    shared by every replica), so identity needs no Redis;
//! 4. the device is bound (ACTIVE): an unbound one is `PERMISSION_DENIED`
//!    (`DEVICE_NOT_ACTIVE`).
//!
//! 5. the device's own allowance of face calls (`face_calls_per_device` per
//!    `face_call_window`): over it, `RESOURCE_EXHAUSTED` (`FACE_CALLS_RATE_LIMITED`).
//!    Every face write takes its turn behind one lock (store/postgres/face.rs), so one
//!    phone looping on EnrolFace would otherwise delay every citizen's face writes
//!    (SECURITY.md, face finding F2). Counted after the signature, so nobody can spend
//!    another phone's allowance; in each replica's memory, like the enrolment limits.
//!
//! The handler then requires the request's subject to be the device's
//! (`NOT_YOUR_SUBJECT`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use citypass_device_proof::{NonceStore, NonceStoreError, Proof, ProofVerifier};
use citypass_proto::v1::DeviceStatus;
use citypass_token::PublicKey;
use futures::future::BoxFuture;
use governor::DefaultKeyedRateLimiter;

use crate::attempts::quota;
use crate::error::Error;
use crate::ids::{DeviceId, SubjectId};
use crate::model::Timestamp;
use crate::store::Store;

/// A device-signed call, as the conversion layer read it.
#[derive(Clone)]
pub struct DeviceCall {
    /// The full gRPC method path the proof must be over.
    pub method: &'static str,
    /// The signing device.
    pub device: DeviceId,
    /// The proof, if the request carried one.
    pub proof: Option<Proof>,
    /// SHA-256 of the request as encoded with its proof unset.
    pub body_sha256: [u8; 32],
}

impl std::fmt::Debug for DeviceCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCall")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Checks device-signed calls against identity's own devices.
pub struct DeviceCalls {
    proofs: ProofVerifier,
    per_device: DefaultKeyedRateLimiter<DeviceId>,
}

impl std::fmt::Debug for DeviceCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCalls")
            .field("proofs", &self.proofs)
            .finish_non_exhaustive()
    }
}

impl DeviceCalls {
    /// Proofs fresh within `freshness`, nonces remembered in `store`, at most
    /// `per_device` calls per device per `window`.
    pub fn new(
        freshness: Duration,
        store: Arc<dyn Store>,
        per_device: u32,
        window: Duration,
    ) -> Result<Self, Error> {
        Ok(DeviceCalls {
            proofs: ProofVerifier::new(freshness, Arc::new(StoreNonces(store))),
            per_device: DefaultKeyedRateLimiter::keyed(quota(
                per_device,
                window,
                "face_calls_per_device, face_call_window",
            )?),
        })
    }

    /// The subject the signing device is bound to (see the module documentation).
    pub async fn subject_of(
        &self,
        store: &dyn Store,
        call: DeviceCall,
    ) -> Result<SubjectId, Error> {
        let presented = self.proofs.presented(call.proof, SystemTime::now())?;
        let view = store.get_device(call.device).await?;
        let key = PublicKey::p256(&view.device.public_key)
            .map_err(|_| Error::Corrupt("stored device key"))?;
        self.proofs
            .authenticate(
                &presented,
                call.method,
                &call.body_sha256,
                &call.device,
                &key,
            )
            .await?;
        if view.device.status != DeviceStatus::Active {
            return Err(Error::SigningDeviceNotActive);
        }
        // Idle devices are dropped now and then so the map stays small.
        if self.per_device.len() > 100_000 {
            self.per_device.retain_recent();
        }
        self.per_device
            .check_key(&call.device)
            .map_err(|_| Error::FaceCallsRateLimited)?;
        Ok(view.device.subject_id)
    }
}

/// The nonce store over identity's store.
struct StoreNonces(Arc<dyn Store>);

impl NonceStore for StoreNonces {
    fn first_use<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, NonceStoreError>> {
        Box::pin(async move {
            let now = Timestamp::now();
            self.0
                .first_use_nonce(key, now.saturating_add(ttl), now)
                .await
                .map_err(|e| NonceStoreError::Other(Box::new(e)))
        })
    }
}
