//! `citypass-loadtest serve …`: the servers the tool starts as its own child
//! processes ([`crate::child`]), each until its standard input closes (the tool holds
//! the other end, so a child never outlives it).
//!
//! - `serve stack`: the dev stack exactly as `citypass dev` runs it
//!   (`citypass_stack::Stack::start`, the services' own `build`, embedded stores) over
//!   a keys directory the tool prepared, the verifier on a given port;
//! - `serve bare-verify`: the bare verify server ([`crate::ceiling`]) with a given
//!   TLS identity and issuer key.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use citypass_runtime::config::KeyFile;
use citypass_runtime::{Tls, TlsConfig};
use citypass_stack::{KeySource, Stack, StackConfig};

use crate::ceiling::{BareVerifier, Ceiling};
use crate::error::LoadError;
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

/// Runs the dev stack over `keys_dir` (a ring and snapshot key in `citypass dev`'s
/// layout) with the verifier on `verifier_port`, until standard input closes.
pub async fn stack(keys_dir: &Path, verifier_port: u16) -> Result<(), LoadError> {
    let mut config = StackConfig::ephemeral(
        KeySource::File {
            path: keys_dir.join(RING_FILE),
            reload_interval: Duration::from_secs(3600),
        },
        KeyFile::new(keys_dir.join(SNAPSHOT_KEY_FILE), Duration::from_secs(3600)),
        keys_dir,
    );
    config.verifier_listen = SocketAddr::from(([127, 0, 0, 1], verifier_port));
    let stack = Stack::start(config).await?;
    until_stdin_closes().await;
    stack.shutdown().await;
    Ok(())
}

/// Serves the bare verify server on `listen` with the TLS files in `tls_dir`, checking
/// signatures against the Ed25519 `public_key`, until standard input closes.
pub async fn bare_verify(
    listen: SocketAddr,
    tls_dir: &Path,
    public_key: &[u8],
) -> Result<(), LoadError> {
    let tls = Tls::from_files(&TlsConfig::in_dir(tls_dir))?;
    let server = Ceiling::start_on(listen, BareVerifier::new(public_key), tls).await?;
    until_stdin_closes().await;
    drop(server);
    Ok(())
}
