//! The services started from their rendered Deployments, as the containers would run:
//! the image's binary with the container's environment, its ConfigMap and Secret files
//! at the mounted paths (under a temporary root), against the test PostgreSQL and
//! Redis; then the kubelet's three probes on the probe port, one real RPC on the
//! service port, and SIGTERM with a clean exit. Both overlays, through the same code.
//!
//! What the test changes, and only that: the root the paths live under (the files and
//! the container paths of the configuration and the variables move under a temporary
//! directory together), the network addresses (listeners on loopback ports of its own,
//! the other services' URLs at their processes, the stores at the test servers with
//! key names of the test's own, the real-name provider at its double, no OTLP
//! collector), and the content of the Secrets, which the operator makes
//! (docs/operations.md): here a fresh CA and keys. A setting the manifests give that
//! the service does not know stops it at start; a file the configuration names that no
//! volume mounts is missing, and the service does not start either.
//!
//! The prod overlay runs as production: production keys (as `citypass keys generate
//! --production` makes them), the stores over TLS only (PostgreSQL `verify-full`,
//! `rediss://`, the verifier's marks on a Redis Cluster speaking TLS) with their CA
//! in the TLS Secret's `ca.crt` as the operator gives it, and identity's real-name
//! check at the provider's contract double (`citypass_testkit::realname`), which an
//! Enrol reaches through the launched binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use citypass_e2e::manifests;
use citypass_pki::{Authority, OPERATOR_LIFE, Subject};
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::issuer_service_client::IssuerServiceClient;
use citypass_proto::v1::payments_service_client::PaymentsServiceClient;
use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_proto::v1::verifier_service_client::VerifierServiceClient;
use citypass_proto::v1::{
    Direction, DocumentType, EnrolRequest, GetKeySetRequest, GetSettlementRequest,
    GetSubjectProfileRequest, ListRevocationsRequest, Scene, VerifyRequest,
};
use citypass_runtime::{Role, Tls, UpstreamConfig};
use citypass_stack::launch::{
    LaunchError, Launched, Launcher, Secrets, ServicePlan, Source, Volume,
};
use citypass_testkit::realname::{RealNameDouble, SECRET_ID, SECRET_KEY};
use citypass_testkit::redis_cluster::{ClusterTls, LocalCluster};
use serde_json::Value;
use tonic_health::pb::health_check_response::ServingStatus;

/// Longest the startup probe may take: the manifest's budget, at least.
const STARTUP: Duration = Duration::from_secs(180);
/// Longest the graceful stop may take.
const STOP: Duration = Duration::from_secs(60);

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
    let path = citypass_stack::launch::binary_in(dir, service);
    assert!(
        path.exists(),
        "{} is not built: cargo build -p citypass-{service} (the test command builds every \
         target of the workspace)",
        path.display()
    );
    path
}

/// The rendered objects, and the launcher (one CA, the temporary root the files live
/// under) that starts their services.
struct Cluster {
    objects: Vec<Value>,
    launcher: Launcher,
    _root: tempfile::TempDir,
}

/// A started service and the container it was started from.
struct Started {
    running: Launched,
    container: Value,
}

impl Cluster {
    fn new(overlay: &str) -> Cluster {
        let (_, objects) = manifests::render(overlay);
        let root = tempfile::tempdir().expect("a temporary root");
        Cluster {
            objects,
            launcher: Launcher::new(root.path()).expect("a launcher"),
            _root: root,
        }
    }

    fn ca(&self) -> &Authority {
        self.launcher.ca()
    }

    /// TLS as service `name`, from this cluster's CA.
    fn client(&self, name: &str) -> std::sync::Arc<Tls> {
        self.launcher
            .client_tls(&Subject::service(name))
            .expect("client TLS")
    }

    fn has(&self, kind: &str, name: &str) -> bool {
        self.objects
            .iter()
            .any(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    /// Starts `service` from its Deployment, with `made` giving the files of each
    /// Secret and operator-made ConfigMap (the TLS Secret is made by the launcher; the
    /// store URLs' Secret, `<service>-stores`, holds `stores`' files) and `env` added
    /// to the container's own.
    fn start(
        &mut self,
        service: &str,
        made: impl Fn(&str) -> Option<Vec<(String, String)>>,
        stores: &[(&str, &str)],
        env: Vec<(String, String)>,
    ) -> Started {
        let deployment = object(&self.objects, "Deployment", service).clone();
        self.start_deployment(deployment, made, stores, env)
    }

    /// [`Cluster::start`] from `deployment` as given (a rendered one, or one a test
    /// changed).
    fn start_deployment(
        &mut self,
        deployment: Value,
        made: impl Fn(&str) -> Option<Vec<(String, String)>>,
        stores: &[(&str, &str)],
        env: Vec<(String, String)>,
    ) -> Started {
        let service = deployment["metadata"]["name"]
            .as_str()
            .expect("a Deployment's name")
            .to_owned();
        let service = service.as_str();
        let stores_secret = format!("{service}-stores");
        let container = deployment["spec"]["template"]["spec"]["containers"][0].clone();
        let plan = ServicePlan::from_deployment(
            &deployment,
            binary(service),
            |source| match source {
                Source::ConfigMap(name) if self.has("ConfigMap", name) => {
                    let data = object(&self.objects, "ConfigMap", name)["data"]
                        .as_object()
                        .ok_or("the ConfigMap has no data")?;
                    Ok(Volume::Config(
                        data.iter()
                            .map(|(file, text)| {
                                (file.clone(), text.as_str().unwrap_or_default().to_owned())
                            })
                            .collect(),
                    ))
                }
                // The test's stores, for the dev stores or the city's managed ones (their
                // container paths, `sslrootcert=/etc/citypass/tls/ca.crt`, under the root).
                Source::Secret(name) if name == stores_secret => Ok(Volume::Config(
                    stores
                        .iter()
                        .map(|(file, url)| ((*file).to_owned(), (*url).to_owned()))
                        .collect(),
                )),
                // Made by the operator, not the manifests (docs/operations.md).
                Source::ConfigMap(name) | Source::Secret(name) => made(name)
                    .map(Volume::Files)
                    .ok_or_else(|| format!("{name}: a Secret or ConfigMap this test cannot make")),
            },
            env,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let running = self
            .launcher
            .start(plan)
            .unwrap_or_else(|e| panic!("start {service}: {e}"));
        Started { running, container }
    }
}

impl Started {
    fn probe(&self, probe: &str) -> String {
        let grpc = &self.container[probe]["grpc"];
        assert_eq!(grpc["port"], 8086, "{probe} on the probe port");
        grpc["service"].as_str().unwrap_or("").to_owned()
    }

    fn listen(&self) -> SocketAddr {
        self.running.listen
    }

    /// The kubelet: startup until it passes (or the service dies), then readiness and
    /// liveness, with the services the manifest names.
    async fn probed(&mut self, grpc_name: &str) {
        assert_eq!(
            self.probe("startupProbe"),
            "",
            "the startup probe asks for the server"
        );
        if let Err(e) = self.running.started(STARTUP).await {
            panic!("{e}");
        }
        let readiness = self.probe("readinessProbe");
        assert_eq!(readiness, grpc_name);
        assert_eq!(
            self.running.check(&readiness).await,
            Ok(ServingStatus::Serving)
        );
        assert_eq!(
            self.running.check(&self.probe("livenessProbe")).await,
            Ok(ServingStatus::Serving)
        );
    }

    /// SIGTERM, as the kubelet sends after preStop: a clean drain and exit 0.
    async fn stop(self) {
        if let Err(e) = self.running.stop(STOP).await {
            panic!("{e}");
        }
    }
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

/// What differs between the overlays, for the test: the operator's Secrets and the
/// stores as each overlay's services reach them.
struct Stores {
    /// The Redis URL (plaintext in dev, `rediss://` in prod).
    redis: String,
    /// What follows a database URL (prod: verified TLS against the TLS Secret's CA).
    database_options: &'static str,
    /// The verifier's replay cluster file (prod), and the cluster behind it.
    replay_cluster: Option<(String, LocalCluster)>,
}

impl Stores {
    async fn database(&self) -> (sqlx::PgPool, String) {
        let (pool, url) = citypass_testkit::fresh_database().await;
        (pool, format!("{url}{}", self.database_options))
    }
}

/// The test's stores for `overlay`, and the CA bundle of their certificates (prod).
async fn stores(overlay: &str, root: &Path) -> (Stores, Option<String>) {
    if overlay == "dev" {
        let stores = Stores {
            redis: citypass_testkit::redis_url(),
            database_options: "",
            replay_cluster: None,
        };
        return (stores, None);
    }
    let (redis, redis_ca) = citypass_testkit::redis_tls();
    let database_ca = std::env::var(citypass_testkit::DATABASE_CA_VAR)
        .expect("CITYPASS_TEST_DATABASE_CA (./scripts/test sets it)");
    // The replay cluster's nodes, over TLS with a CA of their own.
    let cluster_ca = Authority::generate(citypass_pki::CA_LIFE).expect("a CA");
    let cluster_dir = root.join("replay-cluster-tls");
    let files = cluster_ca
        .issue(&Subject::service("redis-cluster"))
        .expect("a certificate")
        .write_dir(&cluster_dir)
        .expect("the cluster's TLS files");
    let cluster = LocalCluster::start_tls(&ClusterTls {
        cert_file: files.cert_file,
        key_file: files.key_file,
        ca_file: files.ca_file,
    })
    .await;
    let bundle = [
        std::fs::read_to_string(redis_ca).expect("the test Redis's CA"),
        std::fs::read_to_string(database_ca).expect("the test PostgreSQL's CA"),
        cluster_ca.cert_pem().to_owned(),
    ]
    .join("\n");
    let stores = Stores {
        redis,
        database_options: "?sslmode=verify-full&sslrootcert=/etc/citypass/tls/ca.crt",
        replay_cluster: Some((cluster.nodes.join("\n"), cluster)),
    };
    (stores, Some(bundle))
}

/// The resident ID number of a made-up person (born 1949-12-31 in Beijing), with its
/// GB 11643 check character.
fn resident_number() -> String {
    let first17 = "11010519491231007";
    let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .chars()
        .zip(weights)
        .map(|(c, w)| c.to_digit(10).expect("a digit") * w)
        .sum();
    let check = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'][(sum % 11) as usize];
    format!("{first17}{check}")
}

async fn launch(overlay: &str) {
    let mut cluster = Cluster::new(overlay);
    let production = overlay == "prod";
    // The keys an operator makes: `citypass keys generate` (dev keys, as the dev
    // overlay's CITYPASS_ENVIRONMENT=dev allows) or `--production`; identity's HMAC keys.
    let secrets = if production {
        Secrets::production().expect("production keys")
    } else {
        Secrets::generate().expect("dev keys")
    };
    let (stores, stores_ca) = stores(overlay, cluster.launcher.root()).await;
    if let Some(ca) = &stores_ca {
        cluster.launcher.trust_stores(ca);
    }
    // The real-name provider, as its contract says (prod), with one person on record.
    let real_name = RealNameDouble::start().await;
    let (number, name) = (resident_number(), "李雷");
    real_name.person(&number, name);
    let made = |name: &str| match name {
        // The provider's key pair (docs/operations.md, "Real-name credentials"), and
        // the CA the double's certificate comes from.
        "identity-real-name" => Some(vec![
            ("secret-id".to_owned(), SECRET_ID.to_owned()),
            ("secret-key".to_owned(), SECRET_KEY.to_owned()),
            ("ca.crt".to_owned(), real_name.ca_pem.clone()),
        ]),
        _ => secrets.files(name),
    };
    // The services' Redis keys, apart from every other test's.
    let stream = citypass_testkit::unique("citypass:test:launch:log:");
    let prefix =
        |service: &str| citypass_testkit::unique(&format!("citypass:test:launch:{service}:"));
    let redis = stores.redis.clone();

    let (_identity_db, identity_db) = stores.database().await;
    let identity_env = if production {
        vec![
            (
                "CITYPASS_REAL_NAME__ENDPOINT".to_owned(),
                real_name.endpoint.clone(),
            ),
            (
                "CITYPASS_REAL_NAME__CA_FILE".to_owned(),
                "/etc/citypass/real-name/ca.crt".to_owned(),
            ),
        ]
    } else {
        Vec::new()
    };
    let mut identity = cluster.start(
        "identity",
        made,
        &[("database-url", &identity_db)],
        identity_env,
    );
    identity
        .probed(citypass_proto::v1::identity_service_server::SERVICE_NAME)
        .await;
    if production {
        // A citizen enrols: the launched binary asks the provider, over its contract.
        let app = Tls::from_pem(cluster.ca().cert_pem().as_bytes(), None).expect("app TLS");
        let enrolled = IdentityServiceClient::new(channel(identity.listen(), &app))
            .enrol(EnrolRequest {
                document_type: DocumentType::ResidentIdCard.into(),
                document_number: number.clone(),
                name: name.to_owned(),
                request_id: String::new(),
            })
            .await;
        assert!(enrolled.is_ok(), "{enrolled:?}\n{}", identity.running.log());
        assert_eq!(real_name.calls(), 1, "one real-name check");
        assert!(real_name.refused().is_empty(), "{:?}", real_name.refused());
        let log = identity.running.log();
        assert!(!log.contains(&number) && !log.contains(name), "{log}");
    } else {
        let profile =
            IdentityServiceClient::new(channel(identity.listen(), &cluster.client("verifier")))
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
    }

    let (_revocation_db, revocation_db) = stores.database().await;
    let mut revocation = cluster.start(
        "revocation",
        made,
        &[("database-url", &revocation_db), ("redis-url", &redis)],
        vec![("CITYPASS_STREAM_KEY".into(), stream.clone())],
    );
    revocation
        .probed(citypass_proto::v1::revocation_service_server::SERVICE_NAME)
        .await;
    let listed =
        RevocationServiceClient::new(channel(revocation.listen(), &cluster.client("issuer")))
            .list_revocations(ListRevocationsRequest::default())
            .await;
    assert!(listed.is_ok(), "{listed:?}\n{}", revocation.running.log());

    let mut issuer = cluster.start(
        "issuer",
        made,
        &[("redis-url", &redis)],
        vec![
            ("CITYPASS_REDIS_KEY_PREFIX".into(), prefix("issuer")),
            ("CITYPASS_REVOCATION__STREAM_KEY".into(), stream.clone()),
        ],
    );
    issuer
        .probed(citypass_proto::v1::issuer_service_server::SERVICE_NAME)
        .await;
    let key_set = IssuerServiceClient::new(channel(issuer.listen(), &cluster.client("verifier")))
        .get_key_set(GetKeySetRequest::default())
        .await;
    assert!(key_set.is_ok(), "{key_set:?}\n{}", issuer.running.log());

    let (_payments_db, payments_db) = stores.database().await;
    let mut payments = cluster.start(
        "payments",
        made,
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
        cluster.ca(),
        &Subject::operator("launch-test", &[Role::Auditor], OPERATOR_LIFE),
    );
    let settlement = PaymentsServiceClient::new(channel(payments.listen(), &auditor))
        .get_settlement(GetSettlementRequest {
            date: "2026-12-01".into(),
        })
        .await;
    assert!(
        answered(&settlement),
        "{settlement:?}\n{}",
        payments.running.log()
    );

    let mut verifier_stores = vec![("redis-url", redis.as_str())];
    if let Some((nodes, _)) = &stores.replay_cluster {
        verifier_stores.push(("replay-cluster", nodes.as_str()));
    }
    let mut verifier = cluster.start(
        "verifier",
        made,
        &verifier_stores,
        vec![
            ("CITYPASS_REDIS_KEY_PREFIX".into(), prefix("verifier")),
            ("CITYPASS_REVOCATION__STREAM_KEY".into(), stream.clone()),
        ],
    );
    verifier
        .probed(citypass_proto::v1::verifier_service_server::SERVICE_NAME)
        .await;
    // A gate of the manifests' registry, showing a code that is not one.
    let gate = as_subject(cluster.ca(), &Subject::gate("metro-entry-1"));
    let verdict = VerifierServiceClient::new(channel(verifier.listen(), &gate))
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

#[tokio::test]
async fn the_five_services_start_from_their_rendered_dev_deployments() {
    launch("dev").await;
}

#[tokio::test]
async fn the_five_services_start_from_their_rendered_prod_deployments() {
    launch("prod").await;
}

/// A change a test makes to a rendered Deployment.
type Change = dyn Fn(&mut Value);

/// What the launch catches: identity started from its prod Deployment with a variable
/// misspelt, then without the real-name Secret's volume, each stops at start and says
/// why (the database and every other file as in the launch above; each start with a
/// root of its own, as each pod has its own filesystem).
#[tokio::test]
async fn a_prod_setting_identity_does_not_know_or_a_file_left_unmounted_stops_it() {
    let secrets = Secrets::production().expect("production keys");
    let made = |name: &str| match name {
        "identity-real-name" => Some(vec![
            ("secret-id".to_owned(), SECRET_ID.to_owned()),
            ("secret-key".to_owned(), SECRET_KEY.to_owned()),
        ]),
        _ => secrets.files(name),
    };
    let ca = std::env::var(citypass_testkit::DATABASE_CA_VAR)
        .expect("CITYPASS_TEST_DATABASE_CA (./scripts/test sets it)");
    let ca = std::fs::read_to_string(ca).expect("the test PostgreSQL's CA");
    let (_db, url) = citypass_testkit::fresh_database().await;
    let url = format!("{url}?sslmode=verify-full&sslrootcert=/etc/citypass/tls/ca.crt");

    let misspell = |deployment: &mut Value| {
        let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .expect("identity's variables");
        let setting = env
            .iter_mut()
            .find(|v| v["name"] == "CITYPASS_REAL_NAME__SECRET_KEY_FILE")
            .expect("the prod overlay sets the real-name key file");
        setting["name"] = "CITYPASS_REAL_NAME__SECRET_KEY_FIEL".into();
    };
    let unmount = |deployment: &mut Value| {
        let pod = &mut deployment["spec"]["template"]["spec"];
        pod["volumes"]
            .as_array_mut()
            .expect("volumes")
            .retain(|v| v["name"] != "real-name");
        pod["containers"][0]["volumeMounts"]
            .as_array_mut()
            .expect("mounts")
            .retain(|m| m["name"] != "real-name");
    };
    let cases: [(&str, &Change, &str); 2] = [
        ("a misspelt setting", &misspell, "secret_key_fiel"),
        ("a file no volume mounts", &unmount, "real-name/secret-id"),
    ];
    for (what, change, named) in cases {
        let mut cluster = Cluster::new("prod");
        cluster.launcher.trust_stores(&ca);
        let mut deployment = object(&cluster.objects, "Deployment", "identity").clone();
        change(&mut deployment);
        let mut started =
            cluster.start_deployment(deployment, made, &[("database-url", &url)], Vec::new());
        let refused = started.running.started(STARTUP).await;
        let Err(LaunchError::Exited { log, .. }) = refused else {
            panic!("{what} must stop identity: {refused:?}");
        };
        assert!(log.contains(named), "{what}: the log names {named}: {log}");
    }
}
