//! `citypass-identity`: the identity service as its own process.
//!
//! Configuration: the YAML file named by `CITYPASS_CONFIG` (optional), then
//! `CITYPASS_…` variables (see `citypass_identity::config`). With `database_url` set the
//! service uses PostgreSQL (migrating it at start-up), otherwise the in-memory store.

use anyhow::Context as _;
use citypass_identity::{IdentityConfig, MemoryStore, PostgresStore, Store};

const ENV_PREFIX: &str = "CITYPASS";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = citypass_runtime::config::config_path_from_env(ENV_PREFIX);
    let config: IdentityConfig = citypass_runtime::config::load(path.as_deref(), ENV_PREFIX)?;
    config.validate()?;
    let telemetry = citypass_runtime::telemetry::init(&config.server)?;

    let result = match &config.database_url {
        Some(url) => {
            let store = PostgresStore::connect(url.expose(), config.database_max_connections)
                .await
                .context("cannot open the PostgreSQL store")?;
            tracing::info!("store: PostgreSQL");
            run(&config, store).await
        }
        None => {
            tracing::warn!("store: in memory (no database_url): data is lost on restart");
            run(&config, MemoryStore::new()).await
        }
    };
    telemetry.shutdown().await;
    result
}

async fn run<S: Store>(config: &IdentityConfig, store: S) -> anyhow::Result<()> {
    citypass_runtime::Server::new(config.server.clone())
        .add_service(citypass_identity::service(config, store)?)
        .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET)
        .run()
        .await?;
    Ok(())
}
