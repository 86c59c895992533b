//! A service started from its rendered Deployment, as the container would run: the
//! image's binary with the container's environment, its ConfigMap and Secret files at
//! the mounted paths (under a temporary root), against the test PostgreSQL; then the
//! kubelet's three probes on the probe port and one real RPC on the service port.
//!
//! What the test changes, and only that: the root the paths live under (the files and
//! the configuration's paths move under a temporary directory together), the network
//! addresses (listeners on loopback ports of its own, the database at the test server,
//! no OTLP collector), and the content of the Secrets, which the operator makes
//! (docs/operations.md): here a fresh CA and keys. A setting the manifests give that the
//! service does not know stops it at start; a file the configuration names that no
//! volume mounts is missing, and the service does not start either.
//!
//! First increment: identity on the dev overlay. The other services and the prod
//! overlay (production keys from `citypass keys generate --production`) are next.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use citypass_e2e::manifests;
use citypass_proto::v1::GetSubjectProfileRequest;
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_runtime::UpstreamConfig;
use citypass_testkit::tls::{As, TestPki};
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

#[tokio::test]
async fn identity_starts_from_its_rendered_deployment_and_answers_its_probes() {
    let service = "identity";
    let (_, objects) = manifests::render("dev");
    let deployment = object(&objects, "Deployment", service);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert!(
        container["command"].is_null() && container["args"].is_null(),
        "the image's entrypoint runs as it is"
    );
    let root = tempfile::tempdir().expect("a temporary root");
    let root = root.path();
    let pki = TestPki::new(service);

    // Every volume at its mount path: ConfigMaps from the manifests, Secrets made here.
    let volumes = pod["volumes"].as_array().expect("volumes");
    for mount in container["volumeMounts"].as_array().expect("volume mounts") {
        let path = mount["mountPath"].as_str().expect("mountPath");
        assert!(path.starts_with(MOUNT_ROOT), "{path}");
        let dir = rooted(root, path);
        std::fs::create_dir_all(&dir).expect("the mount directory");
        let volume = volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mount's volume");
        if let Some(name) = volume["configMap"]["name"].as_str() {
            let data = object(&objects, "ConfigMap", name)["data"]
                .as_object()
                .expect("the ConfigMap's data");
            for (file, text) in data {
                let text = text.as_str().expect("text").replace(
                    MOUNT_ROOT,
                    &format!("{}/", rooted(root, MOUNT_ROOT).display()),
                );
                std::fs::write(dir.join(file), text).expect("a ConfigMap file");
            }
        } else if let Some(name) = volume["secret"]["secretName"].as_str() {
            match name {
                "identity-tls" => {
                    pki.server_files(&dir);
                }
                "identity-keys" => {
                    // Four distinct 32-byte keys in hex, as `openssl rand -hex 32` makes.
                    for (i, file) in [
                        "document_key",
                        "document_key.1",
                        "pseudonym_key",
                        "government_key",
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        let key: String = (0..32)
                            .map(|b| format!("{:02x}", b * 7 + i * 3 + 1))
                            .collect();
                        std::fs::write(dir.join(file), key).expect("a key file");
                    }
                }
                other => panic!("a Secret this test cannot make: {other}"),
            }
        } else {
            panic!("a volume of another kind: {volume}");
        }
    }

    // The container's environment, with the root and the addresses moved.
    let listen = free_port();
    let probes = free_port();
    let metrics = free_port();
    let (_pool, database_url) = citypass_testkit::fresh_database().await;
    let mut env: Vec<(String, String)> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("a name").to_owned();
            let value = e["value"].as_str().expect("a plain value").to_owned();
            let value = if name == "CITYPASS_CONFIG" {
                rooted(root, &value).display().to_string()
            } else {
                value
            };
            (name, value)
        })
        .collect();
    env.retain(|(k, _)| k != "CITYPASS_SERVER__OTLP_ENDPOINT");
    env.extend([
        ("CITYPASS_SERVER__LISTEN".into(), listen.to_string()),
        ("CITYPASS_SERVER__HEALTH_LISTEN".into(), probes.to_string()),
        (
            "CITYPASS_SERVER__METRICS_LISTEN".into(),
            metrics.to_string(),
        ),
        ("CITYPASS_SERVER__OTLP_ENDPOINT".into(), String::new()),
        ("CITYPASS_DATABASE__URL".into(), database_url),
    ]);

    let log = root.join("service.log");
    let out = std::fs::File::create(&log).expect("the log file");
    let mut running = Running {
        child: Command::new(binary(service))
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("the log file"))
            .stderr(out)
            .spawn()
            .expect("start the service"),
        log,
    };

    // The kubelet: startup until it passes (or the service dies), then readiness and
    // liveness, with the services the manifest names.
    let grpc = |probe: &str| {
        let p = &container[probe]["grpc"];
        assert_eq!(p["port"], 8086, "{probe} on the probe port");
        p["service"].as_str().unwrap_or("").to_owned()
    };
    let started = Instant::now();
    loop {
        if let Some(status) = running.exited() {
            panic!(
                "{service} exited ({status}) before its startup probe passed:\n{}",
                running.log()
            );
        }
        if check(probes, &grpc("startupProbe")).await == Ok(ServingStatus::Serving) {
            break;
        }
        assert!(
            started.elapsed() < STARTUP,
            "{service}'s startup probe did not pass within {STARTUP:?}:\n{}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let readiness = grpc("readinessProbe");
    assert_eq!(
        readiness,
        citypass_proto::v1::identity_service_server::SERVICE_NAME
    );
    assert_eq!(check(probes, &readiness).await, Ok(ServingStatus::Serving));
    assert_eq!(
        check(probes, &grpc("livenessProbe")).await,
        Ok(ServingStatus::Serving)
    );

    // One real RPC over mutual TLS, through the authorisation table, to the database.
    let channel = pki.channel(listen, &As::Service("verifier"));
    let unknown = IdentityServiceClient::new(channel)
        .get_subject_profile(GetSubjectProfileRequest {
            subject_id: citypass_token::SubjectId::generate()
                .expect("a subject id")
                .to_string(),
        })
        .await
        .expect_err("no such subject");
    assert_eq!(
        unknown.code(),
        tonic::Code::NotFound,
        "{unknown:?}\n{}",
        running.log()
    );

    // SIGTERM, as the kubelet sends after preStop: a clean drain and exit 0.
    let stopped = Command::new("kill")
        .arg("-TERM")
        .arg(running.child.id().to_string())
        .status()
        .expect("kill -TERM");
    assert!(stopped.success());
    let deadline = Instant::now() + STOP;
    let status = loop {
        if let Some(status) = running.exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{service} did not stop:\n{}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.success(),
        "{service} exited {status}:\n{}",
        running.log()
    );
}
