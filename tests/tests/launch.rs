//! The services started from their rendered Deployments, as the containers would run:
//! the image's binary with the container's environment, its ConfigMap and Secret files
//! at the mounted paths (under a temporary root), against the test PostgreSQL and
//! Redis; then the kubelet's three probes on the probe port, one real RPC on the
//! service port, and SIGTERM with a clean exit.
//!
//! What the test changes, and only that: the root the paths live under (the files and
//! the configuration's paths move under a temporary directory together), the network
//! addresses (listeners on loopback ports of its own, the other services' URLs at their
//! processes, the stores at the test servers with key names of the test's own, no OTLP
//! collector), and the content of the Secrets, which the operator makes
//! (docs/operations.md): here a fresh CA and keys, and the test servers' URLs in each
//! service's store Secret (`<service>-stores`). A setting the manifests give that the
//! service does not know stops it at start; a file the configuration names that no
//! volume mounts is missing, and the service does not start either.
//!
//! Done: the five services of the dev overlay, each started after those it calls (their
//! URLs moved to the started processes' addresses). The prod overlay (production keys,
//! as `citypass keys generate --production` makes them; the managed stores) is next.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use citypass_e2e::manifests;
use citypass_pki::{Authority, CA_LIFE, OPERATOR_LIFE, Subject};
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::issuer_service_client::IssuerServiceClient;
use citypass_proto::v1::payments_service_client::PaymentsServiceClient;
use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_proto::v1::verifier_service_client::VerifierServiceClient;
use citypass_proto::v1::{
    Direction, GetKeySetRequest, GetSettlementRequest, GetSubjectProfileRequest,
    ListRevocationsRequest, Scene, VerifyRequest,
};
use citypass_runtime::{Role, Tls, UpstreamConfig};
use serde_json::Value;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Longest the startup probe may take: the manifest's budget, at least.
const STARTUP: Duration = Duration::from_secs(180);
/// Longest the graceful stop may take.
const STOP: Duration = Duration::from_secs(60);
const MOUNT_ROOT: &str = "/etc/citypass/";

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The binary the image runs (`/citypass` is `citypass-<service>`, Dockerfile), as cargo
/// built it beside this test.
fn binary(service: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let path = dir.join(format!("citypass-{service}"));
    assert!(
        path.exists(),
        "{} is not built: cargo build -p citypass-{service} (the test command builds every \
         target of the workspace)",
        path.display()
    );
    path
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// A path the container sees, under the temporary root.
fn rooted(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// A running service process; killed if the test fails before stopping it.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait on the service")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn check(addr: SocketAddr, service: &str) -> Result<ServingStatus, String> {
    let mut upstream = UpstreamConfig::new(format!("http://{addr}"));
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

/// One CA for the services of a test, and the temporary root their files live under.
struct Cluster {
    objects: Vec<Value>,
    ca: Authority,
    root: tempfile::TempDir,
    /// Where each started service listens: Service name -> (service port, probe port).
    started: Vec<(String, SocketAddr, SocketAddr)>,
}

/// A started service: where it listens and its process.
struct Started {
    listen: SocketAddr,
    probes: SocketAddr,
    running: Running,
    container: Value,
}

impl Cluster {
    fn new(overlay: &str) -> Cluster {
        let (_, objects) = manifests::render(overlay);
        Cluster {
            objects,
            ca: Authority::generate(CA_LIFE).expect("a CA"),
            root: tempfile::tempdir().expect("a temporary root"),
            started: Vec::new(),
        }
    }

    /// TLS as service `name`, from this cluster's CA.
    fn client(&self, name: &str) -> std::sync::Arc<Tls> {
        let issued = self
            .ca
            .issue(&Subject::service(name))
            .expect("a certificate");
        Tls::from_pem(
            self.ca.cert_pem().as_bytes(),
            Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
        )
        .expect("client TLS")
    }

    /// The configuration text with the container's paths under the root and the
    /// started services' addresses for their Service names.
    fn localise(&self, text: &str) -> String {
        let root = rooted(self.root.path(), MOUNT_ROOT);
        let mut text = text.replace(MOUNT_ROOT, &format!("{}/", root.display()));
        for (name, listen, _) in &self.started {
            // Every Service of the service's pods: the ClusterIP one, and the headless
            // one that balanced channels resolve (`<name>-pods`).
            for service in self.objects.iter().filter(|o| {
                o["kind"] == "Service"
                    && o["spec"]["selector"]["app.kubernetes.io/name"] == name.as_str()
            }) {
                let host = service["metadata"]["name"].as_str().expect("a name");
                for port in service["spec"]["ports"].as_array().expect("ports") {
                    let from = format!("https://{host}:{}", port["port"]);
                    text = text.replace(&from, &format!("https://{listen}"));
                }
            }
        }
        text
    }

    fn has(&self, kind: &str, name: &str) -> bool {
        self.objects
            .iter()
            .any(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    /// Starts `service` from its Deployment, with `made` writing the files of each
    /// Secret and operator-made ConfigMap (the TLS Secret and the store URLs'
    /// Secret, `<service>-stores`, with `stores`' files, are made here) and `env` added
    /// to the container's own.
    fn start(
        &mut self,
        service: &str,
        made: impl Fn(&str, &Path),
        stores: &[(&str, &str)],
        env: Vec<(String, String)>,
    ) -> Started {
        let root = self.root.path().to_path_buf();
        let deployment = object(&self.objects, "Deployment", service).clone();
        let pod = &deployment["spec"]["template"]["spec"];
        let container = pod["containers"][0].clone();
        assert!(
            container["command"].is_null() && container["args"].is_null(),
            "the image's entrypoint runs as it is"
        );
        let volumes = pod["volumes"].as_array().expect("volumes");
        for mount in container["volumeMounts"].as_array().expect("volume mounts") {
            let path = mount["mountPath"].as_str().expect("mountPath");
            assert!(path.starts_with(MOUNT_ROOT), "{path}");
            let dir = rooted(&root, path);
            std::fs::create_dir_all(&dir).expect("the mount directory");
            let volume = volumes
                .iter()
                .find(|v| v["name"] == mount["name"])
                .expect("the mount's volume");
            if let Some(name) = volume["configMap"]["name"].as_str()
                && !self.has("ConfigMap", name)
            {
                // Made by the operator, not the manifests (docs/operations.md).
                made(name, &dir);
            } else if let Some(name) = volume["configMap"]["name"].as_str() {
                let data = object(&self.objects, "ConfigMap", name)["data"]
                    .as_object()
                    .expect("the ConfigMap's data");
                for (file, text) in data {
                    let text = self.localise(text.as_str().expect("text"));
                    std::fs::write(dir.join(file), text).expect("a ConfigMap file");
                }
            } else if let Some(name) = volume["secret"]["secretName"].as_str() {
                if name == format!("{service}-tls") {
                    self.ca
                        .issue(&Subject::service(service))
                        .expect("a certificate")
                        .write_dir(&dir)
                        .expect("the TLS files");
                } else if name == format!("{service}-stores") {
                    // The test's stores for the dev stores or the city's managed ones.
                    for (file, url) in stores {
                        std::fs::write(dir.join(file), url).expect("a store URL file");
                    }
                } else {
                    made(name, &dir);
                }
            } else {
                panic!("a volume of another kind: {volume}");
            }
        }

        // The container's environment, with the root and the addresses moved.
        let listen = free_port();
        let probes = free_port();
        let mut vars: Vec<(String, String)> = container["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| {
                let name = e["name"].as_str().expect("a name").to_owned();
                let value = e["value"].as_str().expect("a plain value").to_owned();
                let value = if name == "CITYPASS_CONFIG" {
                    rooted(&root, &value).display().to_string()
                } else {
                    value
                };
                (name, value)
            })
            .collect();
        vars.retain(|(k, _)| k != "CITYPASS_SERVER__OTLP_ENDPOINT");
        vars.extend([
            ("CITYPASS_SERVER__LISTEN".into(), listen.to_string()),
            ("CITYPASS_SERVER__HEALTH_LISTEN".into(), probes.to_string()),
            (
                "CITYPASS_SERVER__METRICS_LISTEN".into(),
                free_port().to_string(),
            ),
            ("CITYPASS_SERVER__OTLP_ENDPOINT".into(), String::new()),
        ]);
        vars.extend(env);

        let log = root.join(format!("{service}.log"));
        let out = std::fs::File::create(&log).expect("the log file");
        let running = Running {
            child: Command::new(binary(service))
                .env_clear()
                .envs(vars)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("the log file"))
                .stderr(out)
                .spawn()
                .expect("start the service"),
            log,
        };
        self.started.push((service.to_owned(), listen, probes));
        Started {
            listen,
            probes,
            running,
            container,
        }
    }
}

impl Started {
    fn probe(&self, probe: &str) -> String {
        let grpc = &self.container[probe]["grpc"];
        assert_eq!(grpc["port"], 8086, "{probe} on the probe port");
        grpc["service"].as_str().unwrap_or("").to_owned()
    }

    /// The kubelet: startup until it passes (or the service dies), then readiness and
    /// liveness, with the services the manifest names.
    async fn probed(&mut self, grpc_name: &str) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.running.exited() {
                panic!(
                    "exited ({status}) before the startup probe passed:\n{}",
                    self.running.log()
                );
            }
            if check(self.probes, &self.probe("startupProbe")).await == Ok(ServingStatus::Serving) {
                break;
            }
            assert!(
                started.elapsed() < STARTUP,
                "the startup probe did not pass within {STARTUP:?}:\n{}",
                self.running.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let readiness = self.probe("readinessProbe");
        assert_eq!(readiness, grpc_name);
        assert_eq!(
            check(self.probes, &readiness).await,
            Ok(ServingStatus::Serving)
        );
        assert_eq!(
            check(self.probes, &self.probe("livenessProbe")).await,
            Ok(ServingStatus::Serving)
        );
    }

    /// SIGTERM, as the kubelet sends after preStop: a clean drain and exit 0.
    async fn stop(mut self) {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.running.child.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        let deadline = Instant::now() + STOP;
        let status = loop {
            if let Some(status) = self.running.exited() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "did not stop:\n{}",
                self.running.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(status.success(), "exited {status}:\n{}", self.running.log());
    }
}

/// Distinct 32-byte keys in hex, as `openssl rand -hex 32` makes them.
fn hex_key(seed: usize) -> String {
    (0..32)
        .map(|b| format!("{:02x}", (b * 7 + seed * 31 + 1) % 256))
        .collect()
}

/// What a call answered when a handler answered it: anything but the transport's,
/// the authorisation layer's or a missing method's refusals.
fn answered<T: std::fmt::Debug>(result: &Result<T, tonic::Status>) -> bool {
    !matches!(
        result.as_ref().map_err(tonic::Status::code),
        Err(tonic::Code::Unavailable
            | tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unknown)
    )
}

/// TLS for a client presenting `subject`, from `ca`.
fn as_subject(ca: &Authority, subject: &Subject) -> std::sync::Arc<Tls> {
    let issued = ca.issue(subject).expect("a certificate");
    Tls::from_pem(
        ca.cert_pem().as_bytes(),
        Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
    )
    .expect("client TLS")
}

fn channel(addr: SocketAddr, tls: &std::sync::Arc<Tls>) -> tonic::transport::Channel {
    UpstreamConfig::new(format!("https://{addr}"))
        .channel(Some(tls))
        .expect("a channel")
}

#[tokio::test]
async fn the_five_services_start_from_their_rendered_deployments() {
    let mut cluster = Cluster::new("dev");
    // The keys an operator makes (`citypass keys generate`, dev keys as the overlay's
    // CITYPASS_ENVIRONMENT=dev allows), and identity's HMAC keys.
    let rng = citypass_token::SystemRandom::new();
    let snapshot_key = citypass_token::SnapshotKey::generate(true, &rng).expect("a snapshot key");
    let mut ring = citypass_token::Keyring::generate("cp", true, &rng).expect("a key ring");
    ring.publish_snapshot_key(snapshot_key.public_key())
        .expect("the snapshot key published");
    let keyset = ring.public_keyset().expect("the key set").to_jwks();
    let pseudonym_key = hex_key(2);
    // The services' Redis keys, apart from every other test's.
    let stream = citypass_testkit::unique("citypass:test:launch:log:");
    let prefix =
        |service: &str| citypass_testkit::unique(&format!("citypass:test:launch:{service}:"));
    let redis = citypass_testkit::redis_url();

    let (_identity_db, identity_db) = citypass_testkit::fresh_database().await;
    let mut identity = cluster.start(
        "identity",
        |name, dir| {
            assert_eq!(name, "identity-keys", "a Secret this test cannot make");
            for (i, file) in [
                "document_key",
                "document_key.1",
                "pseudonym_key",
                "government_key",
            ]
            .into_iter()
            .enumerate()
            {
                std::fs::write(dir.join(file), hex_key(i)).expect("a key file");
            }
        },
        &[("database-url", &identity_db)],
        Vec::new(),
    );
    identity
        .probed(citypass_proto::v1::identity_service_server::SERVICE_NAME)
        .await;
    let profile = IdentityServiceClient::new(channel(identity.listen, &cluster.client("verifier")))
        .get_subject_profile(GetSubjectProfileRequest {
            subject_id: citypass_token::SubjectId::generate()
                .expect("a subject id")
                .to_string(),
        })
        .await;
    assert_eq!(
        profile.as_ref().map_err(tonic::Status::code).err(),
        Some(tonic::Code::NotFound),
        "{profile:?}\n{}",
        identity.running.log()
    );

    let (_revocation_db, revocation_db) = citypass_testkit::fresh_database().await;
    let mut revocation = cluster.start(
        "revocation",
        |name, dir| {
            assert_eq!(
                name, "revocation-snapshot-key",
                "a Secret this test cannot make"
            );
            std::fs::write(dir.join("snapshot-key.json"), snapshot_key.to_json()).expect("the key");
        },
        &[("database-url", &revocation_db), ("redis-url", &redis)],
        vec![("CITYPASS_STREAM_KEY".into(), stream.clone())],
    );
    revocation
        .probed(citypass_proto::v1::revocation_service_server::SERVICE_NAME)
        .await;
    let listed =
        RevocationServiceClient::new(channel(revocation.listen, &cluster.client("issuer")))
            .list_revocations(ListRevocationsRequest::default())
            .await;
    assert!(listed.is_ok(), "{listed:?}\n{}", revocation.running.log());

    let mut issuer = cluster.start(
        "issuer",
        |name, dir| {
            assert_eq!(name, "issuer-keyring", "a Secret this test cannot make");
            std::fs::write(dir.join("keyring.json"), ring.to_json()).expect("the ring");
        },
        &[("redis-url", &redis)],
        vec![
            ("CITYPASS_REDIS_KEY_PREFIX".into(), prefix("issuer")),
            ("CITYPASS_REVOCATION__STREAM_KEY".into(), stream.clone()),
        ],
    );
    issuer
        .probed(citypass_proto::v1::issuer_service_server::SERVICE_NAME)
        .await;
    let key_set = IssuerServiceClient::new(channel(issuer.listen, &cluster.client("verifier")))
        .get_key_set(GetKeySetRequest::default())
        .await;
    assert!(key_set.is_ok(), "{key_set:?}\n{}", issuer.running.log());

    let (_payments_db, payments_db) = citypass_testkit::fresh_database().await;
    let mut payments = cluster.start(
        "payments",
        |name, _| panic!("a Secret or ConfigMap this test cannot make: {name}"),
        &[("database-url", &payments_db), ("redis-url", &redis)],
        vec![
            ("CITYPASS_REDIS_KEY_PREFIX".into(), prefix("payments")),
            ("CITYPASS_REVOCATION__STREAM_KEY".into(), stream.clone()),
        ],
    );
    payments
        .probed(citypass_proto::v1::payments_service_server::SERVICE_NAME)
        .await;
    let auditor = as_subject(
        &cluster.ca,
        &Subject::operator("launch-test", &[Role::Auditor], OPERATOR_LIFE),
    );
    let settlement = PaymentsServiceClient::new(channel(payments.listen, &auditor))
        .get_settlement(GetSettlementRequest {
            date: "2026-12-01".into(),
        })
        .await;
    assert!(
        answered(&settlement),
        "{settlement:?}\n{}",
        payments.running.log()
    );

    let mut verifier = cluster.start(
        "verifier",
        |name, dir| match name {
            "verifier-subject-keys" => {
                std::fs::write(
                    dir.join("subject-keys.json"),
                    ring.subject_key_file().to_json(),
                )
                .expect("the subject keys");
                std::fs::write(dir.join("pseudonym_key"), &pseudonym_key).expect("the key");
            }
            "verifier-keyset" => {
                std::fs::write(dir.join("keyset.jwks.json"), &keyset).expect("the key set");
            }
            other => panic!("a Secret or ConfigMap this test cannot make: {other}"),
        },
        &[("redis-url", &redis)],
        vec![
            ("CITYPASS_REDIS_KEY_PREFIX".into(), prefix("verifier")),
            ("CITYPASS_REVOCATION__STREAM_KEY".into(), stream.clone()),
        ],
    );
    verifier
        .probed(citypass_proto::v1::verifier_service_server::SERVICE_NAME)
        .await;
    // A gate of the manifests' registry, showing a code that is not one.
    let gate = as_subject(&cluster.ca, &Subject::gate("metro-entry-1"));
    let verdict = VerifierServiceClient::new(channel(verifier.listen, &gate))
        .verify(VerifyRequest {
            gate_id: "metro-entry-1".into(),
            scene: Scene::Metro.into(),
            scan_id: "launch-1".into(),
            qr_text: "NOT-A-CODE".into(),
            direction: Direction::Entry.into(),
            ..Default::default()
        })
        .await;
    assert!(
        answered(&verdict),
        "{verdict:?}\n{}",
        verifier.running.log()
    );

    for service in [verifier, payments, issuer, revocation, identity] {
        service.stop().await;
    }
}
