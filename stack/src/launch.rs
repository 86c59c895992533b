//! The services as separate processes, each its own binary with its configuration and
//! secret files, as a container runs it: what the launch test (`tests/launch.rs`, the
//! services started from their rendered Deployments) and the load generator's
//! separate-services target (`citypass-loadtest verify --services`) both start, so the
//! two never drift apart.
//!
//! [`Launcher`] holds the files (under a root the caller owns) and a dev PKI (a fresh
//! CA at `<root>/pki`, its certificates in the layout `citypass dev` writes); each
//! [`ServicePlan`] says which binary, which environment and which files at which
//! container path (`/etc/citypass/...`, moved under `<root>/<service>/`: one
//! filesystem per container, since every service mounts its TLS Secret at the same
//! path). A configuration's
//! container paths and the other services' in-cluster URLs (`https://<name>:<port>`)
//! are rewritten to the root and to the started processes' loopback addresses, so
//! services are started after those they call. [`ServicePlan::from_deployment`] reads
//! a plan from a Deployment (the rendered manifests' in the test, the base manifests'
//! in the load generator), and [`Secrets`] makes the Secrets an operator makes
//! (fresh keys: dev ones, or production ones as `citypass keys generate --production`
//! makes them). [`Launcher::trust_stores`] adds the stores' CA to what every service
//! trusts, as an operator gives the managed stores' CA in the TLS Secret's `ca.crt`.
//! [`Launched`] is a running service: its startup probe waited for on the plaintext
//! probe port (as the kubelet does), its process id (for `/proc`), its log, and SIGTERM
//! with a clean exit.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use citypass_pki::{Authority, DevPki, PkiError, Subject};
use citypass_runtime::{Tls, UpstreamConfig};
use citypass_token::{Keyring, SecureRandom as _, SnapshotKey, SystemRandom};
use serde_json::Value;
use tokio::time::Instant;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Where the manifests mount every file of a service.
pub const MOUNT_ROOT: &str = "/etc/citypass/";
/// Between two startup probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// How much of a service's log an error carries (its end).
const LOG_TAIL: usize = 4000;

/// Why a service could not be launched, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A file or directory of the launch could not be written, or a process started.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A Deployment this launcher cannot start, or a volume's files it was not given.
    #[error("the {service} Deployment: {problem}")]
    Deployment { service: String, problem: String },
    /// Dev keys could not be made.
    #[error("dev keys: {0}")]
    Keys(String),
    /// The dev PKI could not be made.
    #[error("dev PKI: {0}")]
    Pki(#[from] PkiError),
    /// The client TLS could not be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// The service's binary is not there.
    #[error("{0} is not built")]
    NoBinary(PathBuf),
    /// The service exited before its startup probe passed.
    #[error("{service} exited ({status}) before its startup probe passed; its log ends:\n{log}")]
    Exited {
        service: String,
        status: ExitStatus,
        log: String,
    },
    /// The startup probe did not pass in time.
    #[error("{service}: the startup probe did not pass within {deadline:?}; its log ends:\n{log}")]
    NotStarted {
        service: String,
        deadline: Duration,
        log: String,
    },
    /// SIGTERM did not end the service in time, or it exited with a failure.
    #[error("{service} did not stop cleanly: {problem}; its log ends:\n{log}")]
    Stop {
        service: String,
        problem: String,
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Io { what, source }
}

/// The files of one mounted volume.
#[derive(Debug, Clone)]
pub enum Volume {
    /// The service's TLS Secret: a certificate for `Subject::service(<service>)` from
    /// the launcher's CA (`tls.crt`, `tls.key`, `ca.crt`).
    Tls,
    /// A ConfigMap: `(file name, text)`, each text with its container paths and
    /// in-cluster URLs rewritten ([`Launcher::localise`]).
    Config(Vec<(String, String)>),
    /// A Secret or a ConfigMap the operator makes: `(file name, content)`, as it is.
    Files(Vec<(String, String)>),
}

/// How to start one service.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// The service's name: its Kubernetes Service (the host in the others' URLs), its
    /// certificate's name.
    pub service: String,
    /// The binary (the image's entrypoint).
    pub binary: PathBuf,
    /// The environment, as the container sees it (`CITYPASS_CONFIG` a container path);
    /// the listeners and the OTLP exporter are set by the launcher.
    pub env: Vec<(String, String)>,
    /// `(container path under /etc/citypass/, its files)`.
    pub mounts: Vec<(String, Volume)>,
}

/// A volume of a Deployment, by the object that fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// A ConfigMap of this name.
    ConfigMap(&'a str),
    /// A Secret of this name (other than the service's TLS Secret, which the launcher
    /// makes).
    Secret(&'a str),
}

impl ServicePlan {
    /// The plan of the Deployment `deployment` (a Kubernetes object as JSON): its
    /// container's environment (plain values only) with `env` added, each volume mount
    /// filled by `volume` (the `<name>-tls` Secret by the launcher's CA), `binary` as
    /// the image's entrypoint (which must run as it is: no command, no args).
    pub fn from_deployment(
        deployment: &Value,
        binary: PathBuf,
        mut volume: impl FnMut(Source<'_>) -> Result<Volume, String>,
        env: Vec<(String, String)>,
    ) -> Result<ServicePlan, LaunchError> {
        let service = deployment["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let bad = |problem: String| LaunchError::Deployment {
            service: service.clone(),
            problem,
        };
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        if !container["command"].is_null() || !container["args"].is_null() {
            return Err(bad("the image's entrypoint must run as it is".to_owned()));
        }
        let empty = Vec::new();
        let volumes = pod["volumes"].as_array().unwrap_or(&empty);
        let mut mounts = Vec::new();
        for mount in container["volumeMounts"].as_array().unwrap_or(&empty) {
            let path = mount["mountPath"].as_str().unwrap_or_default();
            if !path.starts_with(MOUNT_ROOT) {
                return Err(bad(format!("a mount outside {MOUNT_ROOT}: {path}")));
            }
            let Some(spec) = volumes.iter().find(|v| v["name"] == mount["name"]) else {
                return Err(bad(format!("no volume {}", mount["name"])));
            };
            let files = if let Some(name) = spec["configMap"]["name"].as_str() {
                volume(Source::ConfigMap(name)).map_err(&bad)?
            } else if let Some(name) = spec["secret"]["secretName"].as_str() {
                if name == format!("{service}-tls") {
                    Volume::Tls
                } else {
                    volume(Source::Secret(name)).map_err(&bad)?
                }
            } else {
                return Err(bad(format!("a volume of another kind: {spec}")));
            };
            mounts.push((path.to_owned(), files));
        }
        let mut vars = Vec::new();
        for var in container["env"].as_array().unwrap_or(&empty) {
            match (var["name"].as_str(), var["value"].as_str()) {
                (Some(name), Some(value)) => vars.push((name.to_owned(), value.to_owned())),
                _ => return Err(bad(format!("not a plain value: {var}"))),
            }
        }
        vars.extend(env);
        Ok(ServicePlan {
            service,
            binary,
            env: vars,
            mounts,
        })
    }
}

/// The Secrets (and the key set ConfigMap) an operator makes for the five services
/// (docs/operations.md), here fresh keys: the issuer's key ring with the revocation
/// service's snapshot key published in it, and identity's HMAC keys (its pseudonym key
/// shared with the verifier).
pub struct Secrets {
    /// The issuer's key ring (dev or production keys).
    pub ring: Keyring,
    /// The revocation service's snapshot key.
    pub snapshot_key: SnapshotKey,
    /// Identity's `document_key`, `document_key.1`, `pseudonym_key`, `government_key`,
    /// `face_template_key` (32 bytes each, hex, as `openssl rand -hex 32` makes them).
    pub identity_keys: [String; 5],
}

/// The Secrets of a development deployment (the dev overlay, the load generator).
pub type DevSecrets = Secrets;

impl Secrets {
    /// Fresh dev keys (`citypass keys generate`), which production refuses.
    pub fn generate() -> Result<Secrets, LaunchError> {
        Self::make(true)
    }

    /// Fresh production keys, as `citypass keys generate --production` makes them (the
    /// same library calls: a ring and a snapshot key not marked dev, the snapshot key
    /// published in the ring).
    pub fn production() -> Result<Secrets, LaunchError> {
        Self::make(false)
    }

    fn make(dev: bool) -> Result<Secrets, LaunchError> {
        let rng = SystemRandom::new();
        let keys = |e: citypass_token::TokenError| LaunchError::Keys(e.to_string());
        let snapshot_key = SnapshotKey::generate(dev, &rng).map_err(keys)?;
        let mut ring = Keyring::generate("cp", dev, &rng).map_err(keys)?;
        ring.publish_snapshot_key(snapshot_key.public_key())
            .map_err(keys)?;
        let mut identity_keys: [String; 5] = Default::default();
        for key in &mut identity_keys {
            let mut bytes = [0u8; 32];
            rng.fill(&mut bytes)
                .map_err(|_| LaunchError::Keys("no system randomness".to_owned()))?;
            *key = bytes.iter().map(|b| format!("{b:02x}")).collect();
        }
        Ok(Secrets {
            ring,
            snapshot_key,
            identity_keys,
        })
    }

    /// The files of the operator-made Secret or ConfigMap `name` of the base
    /// manifests, if it is one of these.
    pub fn files(&self, name: &str) -> Option<Vec<(String, String)>> {
        let files = |list: &[(&str, String)]| {
            list.iter()
                .map(|(file, text)| ((*file).to_owned(), text.clone()))
                .collect()
        };
        let [document, document_1, pseudonym, government, face_template] = &self.identity_keys;
        Some(match name {
            "identity-keys" => files(&[
                ("document_key", document.clone()),
                ("document_key.1", document_1.clone()),
                ("pseudonym_key", pseudonym.clone()),
                ("government_key", government.clone()),
                ("face_template_key", face_template.clone()),
            ]),
            "revocation-snapshot-key" => {
                files(&[("snapshot-key.json", self.snapshot_key.to_json())])
            }
            "issuer-keyring" => files(&[("keyring.json", self.ring.to_json())]),
            "verifier-subject-keys" => files(&[
                ("subject-keys.json", self.ring.subject_key_file().to_json()),
                ("pseudonym_key", pseudonym.clone()),
            ]),
            "verifier-keyset" => files(&[(
                "keyset.jwks.json",
                self.ring.public_keyset().ok()?.to_jwks(),
            )]),
            _ => return None,
        })
    }
}

/// Services started from one CA, their files under one root.
pub struct Launcher {
    root: PathBuf,
    pki: DevPki,
    ca: Authority,
    /// CA certificates (PEM) every service trusts besides the launcher's CA: the
    /// stores' (the TLS Secret's `ca.crt` holds both).
    stores_ca: String,
    /// The started services: name and service address.
    started: Vec<(String, SocketAddr)>,
}

/// `citypass-<service>` in `dir` (the image's binary, as cargo builds it).
pub fn binary_in(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("citypass-{service}"))
}

/// A loopback address with a port free now (bound and released: another process could
/// take it in between, which on a test machine is unlikely and fails loudly).
pub fn free_addr() -> Result<SocketAddr, LaunchError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io("a free loopback port"))
}

impl Launcher {
    /// A launcher whose files live under `root` (which must exist), with a fresh CA.
    pub fn new(root: &Path) -> Result<Launcher, LaunchError> {
        let (pki, ca) = DevPki::ensure(&root.join("pki"))?;
        Ok(Launcher {
            root: root.to_owned(),
            pki,
            ca,
            stores_ca: String::new(),
            started: Vec::new(),
        })
    }

    /// Adds `ca_pem` (the CA of the stores' certificates) to the `ca.crt` of every TLS
    /// Secret written from now on, as an operator gives the managed stores' CA to the
    /// services (docs/operations.md, "Stores"): PostgreSQL's `sslrootcert` and Redis's
    /// default CA are that file.
    pub fn trust_stores(&mut self, ca_pem: &str) {
        self.stores_ca.push_str(ca_pem);
        if !self.stores_ca.ends_with('\n') {
            self.stores_ca.push('\n');
        }
    }

    /// The CA every certificate of the launch comes from.
    pub fn ca(&self) -> &Authority {
        &self.ca
    }

    /// The dev PKI (`ca.crt`, `service-<name>/`, `gate-<id>/` directories).
    pub fn pki(&self) -> &DevPki {
        &self.pki
    }

    /// The root the files live under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `service` listens, once started.
    pub fn address(&self, service: &str) -> Option<SocketAddr> {
        self.started
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, addr)| *addr)
    }

    /// A container path of `service` under the root: each service has a directory of
    /// its own (`<root>/<service>/`), as each container has its own filesystem (the
    /// services mount different files at the same paths, `/etc/citypass/tls/` first).
    pub fn rooted(&self, service: &str, path: &str) -> PathBuf {
        self.root.join(service).join(path.trim_start_matches('/'))
    }

    /// Client TLS as `subject`, from the launcher's CA.
    pub fn client_tls(&self, subject: &Subject) -> Result<Arc<Tls>, LaunchError> {
        let issued = self.ca.issue(subject)?;
        Tls::from_pem(
            self.ca.cert_pem().as_bytes(),
            Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
        )
        .map_err(|e| LaunchError::Tls(e.to_string()))
    }

    /// `text` with `service`'s container paths under its root and each started
    /// service's in-cluster URLs (`https://<name>:<any port>`, and its headless
    /// Service's `https://<name>-pods:<any port>` that balanced channels resolve) at its
    /// loopback address.
    pub fn localise(&self, service: &str, text: &str) -> String {
        let root = self.rooted(service, MOUNT_ROOT);
        let mut text = text.replace(MOUNT_ROOT, &format!("{}/", root.display()));
        for (name, listen) in &self.started {
            text = replace_url(&text, name, *listen);
            text = replace_url(&text, &format!("{name}-pods"), *listen);
        }
        text
    }

    /// Writes `plan`'s files and starts its binary with the container's environment
    /// (its container paths under the root; listeners on loopback ports of its
    /// own; no OTLP collector), its output to `<root>/<service>.log`. Does not wait:
    /// see [`Launched::started`].
    pub fn start(&mut self, plan: ServicePlan) -> Result<Launched, LaunchError> {
        if !plan.binary.exists() {
            return Err(LaunchError::NoBinary(plan.binary));
        }
        for (path, volume) in &plan.mounts {
            let dir = self.rooted(&plan.service, path);
            std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
            match volume {
                Volume::Tls => {
                    let mut issued = self.ca.issue(&Subject::service(&plan.service))?;
                    issued.ca_pem.push_str(&self.stores_ca);
                    issued.write_dir(&dir)?;
                }
                Volume::Config(files) => {
                    for (name, text) in files {
                        let file = dir.join(name);
                        std::fs::write(&file, self.localise(&plan.service, text))
                            .map_err(io(format!("write {}", file.display())))?;
                    }
                }
                Volume::Files(files) => {
                    for (name, content) in files {
                        let file = dir.join(name);
                        std::fs::write(&file, content)
                            .map_err(io(format!("write {}", file.display())))?;
                    }
                }
            }
        }

        let listen = free_addr()?;
        let probes = free_addr()?;
        let metrics = free_addr()?;
        let mut vars: Vec<(String, String)> = plan
            .env
            .into_iter()
            .filter(|(name, _)| name != "CITYPASS_SERVER__OTLP_ENDPOINT")
            .map(|(name, value)| {
                // A container path (`CITYPASS_CONFIG`, a `…_FILE` setting) moves under
                // the root with the files.
                if value.starts_with(MOUNT_ROOT) {
                    let value = self.rooted(&plan.service, &value).display().to_string();
                    (name, value)
                } else {
                    (name, value)
                }
            })
            .collect();
        vars.extend([
            ("CITYPASS_SERVER__LISTEN".to_owned(), listen.to_string()),
            (
                "CITYPASS_SERVER__HEALTH_LISTEN".to_owned(),
                probes.to_string(),
            ),
            (
                "CITYPASS_SERVER__METRICS_LISTEN".to_owned(),
                metrics.to_string(),
            ),
            ("CITYPASS_SERVER__OTLP_ENDPOINT".to_owned(), String::new()),
        ]);

        let log = self.root.join(format!("{}.log", plan.service));
        let out = std::fs::File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io(format!("open {}", log.display())))?;
        let spawned = Instant::now();
        let child = Command::new(&plan.binary)
            .env_clear()
            .envs(vars)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("start {}", plan.binary.display())))?;
        self.started.push((plan.service.clone(), listen));
        Ok(Launched {
            service: plan.service,
            listen,
            probes,
            spawned,
            child,
            log,
        })
    }
}

/// `text` with every `https://<name>:<digits>` replaced by `https://<addr>`.
fn replace_url(text: &str, name: &str, addr: SocketAddr) -> String {
    let from = format!("https://{name}:");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&from) {
        let after = &rest[at + from.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&rest[..at]);
        if digits == 0 {
            // Not a URL with a port: keep it as it is.
            out.push_str(&from);
        } else {
            out.push_str(&format!("https://{addr}"));
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// A running service process; killed (and reaped) when dropped unless stopped.
pub struct Launched {
    /// The service's name.
    pub service: String,
    /// Its service port (mutual TLS).
    pub listen: SocketAddr,
    /// Its probe port (plaintext health checks).
    pub probes: SocketAddr,
    spawned: Instant,
    child: Child,
    log: PathBuf,
}

impl Launched {
    /// Its process id, for `/proc/<pid>`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its service URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.listen)
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of its log, for an error.
    fn log_tail(&self) -> String {
        let log = self.log();
        let mut from = log.len().saturating_sub(LOG_TAIL);
        while !log.is_char_boundary(from) {
            from += 1;
        }
        log[from..].to_owned()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// One health check of `service` (empty: the server as a whole) on the probe port.
    pub async fn check(&self, service: &str) -> Result<ServingStatus, String> {
        let mut upstream = UpstreamConfig::new(format!("http://{}", self.probes));
        upstream.connect_timeout = Duration::from_secs(2);
        upstream.request_timeout = Duration::from_secs(2);
        let channel = upstream.channel(None).map_err(|e| e.to_string())?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map(|r| r.into_inner().status())
            .map_err(|s| format!("{s:?}"))
    }

    /// Waits until the startup probe (the server's health, `""`) answers SERVING, as
    /// the kubelet probes; fails if the process exits first or `deadline` passes.
    /// Returns the time from spawn to the first SERVING.
    pub async fn started(&mut self, deadline: Duration) -> Result<Duration, LaunchError> {
        loop {
            if let Some(status) = self.exited() {
                return Err(LaunchError::Exited {
                    service: self.service.clone(),
                    status,
                    log: self.log_tail(),
                });
            }
            if self.check("").await == Ok(ServingStatus::Serving) {
                return Ok(self.spawned.elapsed());
            }
            if self.spawned.elapsed() > deadline {
                return Err(LaunchError::NotStarted {
                    service: self.service.clone(),
                    deadline,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// SIGTERM, as the kubelet sends after preStop, then waits up to `deadline` for
    /// the exit; a clean drain exits 0.
    pub async fn stop(mut self, deadline: Duration) -> Result<(), LaunchError> {
        let failed = |this: &Launched, problem: String| LaunchError::Stop {
            service: this.service.clone(),
            problem,
            log: this.log_tail(),
        };
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .map_err(io("kill -TERM"))?;
        if !sent.success() {
            return Err(failed(&self, format!("kill -TERM: {sent}")));
        }
        let until = Instant::now() + deadline;
        let status = loop {
            if let Some(status) = self.exited() {
                break status;
            }
            if Instant::now() > until {
                return Err(failed(&self, format!("still running after {deadline:?}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if status.success() {
            Ok(())
        } else {
            Err(failed(&self, format!("exited {status}")))
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_cluster_urls_move_to_the_started_address_whatever_their_port() {
        let addr: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let text = "a: https://issuer:50052\nb: https://issuer:1/x\nc: https://issuer:\n\
                    d: https://identity:50051\n";
        assert_eq!(
            replace_url(text, "issuer", addr),
            "a: https://127.0.0.1:4242\nb: https://127.0.0.1:4242/x\nc: https://issuer:\n\
             d: https://identity:50051\n"
        );
    }
}
