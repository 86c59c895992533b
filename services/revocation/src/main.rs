//! `citypass-revocation`: configuration → telemetry → log, fan-out, identity client,
//! snapshot signer → RevocationService → the runtime's server. Nothing else happens
//! here.
//!
//! Configuration: the YAML file named by `CITYPASS_CONFIG` (optional), then
//! `CITYPASS_…` variables (see `citypass_revocation_service::config`), e.g.
//! `CITYPASS_ENVIRONMENT=dev citypass-revocation` for the in-memory log.

use std::sync::Arc;

use anyhow::Context as _;
use citypass_revocation_service::{
    Config, GrpcDirectory, KeyringSigner, LocalPublisher, Log, MemoryLog, PostgresLog, Publisher,
    RedisPublisher, revocation_service,
};
use citypass_runtime::Server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = citypass_runtime::config::config_path_from_env("CITYPASS");
    let config: Config = citypass_runtime::config::load(path.as_deref(), "CITYPASS")?;
    config.validate()?;
    let telemetry = citypass_runtime::telemetry::init(&config.server)?;

    let log: Arc<dyn Log> = match &config.database_url {
        Some(url) => {
            tracing::info!("log: PostgreSQL");
            Arc::new(
                PostgresLog::connect(url.expose(), config.database_max_connections)
                    .await
                    .context("cannot open the PostgreSQL log")?,
            )
        }
        None => {
            tracing::warn!("log: in memory (no database_url): revocations are lost on restart");
            Arc::new(MemoryLog::new())
        }
    };
    let publisher: Arc<dyn Publisher> = match &config.redis_url {
        Some(url) => Arc::new(
            RedisPublisher::connect(
                url.expose(),
                config.stream_key.clone(),
                config.stream_max_len,
                config.redis_timeout,
            )
            .await
            .context("connecting to Redis")?,
        ),
        None => {
            tracing::warn!("fan-out: in process only (no redis_url): verifiers must use Watch");
            Arc::new(LocalPublisher::default())
        }
    };
    let directory = GrpcDirectory::connect_lazy(&config.identity_url, config.identity_timeout)?;
    let signer = KeyringSigner::from_file(
        &config.keyring_path,
        config.key_reload_interval,
        config.environment.is_production(),
    )
    .context("loading the key ring")?;
    let service = revocation_service(
        config.revocation.clone(),
        log,
        publisher,
        Arc::new(directory),
        Arc::new(signer),
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
