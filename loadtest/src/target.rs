//! The verifier under load, and what playing its gates takes: their certificates and
//! scenes, the issuer's key ring (to sign codes it accepts), and the verifier's own
//! server certificate (for the bare server, so both serve the same TLS).
//!
//! By default the tool starts the dev stack in this process, exactly as `citypass
//! dev` does (`citypass_stack::Stack::start`, the services' own `build`), on
//! ephemeral loopback ports with embedded stores and a fresh dev key ring; `--target
//! URL --keys-dir DIR` points it at a running `citypass dev` instead, whose key ring,
//! gate registry and dev PKI are in `DIR`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use citypass_runtime::config::KeyFile;
use citypass_runtime::{Tls, TlsConfig};
use citypass_stack::{KeySource, SAMPLE_GATE_IDS, Stack, StackConfig};
use citypass_token::{Issuer, Keyring, Scene, SnapshotKey, SystemRandom};
use citypass_verifier::Registry;

use crate::error::LoadError;

/// Where the verifier is.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// Start the dev stack in this process.
    InProcess,
    /// A running `citypass dev`: the verifier's URL and its keys directory.
    Running { url: String, keys_dir: PathBuf },
}

/// A gate the generator plays.
#[derive(Clone)]
pub struct GateIdentity {
    /// The gate's id (the name in its certificate).
    pub id: String,
    /// Its configured scene.
    pub scene: Scene,
    /// Its client certificate and the CA.
    pub tls: Arc<Tls>,
}

/// A verifier ready to be loaded.
pub struct Target {
    /// The verifier's URL.
    pub url: String,
    /// The gates to play, each with a certificate.
    pub gates: Vec<GateIdentity>,
    /// Signs codes the verifier accepts.
    pub issuer: Issuer,
    /// The verifier's server identity, for the bare server.
    pub server_tls: Arc<Tls>,
    stack: Option<Stack>,
    _dir: Option<tempfile::TempDir>,
}

fn file_error(path: &Path, problem: impl std::fmt::Display) -> LoadError {
    LoadError::File {
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|e| file_error(path, e))
}

/// The registry's sample gates, with their scenes, that `tls` gives a certificate;
/// not the hospital desk nor the service hall counter, whose policies need the code's
/// holder from identity (a placeholder in the stack until unsealing lands: they refuse
/// every code `SERVICE_UNAVAILABLE`), nor does the load's code ask for the government
/// scene.
fn sample_gates(
    gates_file: &Path,
    tls: impl Fn(&str) -> Result<Arc<Tls>, LoadError>,
) -> Result<Vec<GateIdentity>, LoadError> {
    let registry = Registry::parse(&read(gates_file)?).map_err(|e| file_error(gates_file, e))?;
    let mut gates = Vec::new();
    let mut problems = Vec::new();
    for id in SAMPLE_GATE_IDS {
        let Some(gate) = registry.get(id) else {
            problems.push(format!("{id} is not in {}", gates_file.display()));
            continue;
        };
        if matches!(gate.scene, Scene::Hospital | Scene::Government) {
            continue;
        }
        match tls(id) {
            Ok(tls) => gates.push(GateIdentity {
                id: id.to_owned(),
                scene: gate.scene,
                tls,
            }),
            Err(e) => problems.push(format!("{id}: {e}")),
        }
    }
    if gates.is_empty() {
        return Err(LoadError::NoGates(problems.join("; ")));
    }
    Ok(gates)
}

impl Target {
    /// Starts the stack in process, or reads a running one's files.
    pub async fn start(spec: &TargetSpec) -> Result<Target, LoadError> {
        match spec {
            TargetSpec::InProcess => Target::start_in_process().await,
            TargetSpec::Running { url, keys_dir } => Target::from_running(url, keys_dir),
        }
    }

    async fn start_in_process() -> Result<Target, LoadError> {
        let dir = tempfile::tempdir().map_err(|e| file_error(Path::new("(temp dir)"), e))?;
        let rng = SystemRandom::new();
        let mut ring = Keyring::generate("citypass-loadtest", true, &rng)?;
        let snapshot_key = SnapshotKey::generate(true, &rng)?;
        ring.publish_snapshot_key(snapshot_key.public_key())?;
        let issuer = ring.issuer()?;
        let snapshot_path = dir.path().join("snapshot-key.json");
        std::fs::write(&snapshot_path, snapshot_key.to_json())
            .map_err(|e| file_error(&snapshot_path, e))?;
        let config = StackConfig::ephemeral(
            KeySource::Memory(ring),
            KeyFile::new(&snapshot_path, Duration::from_secs(3600)),
            dir.path(),
        );
        let stack = Stack::start(config).await?;
        let gates = sample_gates(&stack.gates_file, |id| Ok(stack.gate_tls(id)?))?;
        let server_files = stack
            .pki
            .service(stack.ca(), "verifier")
            .map_err(|e| LoadError::Stack(citypass_stack::StackError::Pki(e)))?;
        Ok(Target {
            url: stack.verifier_url(),
            gates,
            issuer,
            server_tls: Tls::from_files(&server_files)?,
            stack: Some(stack),
            _dir: Some(dir),
        })
    }

    fn from_running(url: &str, keys_dir: &Path) -> Result<Target, LoadError> {
        let ring_path = keys_dir.join("keyring.json");
        let ring = Keyring::from_json(&read(&ring_path)?).map_err(|e| file_error(&ring_path, e))?;
        let pki = keys_dir.join("pki");
        let gates = sample_gates(&keys_dir.join("verifier").join("gates.yaml"), |id| {
            let files = TlsConfig::in_dir(&pki.join(format!("gate-{id}")));
            Ok(Tls::from_files(&files)?)
        })?;
        Ok(Target {
            url: url.to_owned(),
            gates,
            issuer: ring.issuer()?,
            server_tls: Tls::from_files(&TlsConfig::in_dir(&pki.join("service-verifier")))?,
            stack: None,
            _dir: None,
        })
    }

    /// Whether the verifier runs in this process (and so shares its cores with the
    /// generator).
    pub fn in_process(&self) -> bool {
        self.stack.is_some()
    }

    /// Stops the in-process stack, if any.
    pub async fn stop(self) {
        if let Some(stack) = self.stack {
            stack.shutdown().await;
        }
    }
}
