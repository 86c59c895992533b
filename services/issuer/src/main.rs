//! `citypass-issuer`: configuration → telemetry → keys, stores, identity client,
//! revocation follower → IssuerService → the runtime's server. Nothing else happens
//! here.
//!
//! Configuration: the YAML file named by `CITYPASS_CONFIG` (optional), then
//! `CITYPASS_…` variables (see `citypass_issuer::Config`), e.g.
//! `CITYPASS_SERVER__SERVICE_NAME=issuer CITYPASS_ENVIRONMENT=dev citypass-issuer`.

use std::sync::Arc;

use anyhow::Context as _;
use citypass_issuer::{
    Config, FollowerCheck, GrpcIdentity, KeySource, Keys, MemoryNonceStore, NonceStore,
    RedisNonceStore, issuer_service,
};
use citypass_runtime::Server;

/// Time allowed for Redis to answer a command or a connection attempt.
const REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = citypass_runtime::config::config_path_from_env("CITYPASS");
    let config: Config = citypass_runtime::config::load(path.as_deref(), "CITYPASS")?;
    config.validate()?;
    let telemetry = citypass_runtime::telemetry::init(&config.server)?;

    let keys = Keys::load(
        KeySource::File {
            path: config.keyring_path.clone(),
            reload_interval: config.key_reload_interval,
        },
        config.environment,
    )
    .context("loading the key ring")?;
    let nonces: Arc<dyn NonceStore> = match &config.redis_url {
        Some(url) => Arc::new(
            RedisNonceStore::connect(url, config.redis_key_prefix.clone(), REDIS_TIMEOUT)
                .await
                .context("connecting to Redis")?,
        ),
        None => Arc::new(MemoryNonceStore::new(config.nonce_capacity)),
    };
    let identity =
        GrpcIdentity::connect_lazy(&config.identity_url, config.identity_connect_timeout)?;
    // Issuance fails closed (UNAVAILABLE) until the follower's first sync, and whenever
    // its data is older than revocation.max_age.
    let revocation = FollowerCheck::start(&config.revocation, config.redis_url.as_deref())
        .context("starting the revocation follower")?;
    tracing::info!(
        url = %config.revocation.url,
        source = ?config.revocation.follower_config(config.redis_url.as_deref())?.source,
        max_age = ?config.revocation.max_age,
        "following the revocation log"
    );
    let service = issuer_service(
        config.issuance.clone(),
        keys,
        nonces,
        Arc::new(identity),
        Arc::new(revocation),
    )?;

    let served = Server::new(config.server.clone())
        .add_service(service)
        .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET)
        .run()
        .await;
    telemetry.shutdown().await;
    served?;
    Ok(())
}
