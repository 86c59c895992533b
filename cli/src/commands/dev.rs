//! `citypass dev`: every service in one process on embedded stores, and a demo code.
//!
//! A newcomer's first contact with the running system: nothing to install, fixed
//! local ports printed, a dev key ring and a dev snapshot key created on first run
//! (and reloaded when `citypass keys rotate` or `snapshot-rotate` changes them, as in
//! production), and one citizen enrolled and shown a real code, so `citypass app` has
//! something to talk to straight away.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use citypass_app::{App, AppState};
use citypass_pki::Subject;
use citypass_proto::v1::DocumentType;
use citypass_runtime::Role;
use citypass_stack::{KeyFile, KeySource, Stack, StackConfig};
use citypass_token::{Qr, SecureRandom as _, SnapshotKey, SystemRandom};

use super::keys;

/// Fixed local ports, one per service, in the order of DESIGN.md's table.
pub const IDENTITY_PORT: u16 = 50051;
pub const ISSUER_PORT: u16 = 50052;
pub const VERIFIER_PORT: u16 = 50053;
pub const REVOCATION_PORT: u16 = 50054;
pub const PAYMENTS_PORT: u16 = 50055;
/// The operator credential `citypass dev` writes into its PKI directory.
pub const DEV_OPERATOR_CREDENTIAL: &str = "operator-dev.pem";
/// The face counter's credential `citypass dev` writes (role `face-counter`, named
/// after the sample hospital desk), for `citypass counter`.
pub const DEV_COUNTER_CREDENTIAL: &str = "counter-dev.pem";
/// The name in the dev counter's certificate: what identity's processing record shows.
pub const DEV_COUNTER_NAME: &str = "hospital-desk-1";

pub struct DevArgs {
    pub keys_dir: PathBuf,
    pub identity_port: u16,
    pub issuer_port: u16,
    pub revocation_port: u16,
    pub verifier_port: u16,
    pub payments_port: u16,
    pub demo: bool,
    /// Where to serve the metrics for Prometheus, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: DevArgs) -> anyhow::Result<()> {
    let mut server = citypass_runtime::ServerConfig::new("citypass-dev");
    server.log_filter = "warn".to_owned();
    server.metrics_listen = args.metrics_listen;
    let telemetry = citypass_runtime::telemetry::init(&server).context("starting telemetry")?;

    let (ring_path, snapshot_key_path) = ensure_dev_keys(&args.keys_dir)?;
    let mut config = StackConfig::ephemeral(
        KeySource::File {
            path: ring_path.clone(),
            reload_interval: Duration::from_secs(2),
        },
        KeyFile::new(snapshot_key_path.clone(), Duration::from_secs(2)),
        &args.keys_dir,
    );
    config.identity_listen = SocketAddr::from(([127, 0, 0, 1], args.identity_port));
    config.issuer_listen = SocketAddr::from(([127, 0, 0, 1], args.issuer_port));
    config.revocation_listen = SocketAddr::from(([127, 0, 0, 1], args.revocation_port));
    config.verifier_listen = SocketAddr::from(([127, 0, 0, 1], args.verifier_port));
    config.payments_listen = SocketAddr::from(([127, 0, 0, 1], args.payments_port));
    let mut stack = Stack::start(config)
        .await
        .context("starting the services")?;

    // An operator credential with every role, for `citypass admin` on this machine.
    let operator = stack.ca().issue(&Subject::operator(
        "dev",
        &Role::ALL,
        citypass_pki::OPERATOR_MAX_LIFE,
    ))?;
    let credential = stack.pki.dir.join(DEV_OPERATOR_CREDENTIAL);
    citypass_pki::write_file(&credential, &operator.bundle(), true)?;
    // The face counter of the sample hospital desk, for `citypass counter` (an
    // identity-admin does not enrol faces: face review finding F8).
    let counter = stack.ca().issue(&Subject::operator(
        DEV_COUNTER_NAME,
        &[Role::FaceCounter],
        citypass_pki::OPERATOR_MAX_LIFE,
    ))?;
    citypass_pki::write_file(
        &stack.pki.dir.join(DEV_COUNTER_CREDENTIAL),
        &counter.bundle(),
        true,
    )?;

    println!("citypass dev: every service in this process, embedded stores (lost on exit)\n");
    println!("  identity   https://{}", stack.identity);
    println!("  issuer     https://{}", stack.issuer);
    println!("  revocation https://{}", stack.revocation);
    println!("  verifier   https://{}", stack.verifier);
    println!(
        "  payments   https://{} (memory ledger, sandbox provider)",
        stack.payments
    );
    if let Some(addr) = args.metrics_listen {
        println!("  metrics    http://{addr}/metrics (Prometheus text, every service)");
    }
    println!(
        "  gates      {} (sample gates of every scene, reloaded on change; their dev certificates in {}/gate-<id>/)",
        stack.gates_file.display(),
        stack.pki.dir.display()
    );
    println!(
        "  keys       {} (dev ring, reloaded on change)",
        ring_path.display()
    );
    println!(
        "             {} (dev snapshot key, the revocation service's only key)",
        snapshot_key_path.display()
    );
    println!(
        "  TLS        dev CA {} (every hop is mutual TLS)",
        stack.pki.ca_file().display()
    );
    println!(
        "  operator   {} (all roles, 24 h; for citypass admin)",
        credential.display()
    );
    println!(
        "  counter    {} (face-counter {DEV_COUNTER_NAME}, 24 h; for citypass counter)\n",
        stack.pki.dir.join(DEV_COUNTER_CREDENTIAL).display()
    );

    if args.demo {
        demo_code(&stack).await.context("showing a demo code")?;
    }
    println!("Try, in another terminal:");
    println!("  citypass app enrol --name 'Li Lei' --id-number 11010519491231002X");
    println!("  citypass app bind && citypass app code --png code.png");
    println!("  citypass app certificate && citypass app offline-code");
    println!("  citypass keys rotate     (the issuer picks up the new key without a restart)");
    println!(
        "  citypass keys snapshot-rotate  (so does the revocation service, for its snapshot key)"
    );
    println!("  citypass admin revoke device <device id> --reason device-lost\n");
    println!("Ctrl-C stops everything.");

    tokio::select! {
        () = citypass_runtime::shutdown::signal() => println!("\nstopping: draining in-flight calls"),
        failure = stack.wait_any() => {
            let failure = failure.unwrap_or_else(|| "no service left".to_owned());
            stack.shutdown().await;
            telemetry.shutdown().await;
            anyhow::bail!("a service stopped: {failure}");
        }
    }
    stack.shutdown().await;
    telemetry.shutdown().await;
    Ok(())
}

/// The dev key ring's and snapshot key's paths, generating both on first run. A ring
/// from before snapshot keys had their own usage gets a snapshot key, published in it.
fn ensure_dev_keys(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let ring_path = dir.join(keys::RING);
    let snapshot_key_path = dir.join(keys::SNAPSHOT_KEY);
    if !ring_path.exists() {
        keys::generate(dir, "cp", true)?;
        println!(
            "generated a dev key ring and snapshot key in {}",
            dir.display()
        );
        return Ok((ring_path, snapshot_key_path));
    }
    let mut ring = keys::load(dir)?;
    let snapshot_key = match keys::load_snapshot_key(dir, keys::SNAPSHOT_KEY)? {
        Some(key) => key,
        None => {
            let key = SnapshotKey::generate(ring.dev, &SystemRandom::new())?;
            keys::write_atomic(&snapshot_key_path, key.to_json().as_bytes(), true)?;
            println!("generated a dev snapshot key in {}", dir.display());
            key
        }
    };
    if !ring.publishes_snapshot_key(snapshot_key.kid()) {
        ring.publish_snapshot_key(snapshot_key.public_key())?;
        keys::save(dir, &ring)?;
        println!(
            "published snapshot key {} in {}",
            snapshot_key.kid(),
            ring_path.display()
        );
    }
    Ok((ring_path, snapshot_key_path))
}

/// Enrols a demo citizen through the real API and prints a code for them.
async fn demo_code(stack: &Stack) -> anyhow::Result<()> {
    let mut app = App::new(&stack.endpoints(), AppState::default())?;
    let subject = app
        .enrol(
            DocumentType::ResidentIdCard,
            &demo_id_number()?,
            "Demo Citizen",
        )
        .await?;
    app.bind("demo phone").await?;
    let code = app.code(false).await?;
    let qr = Qr::encode(&code.qr_text)?;
    println!(
        "A demo citizen ({}) was enrolled and bound a device; their code (QR version {}):\n",
        subject.masked_name,
        qr.version()
    );
    println!("{}", qr.to_terminal());
    Ok(())
}

/// A random, well-formed resident ID number (GB 11643) for the demo citizen.
fn demo_id_number() -> anyhow::Result<String> {
    let mut seq = [0u8; 2];
    SystemRandom::new()
        .fill(&mut seq)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(citypass_stack::sample_resident_id(u16::from_le_bytes(seq)))
}
