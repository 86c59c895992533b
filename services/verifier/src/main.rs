//! `citypass-verifier`: configuration → telemetry → [`build`] → serve. Nothing else
//! happens here.
//!
//! Configuration: the YAML file named by `CITYPASS_CONFIG` (optional, see
//! `config.example.yaml`), then `CITYPASS_…` variables (see
//! `citypass_verifier::Config`), e.g. `CITYPASS_ENVIRONMENT=dev citypass-verifier`.
//!
//! [`build`]: citypass_verifier::build

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: citypass_verifier::Config = citypass_runtime::config::load_env("CITYPASS")?;
    let telemetry = citypass_runtime::telemetry::init(&config.server)?;
    let served = async {
        let built = citypass_verifier::build(config).await?;
        built.server.run().await?;
        anyhow::Ok(())
    }
    .await;
    telemetry.shutdown().await;
    served
}
