//! Who a citizen's call acts for: the device that signed it, and that device's
//! subject's transit account.
//!
//! The citizen's calls (LinkAccount, UnlinkAccount, GetLink, GetTrips, GetArrears,
//! RepayArrears) are signed by the citizen's bound device, as IssueToken is, and are
//! checked the same way, with the same code (`citypass_device_proof`):
//! 1. the proof's shape and freshness, before any lookup (`UNAUTHENTICATED`);
//! 2. the device at identity (GetDevice, answers cached a few seconds): unknown is
//!    `NOT_FOUND` (`DEVICE_NOT_FOUND`);
//! 3. the signature with the device's bound key, then the nonce, first use wins
//!    (`UNAUTHENTICATED`);
//! 4. the device is bound (ACTIVE): an unbound device is `PERMISSION_DENIED`
//!    (`DEVICE_NOT_ACTIVE`);
//! 5. neither the device nor its subject is revoked in the revocation log, read from a
//!    follower as the issuer reads it (`citypass_revocation_follow::FollowerCheck`): a
//!    revoked one is `PERMISSION_DENIED` (`DEVICE_REVOKED`, `SUBJECT_REVOKED`), data
//!    older than `revocation.max_age` is `UNAVAILABLE` (`REVOCATION_DATA_UNAVAILABLE`).
//!    A phone reported stolen is revoked at once in the log while identity may still
//!    show it bound: without this step it could still unlink the owner's account or
//!    link another;
//! 6. the subject's transit account at identity (GetTransitAccount). A request naming
//!    another account is `PERMISSION_DENIED` (`NOT_YOUR_ACCOUNT`).
//!
//! The subject id is used for the GetTransitAccount lookup only and is never stored,
//! logged or returned: payments keeps the transit account alone.

use std::sync::Arc;
use std::time::SystemTime;

use citypass_device_proof::{Proof, ProofVerifier};
use citypass_identity_client::{DeviceCache, DeviceRecord, IdentityClient, IdentityError};
use citypass_revocation_follow::{RevocationCheck, RevocationStatus};
use citypass_runtime::Deadline;
use citypass_token::{DeviceId, SubjectId};
use futures::future::BoxFuture;

use crate::account::TransitAccount;
use crate::error::Error;

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
    /// The transit account the request names, if it names one.
    pub account: Option<TransitAccount>,
}

impl std::fmt::Debug for DeviceCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCall")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// What payments asks identity (a seam: the gRPC client in service, fakes in tests).
pub trait Directory: Send + Sync + 'static {
    /// The device with its subject's standing; `Ok(None)` if unknown.
    fn device<'a>(
        &'a self,
        device: &'a DeviceId,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Option<Arc<DeviceRecord>>, IdentityError>>;

    /// The subject's transit account (32 lower-case hex); `Ok(None)` if unknown.
    fn transit_account<'a>(
        &'a self,
        subject: &'a SubjectId,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Option<String>, IdentityError>>;
}

/// [`Directory`] over gRPC to identity, GetDevice answers cached
/// ([`citypass_identity_client::DeviceCache`]). The transit account is fixed at
/// enrolment, but it is asked each time rather than cached: a cache of it would be a
/// table from subjects to accounts, which payments does not keep.
pub struct GrpcDirectory {
    client: IdentityClient,
    devices: DeviceCache,
}

impl std::fmt::Debug for GrpcDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcDirectory")
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

impl GrpcDirectory {
    /// Identity at `client`, device answers reused for `devices`' ttl.
    pub fn new(client: IdentityClient, devices: DeviceCache) -> Self {
        GrpcDirectory { client, devices }
    }
}

impl Directory for GrpcDirectory {
    fn device<'a>(
        &'a self,
        device: &'a DeviceId,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Option<Arc<DeviceRecord>>, IdentityError>> {
        Box::pin(self.devices.get_or_fetch(device, move || async move {
            Ok(
                citypass_identity_client::get_device(&self.client, device, deadline)
                    .await?
                    .map(Arc::new),
            )
        }))
    }

    fn transit_account<'a>(
        &'a self,
        subject: &'a SubjectId,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Option<String>, IdentityError>> {
        Box::pin(citypass_identity_client::transit_account(
            &self.client,
            subject,
            deadline,
        ))
    }
}

/// Checks citizens' device-signed calls (see the module documentation).
#[derive(Clone)]
pub struct Citizens {
    proofs: ProofVerifier,
    directory: Arc<dyn Directory>,
    revocations: Arc<dyn RevocationCheck>,
}

impl std::fmt::Debug for Citizens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Citizens")
            .field("proofs", &self.proofs)
            .finish_non_exhaustive()
    }
}

impl Citizens {
    /// Proofs checked by `proofs`, devices and accounts read from `directory`,
    /// revocations from `revocations`.
    pub fn new(
        proofs: ProofVerifier,
        directory: Arc<dyn Directory>,
        revocations: Arc<dyn RevocationCheck>,
    ) -> Self {
        Citizens {
            proofs,
            directory,
            revocations,
        }
    }

    /// The transit account `call` acts for, once every check passed (in the order of
    /// the module documentation), at `now`.
    pub async fn authorize(
        &self,
        call: DeviceCall,
        now: SystemTime,
        deadline: Option<Deadline>,
    ) -> Result<TransitAccount, Error> {
        let presented = self
            .proofs
            .presented(call.proof, now)
            .map_err(Error::Proof)?;
        let device = self
            .directory
            .device(&call.device, deadline)
            .await
            .map_err(Error::Identity)?
            .ok_or(Error::DeviceNotFound)?;
        self.proofs
            .authenticate(
                &presented,
                call.method,
                &call.body_sha256,
                &call.device,
                &device.public_key,
            )
            .await
            .map_err(Error::Proof)?;
        if device.device_status != citypass_proto::v1::DeviceStatus::Active {
            return Err(Error::DeviceNotActive);
        }
        match self
            .revocations
            .check(&device.subject, &call.device)
            .await
            .map_err(Error::Revocation)?
        {
            RevocationStatus::NotRevoked => {}
            RevocationStatus::SubjectRevoked => return Err(Error::SubjectRevoked),
            RevocationStatus::DeviceRevoked => return Err(Error::DeviceRevoked),
        }
        let account = self
            .directory
            .transit_account(&device.subject, deadline)
            .await
            .map_err(Error::Identity)?
            .ok_or(Error::Identity(IdentityError::Unexpected(
                "GetTransitAccount does not know the device's subject",
            )))?;
        let account = TransitAccount::parse(&account).ok_or(Error::Identity(
            IdentityError::Unexpected("GetTransitAccount answered a malformed account"),
        ))?;
        if call.account.is_some_and(|named| named != account) {
            return Err(Error::NotYourAccount);
        }
        Ok(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_device_proof::{MemoryNonceStore, ProofError, sign_request};
    use citypass_proto::v1::{
        Attributes, DeviceStatus, GetArrearsRequest, GetLinkRequest, SubjectStatus,
    };
    use citypass_token::{DeviceKey, SystemRandom};
    use std::collections::HashMap;
    use std::time::Duration;

    const ACCOUNT: &str = "00112233445566778899aabbccddeeff";

    struct Fake {
        devices: HashMap<DeviceId, Arc<DeviceRecord>>,
    }

    impl Directory for Fake {
        fn device<'a>(
            &'a self,
            device: &'a DeviceId,
            _deadline: Option<Deadline>,
        ) -> BoxFuture<'a, Result<Option<Arc<DeviceRecord>>, IdentityError>> {
            Box::pin(std::future::ready(Ok(self.devices.get(device).cloned())))
        }

        fn transit_account<'a>(
            &'a self,
            subject: &'a SubjectId,
            _deadline: Option<Deadline>,
        ) -> BoxFuture<'a, Result<Option<String>, IdentityError>> {
            let known = *subject == SubjectId::from_bytes([7; 16]);
            Box::pin(std::future::ready(Ok(known.then(|| ACCOUNT.to_owned()))))
        }
    }

    /// The revocation log as the tests want it.
    #[derive(Default)]
    struct Log {
        subject_revoked: bool,
        device_revoked: Option<DeviceId>,
        stale: bool,
    }

    impl RevocationCheck for Log {
        fn check<'a>(
            &'a self,
            _subject: &'a SubjectId,
            device: &'a DeviceId,
        ) -> BoxFuture<'a, Result<RevocationStatus, citypass_revocation_follow::RevocationError>>
        {
            let answer = if self.subject_revoked {
                Ok(RevocationStatus::SubjectRevoked)
            } else if self.device_revoked == Some(*device) {
                Ok(RevocationStatus::DeviceRevoked)
            } else if self.stale {
                Err(citypass_revocation_follow::RevocationError {
                    reason: "stale".into(),
                })
            } else {
                Ok(RevocationStatus::NotRevoked)
            };
            Box::pin(std::future::ready(answer))
        }
    }

    struct World {
        citizens: Citizens,
        key: DeviceKey,
        active: DeviceId,
        unbound: DeviceId,
    }

    fn world() -> World {
        world_with(Log::default())
    }

    fn world_with(log: Log) -> World {
        let key = DeviceKey::generate(&SystemRandom::new()).unwrap();
        let record = |device: DeviceId, status| {
            Arc::new(DeviceRecord {
                device,
                subject: SubjectId::from_bytes([7; 16]),
                public_key: key.public_key().clone(),
                device_status: status,
                subject_status: SubjectStatus::Active,
                attributes: Attributes::default(),
            })
        };
        let (active, unbound) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
        let devices = HashMap::from([
            (active, record(active, DeviceStatus::Active)),
            (unbound, record(unbound, DeviceStatus::Unbound)),
        ]);
        let proofs = ProofVerifier::new(
            Duration::from_secs(30),
            Arc::new(MemoryNonceStore::new(100)),
        );
        World {
            citizens: Citizens::new(proofs, Arc::new(Fake { devices }), Arc::new(log)),
            key,
            active,
            unbound,
        }
    }

    fn signed(world: &World, device: DeviceId, account: &str) -> GetLinkRequest {
        let mut request = GetLinkRequest {
            device_id: device.to_string(),
            transit_account: account.to_owned(),
            ..Default::default()
        };
        request.proof =
            Some(sign_request(citypass_device_proof::GET_LINK, &request, &world.key).unwrap());
        request
    }

    async fn authorize(
        world: &World,
        mut request: GetLinkRequest,
    ) -> Result<TransitAccount, Error> {
        let call = crate::convert::device_call(&mut request)?;
        world
            .citizens
            .authorize(call, SystemTime::now(), None)
            .await
    }

    #[tokio::test]
    async fn a_signed_call_acts_for_its_devices_account_once() {
        let world = world();
        let request = signed(&world, world.active, "");
        let account = authorize(&world, request.clone()).await.unwrap();
        assert_eq!(account.to_string(), ACCOUNT);
        // The same request again: a replay.
        assert!(matches!(
            authorize(&world, request).await,
            Err(Error::Proof(ProofError::Reused))
        ));
        // Naming its own account is fine.
        assert!(
            authorize(&world, signed(&world, world.active, ACCOUNT))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn unsigned_forged_unknown_unbound_and_foreign_calls_are_refused() {
        let world = world();
        let mut unsigned = signed(&world, world.active, "");
        unsigned.proof = None;
        assert!(matches!(
            authorize(&world, unsigned).await,
            Err(Error::Proof(ProofError::Missing))
        ));
        // Changed after signing (the account named): the body hash no longer matches.
        let mut changed = signed(&world, world.active, "");
        changed.transit_account = ACCOUNT.to_owned();
        assert!(matches!(
            authorize(&world, changed).await,
            Err(Error::Proof(ProofError::BadSignature))
        ));
        // Signed for another method (GetArrears has the same body): refused here.
        let mut other = GetLinkRequest {
            device_id: world.active.to_string(),
            ..Default::default()
        };
        let arrears = GetArrearsRequest {
            device_id: world.active.to_string(),
            ..Default::default()
        };
        other.proof =
            Some(sign_request(citypass_device_proof::GET_ARREARS, &arrears, &world.key).unwrap());
        assert!(matches!(
            authorize(&world, other).await,
            Err(Error::Proof(ProofError::BadSignature))
        ));
        let unknown = DeviceId::from_bytes([9; 16]);
        assert!(matches!(
            authorize(&world, signed(&world, unknown, "")).await,
            Err(Error::DeviceNotFound)
        ));
        assert!(matches!(
            authorize(&world, signed(&world, world.unbound, "")).await,
            Err(Error::DeviceNotActive)
        ));
        let foreign = "ffeeddccbbaa99887766554433221100";
        assert!(matches!(
            authorize(&world, signed(&world, world.active, foreign)).await,
            Err(Error::NotYourAccount)
        ));
    }

    #[tokio::test]
    async fn revoked_devices_and_subjects_and_stale_revocation_data_are_refused() {
        let device = DeviceId::from_bytes([1; 16]);
        let world = world_with(Log {
            device_revoked: Some(device),
            ..Log::default()
        });
        assert!(matches!(
            authorize(&world, signed(&world, world.active, "")).await,
            Err(Error::DeviceRevoked)
        ));
        let world = world_with(Log {
            subject_revoked: true,
            ..Log::default()
        });
        assert!(matches!(
            authorize(&world, signed(&world, world.active, "")).await,
            Err(Error::SubjectRevoked)
        ));
        let world = world_with(Log {
            stale: true,
            ..Log::default()
        });
        assert!(matches!(
            authorize(&world, signed(&world, world.active, "")).await,
            Err(Error::Revocation(_))
        ));
        // A bad proof is refused before the log is asked: nothing about the log leaks
        // to an unauthenticated caller.
        let mut unsigned = signed(&world, world.active, "");
        unsigned.proof = None;
        assert!(matches!(
            authorize(&world, unsigned).await,
            Err(Error::Proof(ProofError::Missing))
        ));
    }
}
