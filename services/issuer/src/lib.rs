//! citypass-issuer: IssuerService, which signs online codes (CP1) and device
//! certificates for bound devices, and publishes the signed public key set.
//!
//! [`build`] is the one composition root: `main.rs`, `citypass dev` and the tests turn
//! a [`Config`] into a running server through it. [`issuer_service`] assembles the
//! service from parts, for tests that put a fake in place of one.
//!
//! Modules, one concept each:
//! - [`config`]: settings and their limits;
//! - [`authorization`]: who may call each RPC;
//! - [`build`]: the composition root;
//! - [`keys`]: the key ring, reloaded on change and swapped atomically, and the signed
//!   published key set;
//! - [`proof`]: device proofs, the server check and the app-side [`sign_request`];
//! - [`nonce`]: single-use marks (memory and Redis);
//! - [`identity_client`]: GetDevice (cached) and RecordCertificate at the identity service;
//! - [`policy`]: which scenes a subject's codes may open;
//! - [`issuance`]: the decisions; [`service`]: the tonic face; [`error`]: statuses.

#![forbid(unsafe_code)]

pub mod authorization;
pub mod build;
pub mod config;
pub mod convert;
pub mod error;
pub mod identity_client;
pub mod issuance;
pub mod keys;
pub mod model;
pub mod policy;
pub mod service;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use authorization::AUTHORIZATION;
pub use build::{Built, MAX_REQUEST_BYTES, build, build_with};
pub use citypass_device_proof::{
    ISSUE_DEVICE_CERTIFICATE, ISSUE_TOKEN, MemoryNonceStore, NonceStore, NonceStoreError,
    ProofError, RedisNonceStore, SignedRequest, body_sha256, sign_request, sign_request_with,
};
pub use citypass_proto::v1::issuer_service_server::IssuerServiceServer;
// The revocation check (a follower of the log, failing closed when its data is stale)
// is shared with payments and lives with the follower.
pub use citypass_revocation_follow::{
    Follower, FollowerCheck, FollowerConfig, FollowerError, NothingRevoked, RevocationCheck,
    RevocationError, RevocationStatus, RevocationView,
};
pub use config::{
    Config, Environment, FollowMode, InvalidConfig, IssuanceConfig, RevocationSettings,
};
pub use error::IssuerError;
pub use identity_client::{
    CachedIdentity, CertificateRecord, DeviceRecord, GrpcIdentity, IdentityError, IdentityLookup,
};
pub use issuance::Issuance;
pub use keys::{KeyError, Keys, PublishedKeys, Reload};
pub use model::{CertificateRequest, DeviceCall, IssuedCertificate, IssuedCode, TokenRequest};
pub use policy::{MinAssurance, Policy};
pub use service::IssuerApi;

/// Where the issuer's key ring comes from.
pub enum KeySource {
    /// A key ring file, polled every `reload_interval` and reloaded when it changes.
    File {
        /// The file (`keys/dev/keyring.json`, or a mounted Secret).
        path: PathBuf,
        /// How often to check it.
        reload_interval: Duration,
    },
    /// A ring held in memory; rotate it with [`Keys::replace`].
    Memory(citypass_token::Keyring),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File {
                path,
                reload_interval,
            } => f
                .debug_struct("File")
                .field("path", path)
                .field("reload_interval", reload_interval)
                .finish(),
            KeySource::Memory(ring) => f.debug_tuple("Memory").field(ring).finish(),
        }
    }
}

impl Keys {
    /// Loads keys from `source`. A file source also gets its reloader, a task that
    /// ends when the returned keys are dropped (call this inside a tokio runtime).
    pub fn load(source: KeySource, environment: Environment) -> Result<Arc<Keys>, KeyError> {
        match source {
            KeySource::File {
                path,
                reload_interval,
            } => {
                let keys = Keys::from_file(path, environment)?;
                keys.spawn_reloader(reload_interval);
                Ok(keys)
            }
            KeySource::Memory(ring) => Keys::from_keyring(ring, environment),
        }
    }
}

/// IssuerService, ready for `citypass_runtime::Server::add_service`: [`Issuance::new`]
/// wrapped in [`IssuerApi`]. Keep `keys` to reload or observe the keys.
pub fn issuer_service(
    config: IssuanceConfig,
    keys: Arc<Keys>,
    nonces: Arc<dyn NonceStore>,
    identity: Arc<dyn IdentityLookup>,
    revocation: Arc<dyn RevocationCheck>,
) -> Result<IssuerServiceServer<IssuerApi>, InvalidConfig> {
    let issuance = Issuance::new(config, keys, nonces, identity, revocation)?;
    Ok(IssuerApi::new(issuance).into_server())
}
