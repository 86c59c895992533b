//! The verifier under load, and what playing its gates takes: their certificates and
//! scenes, the issuer's key ring (to sign codes it accepts), the identity and payments
//! services the riders enrol and link at, and the verifier's own server certificate
//! (for the bare server, so both serve the same TLS).
//!
//! By default the tool starts the dev stack in this process, exactly as `citypass
//! dev` does (`citypass_stack::Stack::start`, the services' own `build`), on
//! ephemeral loopback ports with embedded stores and a fresh dev key ring; `--target
//! URL --keys-dir DIR` points it at a running `citypass dev` instead, whose key ring,
//! gate registry and dev PKI are in `DIR`, and whose identity and payments services are
//! at `--identity` and `--payments` (`citypass dev`'s fixed ports by default), its
//! revocation service at `--revocation` (the propagation measurement revokes there as
//! an operator certified by the dev CA in `DIR`); `--spawn`
//! starts the stack as a child process (this tool's own `serve stack`, or `citypass dev`
//! with `--citypass PATH`) on a fresh keys directory, so that its CPU time and memory
//! are its own; `--services DIR` starts the five services as separate processes, each
//! its own binary from `DIR`, on PostgreSQL and Redis ([`crate::services`]), so that
//! every service's CPU time, memory and time to ready are its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use citypass_app::Endpoints;
use citypass_pki::{DevPki, OPERATOR_LIFE, Subject};
use citypass_runtime::config::KeyFile;
use citypass_runtime::{Role, Tls, TlsConfig};
use citypass_stack::{KeySource, SAMPLE_GATE_IDS, Stack, StackConfig};
use citypass_token::{Issuer, Keyring, Scene, SnapshotKey, SystemRandom};
use citypass_verifier::Registry;

use crate::child::{self, ChildServer};
use crate::error::LoadError;
use crate::process::Pid;
use crate::propagation::RevocationAccess;
use crate::services::{Services, ServicesSpec};

/// The key ring's file in a keys directory (as `citypass dev` names it).
pub const RING_FILE: &str = "keyring.json";
/// The snapshot key's file in a keys directory.
pub const SNAPSHOT_KEY_FILE: &str = "snapshot-key.json";
/// The verifier's TLS files under the dev PKI.
const VERIFIER_TLS_DIR: &str = "service-verifier";
/// The issuer's.
const ISSUER_TLS_DIR: &str = "service-issuer";
/// `citypass dev`'s identity service (its fixed port).
pub const DEV_IDENTITY: &str = "https://127.0.0.1:50051";
/// `citypass dev`'s issuer.
pub const DEV_ISSUER: &str = "https://127.0.0.1:50052";
/// `citypass dev`'s payments service.
pub const DEV_PAYMENTS: &str = "https://127.0.0.1:50055";
/// `citypass dev`'s revocation service.
pub const DEV_REVOCATION: &str = "https://127.0.0.1:50054";
/// The name in the certificate of the operator the tool revokes as.
const OPERATOR: &str = "citypass-loadtest";
/// How figures read from the tool's own process are labelled.
pub const OWN_PROCESS: &str = "this process (generator and servers)";

/// Where the verifier is.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// Start the dev stack in this process.
    InProcess,
    /// A running `citypass dev`: the verifier's URL, its keys directory, and the
    /// identity and payments services' URLs (where the riders enrol and link).
    Running {
        url: String,
        keys_dir: PathBuf,
        identity: String,
        payments: String,
        revocation: String,
    },
    /// Start the stack as a child process and load it.
    Spawn(Spawn),
    /// Start the five services as separate processes on PostgreSQL and Redis; the
    /// bare servers are children too (`loadtest` is this tool's binary).
    Services {
        spec: ServicesSpec,
        loadtest: PathBuf,
    },
}

impl TargetSpec {
    /// This tool's binary, when the servers run as child processes (the bare servers
    /// then do too).
    pub fn loadtest(&self) -> Option<&Path> {
        match self {
            TargetSpec::Spawn(spawn) => Some(&spawn.loadtest),
            TargetSpec::Services { loadtest, .. } => Some(loadtest),
            _ => None,
        }
    }
}

/// How to start the stack (and the bare servers) as child processes.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// This tool's binary, for its `serve` commands (the bare servers, and the stack
    /// unless `citypass` is given).
    pub loadtest: PathBuf,
    /// The `citypass` binary, to run `citypass dev` as the stack instead.
    pub citypass: Option<PathBuf>,
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

/// What citizens' apps talk to, and what the bare sign server needs.
pub struct Apps {
    /// The identity and issuer URLs, and TLS with the dev CA (no client certificate).
    pub endpoints: Endpoints,
    /// The issuer's server identity, for the bare sign server.
    pub server_tls: Arc<Tls>,
    /// The directory of its files.
    pub server_tls_dir: PathBuf,
    /// The keys directory (the key ring's file when the stack is a child).
    pub keys_dir: PathBuf,
}

impl Apps {
    fn in_pki(endpoints: Endpoints, pki: &Path, keys_dir: &Path) -> Result<Apps, LoadError> {
        let server_tls_dir = pki.join(ISSUER_TLS_DIR);
        Ok(Apps {
            endpoints,
            server_tls: Tls::from_files(&TlsConfig::in_dir(&server_tls_dir))?,
            server_tls_dir,
            keys_dir: keys_dir.to_owned(),
        })
    }
}

/// A verifier ready to be loaded.
pub struct Target {
    /// The verifier's URL.
    pub url: String,
    /// The gates to play, each with a certificate.
    pub gates: Vec<GateIdentity>,
    /// Signs codes the verifier accepts.
    pub issuer: Arc<Issuer>,
    /// The citizens' side (identity, issuer), when the tool started the stack.
    pub apps: Option<Apps>,
    /// Where the riders enrol (identity) and link their payment accounts (payments),
    /// with TLS that trusts the stack's CA.
    pub riders: Endpoints,
    /// The verifier's server identity, for the bare server.
    pub server_tls: Arc<Tls>,
    /// The directory of its files (`tls.crt`, `tls.key`, `ca.crt`), for a bare server
    /// started as a child process.
    pub server_tls_dir: PathBuf,
    /// The revocation service and an operator who may revoke, for the propagation
    /// measurement.
    pub revocation: Option<RevocationAccess>,
    stack: Option<Stack>,
    child: Option<ChildServer>,
    services: Option<Services>,
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

/// An operator with the `revoker` role, certified by the dev CA of the PKI directory
/// `pki` (the stack's own, which holds the CA's key), at the revocation service `url`.
fn revoker_in(pki: &Path, url: String) -> Result<RevocationAccess, LoadError> {
    let pki_error = |e| LoadError::Stack(citypass_stack::StackError::Pki(e));
    let (_, ca) = DevPki::ensure(pki).map_err(pki_error)?;
    let issued = ca
        .issue(&Subject::operator(
            OPERATOR,
            &[Role::Revoker],
            OPERATOR_LIFE,
        ))
        .map_err(pki_error)?;
    let operator = Tls::from_pem(
        ca.cert_pem().as_bytes(),
        Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
    )?;
    Ok(RevocationAccess { url, operator })
}

/// The registry's sample gates that `tls` gives a certificate, with their scenes: the
/// bus readers only. A bus boarding is a flat fare priced at once (payments' TapIn),
/// so a linked rider is allowed again and again (within `double_tap`, 60 s, of a
/// priced ride on the same route the tap is recorded as a repeat, not charged again).
/// A metro entry gate would refuse a rider's second entry while the first trip is open
/// (TRIP_ALREADY_OPEN), and the requests' gates are the sending loops' round-robin,
/// which the codes cannot follow; the hospital desk, the service hall counter and the
/// scenic gate have their own policies (one entry a day per person at the park).
///
/// With `only`, that one gate of the registry instead, whatever its scene: a scenic
/// gate, say, whose policy makes no outbound call (`--gate`).
fn sample_gates(
    gates_file: &Path,
    only: Option<&str>,
    tls: impl Fn(&str) -> Result<Arc<Tls>, LoadError>,
) -> Result<Vec<GateIdentity>, LoadError> {
    sample_gates_in(&read(gates_file)?, only, tls).map_err(|e| match e {
        LoadError::Settings(problem) => file_error(gates_file, problem),
        LoadError::NoGates(problems) => {
            LoadError::NoGates(format!("{}: {problems}", gates_file.display()))
        }
        other => other,
    })
}

/// [`sample_gates`] of the registry text `registry`.
fn sample_gates_in(
    registry: &str,
    only: Option<&str>,
    tls: impl Fn(&str) -> Result<Arc<Tls>, LoadError>,
) -> Result<Vec<GateIdentity>, LoadError> {
    let registry = Registry::parse(registry).map_err(|e| LoadError::Settings(e.to_string()))?;
    let mut gates = Vec::new();
    let mut problems = Vec::new();
    let ids: Vec<&str> = match only {
        Some(id) => vec![id],
        None => SAMPLE_GATE_IDS.to_vec(),
    };
    for id in ids {
        let Some(gate) = registry.get(id) else {
            problems.push(format!("{id} is not in the registry"));
            continue;
        };
        if only.is_none() && gate.scene != Scene::Bus {
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
        problems.push(
            "the load plays the sample bus readers, and the registry lists none with a certificate"
                .to_owned(),
        );
        return Err(LoadError::NoGates(problems.join("; ")));
    }
    Ok(gates)
}

impl Target {
    /// Starts the stack in process, or reads a running one's files.
    /// With `gate`, that gate of the registry is played instead of the bus readers.
    pub async fn start(spec: &TargetSpec, gate: Option<&str>) -> Result<Target, LoadError> {
        match spec {
            TargetSpec::InProcess => Target::start_in_process(gate).await,
            TargetSpec::Running {
                url,
                keys_dir,
                identity,
                payments,
                revocation,
            } => {
                let mut target = Target::from_running(url, keys_dir, gate)?;
                target.riders.identity = identity.clone();
                target.riders.payments = payments.clone();
                target.revocation = Some(revoker_in(&keys_dir.join("pki"), revocation.clone())?);
                Ok(target)
            }
            TargetSpec::Spawn(spawn) => Target::spawn(spawn, gate).await,
            TargetSpec::Services { spec, .. } => Target::start_services(spec, gate).await,
        }
    }

    /// The five services as separate processes ([`crate::services`]).
    async fn start_services(spec: &ServicesSpec, gate: Option<&str>) -> Result<Target, LoadError> {
        let services = Services::start(spec).await?;
        let pki = services.pki_dir().to_owned();
        let ca = services.launcher.ca();
        let devpki = services.launcher.pki();
        let pki_error = |e| LoadError::Stack(citypass_stack::StackError::Pki(e));
        let gates = sample_gates_in(citypass_stack::SAMPLE_GATES, gate, |id| {
            Ok(Tls::from_files(&devpki.gate(ca, id).map_err(pki_error)?)?)
        })?;
        let server_files = devpki.service(ca, "verifier").map_err(pki_error)?;
        devpki.service(ca, "issuer").map_err(pki_error)?;
        // The key ring's file, for the bare sign server.
        let keys_dir = services.launcher.root().join("keys");
        std::fs::create_dir_all(&keys_dir).map_err(|e| file_error(&keys_dir, e))?;
        let ring_path = keys_dir.join(RING_FILE);
        std::fs::write(&ring_path, services.secrets.ring.to_json())
            .map_err(|e| file_error(&ring_path, e))?;
        let endpoints = Endpoints {
            identity: services.url("identity"),
            issuer: services.url("issuer"),
            payments: services.url("payments"),
            tls: Some(Tls::from_pem(ca.cert_pem().as_bytes(), None)?),
        };
        let apps = Apps::in_pki(endpoints.clone(), &pki, &keys_dir)?;
        let revocation = revoker_in(&pki, services.url("revocation"))?;
        Ok(Target {
            url: services.url("verifier"),
            gates,
            issuer: Arc::new(services.secrets.ring.issuer()?),
            apps: Some(apps),
            riders: endpoints,
            server_tls: Tls::from_files(&server_files)?,
            server_tls_dir: pki.join(VERIFIER_TLS_DIR),
            revocation: Some(revocation),
            stack: None,
            child: None,
            services: Some(services),
            _dir: None,
        })
    }

    /// A fresh keys directory with a dev key ring and snapshot key in the layout of
    /// `citypass dev` (which keeps a ring it finds there).
    fn fresh_keys_dir() -> Result<tempfile::TempDir, LoadError> {
        let dir = tempfile::tempdir().map_err(|e| file_error(Path::new("(temp dir)"), e))?;
        let rng = SystemRandom::new();
        let mut ring = Keyring::generate("cp", true, &rng)?;
        let snapshot_key = SnapshotKey::generate(true, &rng)?;
        ring.publish_snapshot_key(snapshot_key.public_key())?;
        for (name, text) in [
            (RING_FILE, ring.to_json()),
            (SNAPSHOT_KEY_FILE, snapshot_key.to_json()),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).map_err(|e| file_error(&path, e))?;
        }
        Ok(dir)
    }

    async fn spawn(spawn: &Spawn, gate: Option<&str>) -> Result<Target, LoadError> {
        let dir = Target::fresh_keys_dir()?;
        let port = child::free_port()?;
        let (identity_port, issuer_port) = (child::free_port()?, child::free_port()?);
        let (payments_port, revocation_port) = (child::free_port()?, child::free_port()?);
        let url = format!("https://127.0.0.1:{port}");
        let keys = dir.path().display().to_string();
        let ports = [
            ("--verifier-port", port),
            ("--identity-port", identity_port),
            ("--issuer-port", issuer_port),
            ("--payments-port", payments_port),
            ("--revocation-port", revocation_port),
        ];
        let (name, program, mut args) = match &spawn.citypass {
            Some(citypass) => {
                let mut args = vec!["dev".to_owned(), "--no-demo".to_owned()];
                args.extend(["--keys-dir".to_owned(), keys]);
                ("citypass dev", citypass.clone(), args)
            }
            None => {
                let args = vec![
                    "serve".to_owned(),
                    "stack".to_owned(),
                    "--keys-dir".to_owned(),
                    keys,
                ];
                ("the dev stack", spawn.loadtest.clone(), args)
            }
        };
        for (flag, port) in ports {
            args.extend([flag.to_owned(), port.to_string()]);
        }
        let keys_dir = dir.path().to_owned();
        let gate = gate.map(str::to_owned);
        let (server, mut target) = ChildServer::spawn(name, &program, &args, || {
            let (url, keys_dir, gate) = (url.clone(), keys_dir.clone(), gate.clone());
            async move {
                // The child writes the registry and the certificates as it starts.
                let target = Target::from_running(&url, &keys_dir, gate.as_deref())
                    .map_err(|e| e.to_string())?;
                let gate = target.gates.first().ok_or("no gate")?;
                child::healthy(&url, &gate.tls).await?;
                Ok(target)
            }
        })
        .await?;
        let pki = dir.path().join("pki");
        let ca_file = pki.join("ca.crt");
        let endpoints = Endpoints {
            identity: format!("https://127.0.0.1:{identity_port}"),
            issuer: format!("https://127.0.0.1:{issuer_port}"),
            payments: format!("https://127.0.0.1:{payments_port}"),
            tls: Some(Tls::from_pem(read(&ca_file)?.as_bytes(), None)?),
        };
        target.riders = endpoints.clone();
        target.apps = Some(Apps::in_pki(endpoints, &pki, dir.path())?);
        target.revocation = Some(revoker_in(
            &pki,
            format!("https://127.0.0.1:{revocation_port}"),
        )?);
        target.child = Some(server);
        target._dir = Some(dir);
        Ok(target)
    }

    async fn start_in_process(gate: Option<&str>) -> Result<Target, LoadError> {
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
        let gates = sample_gates(&stack.gates_file, gate, |id| Ok(stack.gate_tls(id)?))?;
        let server_files = stack
            .pki
            .service(stack.ca(), "verifier")
            .map_err(|e| LoadError::Stack(citypass_stack::StackError::Pki(e)))?;
        let apps = Apps::in_pki(stack.endpoints(), &stack.pki.dir, dir.path())?;
        let revocation = RevocationAccess {
            url: stack.revocation_url(),
            operator: stack.operator_tls(OPERATOR, &[Role::Revoker])?,
        };
        Ok(Target {
            url: stack.verifier_url(),
            gates,
            issuer: Arc::new(issuer),
            riders: stack.endpoints(),
            apps: Some(apps),
            server_tls: Tls::from_files(&server_files)?,
            server_tls_dir: stack.pki.dir.join(VERIFIER_TLS_DIR),
            revocation: Some(revocation),
            stack: Some(stack),
            child: None,
            services: None,
            _dir: Some(dir),
        })
    }

    fn from_running(url: &str, keys_dir: &Path, gate: Option<&str>) -> Result<Target, LoadError> {
        let ring_path = keys_dir.join(RING_FILE);
        let ring = Keyring::from_json(&read(&ring_path)?).map_err(|e| file_error(&ring_path, e))?;
        let pki = keys_dir.join("pki");
        let gates = sample_gates(&keys_dir.join("verifier").join("gates.yaml"), gate, |id| {
            let files = TlsConfig::in_dir(&pki.join(format!("gate-{id}")));
            Ok(Tls::from_files(&files)?)
        })?;
        let ca_file = pki.join("ca.crt");
        Ok(Target {
            url: url.to_owned(),
            gates,
            issuer: Arc::new(ring.issuer()?),
            riders: Endpoints {
                identity: DEV_IDENTITY.to_owned(),
                // Never called: the riders only enrol, bind and link.
                issuer: DEV_ISSUER.to_owned(),
                payments: DEV_PAYMENTS.to_owned(),
                tls: Some(Tls::from_pem(read(&ca_file)?.as_bytes(), None)?),
            },
            apps: None,
            server_tls: Tls::from_files(&TlsConfig::in_dir(&pki.join(VERIFIER_TLS_DIR)))?,
            server_tls_dir: pki.join(VERIFIER_TLS_DIR),
            revocation: None,
            stack: None,
            child: None,
            services: None,
            _dir: None,
        })
    }

    /// The process whose CPU and memory the verifier's figures are: the child, else
    /// this one when the stack runs here, else none known (a running stack).
    pub fn process(&self) -> Option<(Pid, String, Option<std::time::Duration>)> {
        if let Some(services) = &self.services {
            return services.process("verifier");
        }
        match (&self.child, &self.stack) {
            (Some(child), _) => Some((
                child.pid(),
                format!("child process: {}", child.name),
                Some(child.ready_after),
            )),
            (None, Some(_)) => Some((Pid::Own, OWN_PROCESS.to_owned(), None)),
            (None, None) => None,
        }
    }

    /// The issuer's process: its own with separate services, else the stack's.
    pub fn issuer_process(&self) -> Option<(Pid, String, Option<std::time::Duration>)> {
        match &self.services {
            Some(services) => services.process("issuer"),
            None => self.process(),
        }
    }

    /// Each service's process when they run separately (in start order), else none.
    pub fn service_processes(&self) -> Vec<(Pid, String, Option<std::time::Duration>)> {
        self.services
            .as_ref()
            .map(Services::processes)
            .unwrap_or_default()
    }

    /// Whether the tool started the stack as a child process.
    pub fn spawned(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the tool started the five services as separate processes.
    pub fn separate(&self) -> bool {
        self.services.is_some()
    }

    /// Whether the verifier runs in this process (and so shares its cores with the
    /// generator).
    pub fn in_process(&self) -> bool {
        self.stack.is_some()
    }

    /// Stops the in-process stack or the child, if any.
    pub async fn stop(self) {
        if let Some(stack) = self.stack {
            stack.shutdown().await;
        }
        if let Some(services) = self.services {
            services.stop().await;
        }
        drop(self.child);
    }
}
