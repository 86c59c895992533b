//! `citypass-identity`: configuration → telemetry → [`build`] → serve. Nothing else
//! happens here.
//!
//! Configuration: the YAML file named by `CITYPASS_CONFIG` (optional, see
//! `config.example.yaml`), then `CITYPASS_…` variables (see `citypass_identity::config`).
//! With `database` set the service uses PostgreSQL (migrating it at start-up),
//! otherwise the in-memory store (dev only).
//!
//! [`build`]: citypass_identity::build

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: citypass_identity::IdentityConfig = citypass_runtime::config::load_env("CITYPASS")?;
    let telemetry = citypass_runtime::telemetry::init(&config.server)?;
    let served = async {
        let built = citypass_identity::build(config).await?;
        built.server.run().await?;
        anyhow::Ok(())
    }
    .await;
    telemetry.shutdown().await;
    served
}
