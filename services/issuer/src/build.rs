//! The composition root: a [`Config`] in, a ready [`Server`] out. `main.rs`,
//! `citypass dev` and the tests all build the issuer here.

use std::sync::Arc;

use citypass_revocation_follow::RevocationView;
use citypass_runtime::{BuildError, Server, part};

use crate::authorization::AUTHORIZATION;
use crate::config::Config;
use crate::identity_client::GrpcIdentity;
use crate::keys::Keys;
use crate::service::IssuerApi;
use crate::{Issuance, KeySource};
use citypass_device_proof::open_nonce_store;
use citypass_revocation_follow::FollowerCheck;

/// Largest request the issuer decodes: a device proof and a few fields.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The built issuer: the server to run, and handles on what it follows.
#[derive(Debug)]
pub struct Built {
    /// Serve it with `run()` or `serve(listener, shutdown)`.
    pub server: Server,
    /// The key ring (to rotate or observe reloads).
    pub keys: Arc<Keys>,
    /// The issuer's view of the revocation log (epoch, age); issuance fails closed
    /// until it has synced once.
    pub revocations: RevocationView,
}

/// Builds the issuer from `config`: TLS identity, key ring (followed), nonce store,
/// identity client, revocation follower, IssuerService. Call inside a tokio runtime.
pub async fn build(config: Config) -> Result<Built, BuildError> {
    build_with(config, None).await
}

/// [`build`] with a key ring held in memory instead of `config.keyring` (tests that
/// rotate keys by hand).
pub async fn build_with(
    config: Config,
    ring: Option<citypass_token::Keyring>,
) -> Result<Built, BuildError> {
    config.validate().map_err(part("configuration"))?;
    let tls = config.server.load_tls()?;
    let ca_file = config.server.tls.as_ref().map(|t| t.ca_file.as_path());
    let source = match ring {
        Some(ring) => KeySource::Memory(ring),
        None => KeySource::File {
            path: config.keyring.path.clone(),
            reload_interval: config.keyring.reload_interval,
        },
    };
    let keys = Keys::load(source, config.environment).map_err(part("key ring"))?;
    let nonces = open_nonce_store(
        config.redis.as_ref(),
        &config.redis_key_prefix,
        config.nonce_capacity,
        ca_file,
    )
    .await
    .map_err(part("Redis nonce store"))?;
    let identity = GrpcIdentity::new(
        config
            .identity
            .channel(tls.as_ref())
            .map_err(part("identity client"))?,
    );
    // Issuance fails closed (UNAVAILABLE) until the follower's first sync, and whenever
    // its data is older than revocation.max_age.
    let revocation = FollowerCheck::start(
        &config.revocation,
        config.revocation_redis(),
        tls.as_ref(),
        ca_file,
    )
    .map_err(part("revocation follower"))?;
    let revocations = revocation.view().clone();
    let issuance = Issuance::new(
        config.issuance.clone(),
        keys.clone(),
        nonces,
        Arc::new(identity),
        Arc::new(revocation),
    )
    .map_err(part("issuance settings"))?;
    let service = IssuerApi::new(issuance)
        .into_server()
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let server = Server::new(config.server)
        .tls(tls)
        .add_service(service, &AUTHORIZATION)
        .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET);
    Ok(Built {
        server,
        keys,
        revocations,
    })
}
