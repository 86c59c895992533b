//! `citypass-payments`: configuration → telemetry → [`build`] → serve. Nothing else
//! happens here.
//!
//! Configuration: the YAML file named by `CITYPASS_CONFIG` (optional, see
//! `config.example.yaml`), then `CITYPASS_…` variables, e.g.
//! `CITYPASS_ENVIRONMENT=dev citypass-payments` for the memory store and the built-in
//! fare table.
//!
//! [`build`]: citypass_payments::build

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: citypass_payments::Config = citypass_runtime::config::load_env("CITYPASS")?;
    let telemetry = citypass_runtime::telemetry::init(&config.server)?;
    let served = async {
        let built = citypass_payments::build(config).await?;
        built.server.run().await?;
        anyhow::Ok(())
    }
    .await;
    telemetry.shutdown().await;
    served
}
