//! `telemetry::init` installs the process-wide subscriber, so it gets a test binary (a
//! process) of its own.

use citypass_runtime::{ServerConfig, TelemetryError, telemetry};

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn init_installs_once_and_shuts_down() {
    let mut config = ServerConfig::new("init-test");
    config.log_filter = "not a [valid filter".to_owned();
    assert!(matches!(
        telemetry::init(&config),
        Err(TelemetryError::Filter { .. })
    ));

    config.log_filter = "info,citypass_runtime=debug".to_owned();
    let guard = telemetry::init(&config).expect("first init");
    assert!(matches!(
        telemetry::init(&config),
        Err(TelemetryError::AlreadyInstalled(_))
    ));
    guard.shutdown().await;
}
