//! `citypass-loadtest serve …`: the servers the tool starts as its own child
//! processes ([`crate::child`]), each until its standard input closes (the tool holds
//! the other end, so a child never outlives it).
//!
//! - `serve stack`: the dev stack exactly as `citypass dev` runs it
//!   (`citypass_stack::Stack::start`, the services' own `build`, embedded stores) over
//!   a keys directory the tool prepared, the verifier on a given port;
//! - `serve bare-verify`: the bare verify server ([`crate::ceiling`]) with a given
//!   TLS identity and issuer key;
//! - `serve bare-taps`: the floor's trivial taps server ([`crate::floor`]); the floor
//!   itself is `serve bare-verify --tap-url`;
//! - `serve bare-sign`: the bare sign server ([`crate::bare_sign`]) with the issuer's
//!   TLS identity, the key ring and the run's device keys; with a Redis URL, the sign
//!   floor.

use std::collections::HashMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use citypass_runtime::config::KeyFile;
use citypass_runtime::{Tls, TlsConfig};
use citypass_stack::{KeySource, Stack, StackConfig};
use citypass_token::{Keyring, PublicKey};

use crate::bare_sign::BareSigner;
use crate::ceiling::{BareVerifier, Ceiling};
use crate::error::LoadError;
use crate::floor::{FloorScripts, FloorTap};
use crate::target::{RING_FILE, SNAPSHOT_KEY_FILE};

/// Waits until standard input reaches its end (or fails).
async fn until_stdin_closes() {
    let waited = tokio::task::spawn_blocking(|| {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    })
    .await;
    drop(waited);
}

/// The ports of a stack the tool starts: the verifier's, the identity service's, the
/// issuer's, the payments service's and the revocation service's.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub verifier: u16,
    pub identity: u16,
    pub issuer: u16,
    pub payments: u16,
    pub revocation: u16,
}

/// Runs the dev stack over `keys_dir` (a ring and snapshot key in `citypass dev`'s
/// layout) on `ports`, until standard input closes.
pub async fn stack(keys_dir: &Path, ports: Ports) -> Result<(), LoadError> {
    let mut config = StackConfig::ephemeral(
        KeySource::File {
            path: keys_dir.join(RING_FILE),
            reload_interval: Duration::from_secs(3600),
        },
        KeyFile::new(keys_dir.join(SNAPSHOT_KEY_FILE), Duration::from_secs(3600)),
        keys_dir,
    );
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    config.verifier_listen = local(ports.verifier);
    config.identity_listen = local(ports.identity);
    config.issuer_listen = local(ports.issuer);
    config.payments_listen = local(ports.payments);
    config.revocation_listen = local(ports.revocation);
    let stack = Stack::start(config).await?;
    until_stdin_closes().await;
    stack.shutdown().await;
    Ok(())
}

/// Serves the bare verify server on `listen` with the TLS files in `tls_dir`, checking
/// signatures against the Ed25519 `public_key`, until standard input closes. With
/// `tap_url`, it is the floor: one TapIn there per verified code, with the same TLS
/// identity as a client; with `scripts`, the floor's shared-store steps too (a Redis
/// URL and how many one-key scripts per verified code).
pub async fn bare_verify(
    listen: SocketAddr,
    tls_dir: &Path,
    public_key: &[u8],
    tap_url: Option<&str>,
    scripts: Option<(&str, u8)>,
) -> Result<(), LoadError> {
    let tls = Tls::from_files(&TlsConfig::in_dir(tls_dir))?;
    let mut verifier = BareVerifier::new(public_key);
    if let Some(url) = tap_url {
        verifier = verifier.with_tap(FloorTap::new(url, &tls)?);
    }
    if let Some((url, count)) = scripts {
        verifier = verifier.with_scripts(FloorScripts::connect(url, count).await?);
    }
    let server = Ceiling::start_on(listen, verifier, tls).await?;
    until_stdin_closes().await;
    drop(server);
    Ok(())
}

/// Serves the trivial taps server ([`crate::floor`]) on `listen` with the TLS files in
/// `tls_dir`, until standard input closes.
pub async fn bare_taps(listen: SocketAddr, tls_dir: &Path) -> Result<(), LoadError> {
    let tls = Tls::from_files(&TlsConfig::in_dir(tls_dir))?;
    let server = Ceiling::start_taps(listen, tls).await?;
    until_stdin_closes().await;
    drop(server);
    Ok(())
}

/// Serves the bare sign server on `listen` with the TLS files in `tls_dir`, signing
/// with the key ring of `keys_dir` and knowing the devices of `devices_file` (lines of
/// `<device id> <P-256 public key, hex>`), until standard input closes. With
/// `nonces` (a Redis URL), the sign floor: each verified proof's nonce marked used
/// there first.
pub async fn bare_sign(
    listen: SocketAddr,
    tls_dir: &Path,
    keys_dir: &Path,
    devices_file: &Path,
    nonces: Option<&str>,
) -> Result<(), LoadError> {
    let tls = Tls::from_files(&TlsConfig::in_dir(tls_dir))?;
    let file_error = |path: &Path, problem: String| LoadError::File {
        path: path.to_owned(),
        problem,
    };
    let ring_path = keys_dir.join(RING_FILE);
    let ring_text =
        std::fs::read_to_string(&ring_path).map_err(|e| file_error(&ring_path, e.to_string()))?;
    let ring = Keyring::from_json(&ring_text).map_err(|e| file_error(&ring_path, e.to_string()))?;
    let text = std::fs::read_to_string(devices_file)
        .map_err(|e| file_error(devices_file, e.to_string()))?;
    let mut devices = HashMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || {
            file_error(
                devices_file,
                format!("line {}: expected `<device id> <key hex>`", n + 1),
            )
        };
        let (id, key) = line.split_once(' ').ok_or_else(bad)?;
        let key = hex::decode(key.trim()).map_err(|_| bad())?;
        devices.insert(id.to_owned(), PublicKey::p256(&key).map_err(|_| bad())?);
    }
    let mut signer = BareSigner::new(Arc::new(ring.issuer()?), devices);
    if let Some(url) = nonces {
        signer = signer.with_nonces(FloorScripts::connect(url, 0).await?);
    }
    let server = Ceiling::start_signer(listen, signer, tls).await?;
    until_stdin_closes().await;
    drop(server);
    Ok(())
}
