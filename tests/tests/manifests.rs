//! The Kubernetes manifests as they are applied: each overlay rendered by `kubectl
//! kustomize`, read with k8s-openapi's types for Kubernetes 1.35, and held to what the
//! services need and what the deployment promises (docs/operations.md):
//!
//! - every container has startup, readiness and liveness probes, resources, and the
//!   restricted security context; the services' probes reach the probe listener their
//!   configuration opens;
//! - every service image is a skaffold artifact;
//! - every Service targets a named container port that exists;
//! - Secrets are mounted read-only as whole files (mode 0440, fsGroup), never as
//!   environment variables; every file path a configuration names is mounted;
//! - every store URL (PostgreSQL, Redis, the verifier's Redis Cluster) comes from a file
//!   of the service's Secret `<service>-stores`, never from a variable or a ConfigMap:
//!   in dev the dev-stores component makes the Secrets, in prod the operator does, so
//!   the rendered prod overlay holds no store URL at all;
//! - each service's configuration (its ConfigMap plus the Deployment's `CITYPASS_*`
//!   variables) loads into the service's own configuration type;
//! - the network policies allow exactly the call paths the services make. The one
//!   place the paths come from is the services' configurations as rendered: every
//!   URL in them (upstreams, Redis, PostgreSQL, the OTLP collector) is a path;
//! - kubernetes-validate --strict passes, and catches a misspelt field (k8s-openapi's
//!   types ignore unknown fields, so only a strict schema check can).
//!
//! The tools come from scripts/test (`CITYPASS_TEST_KUBECTL`,
//! `CITYPASS_TEST_KUBERNETES_VALIDATE`, from the tools venv); without them these tests
//! fail, saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use citypass_e2e::manifests::{self, repo, run_tool};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Service};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde_json::Value;

const OVERLAYS: [&str; 2] = ["dev", "prod"];
/// The Kubernetes version the manifests target (k8s-openapi's `v1_35` feature).
const KUBERNETES_VERSION: &str = "1.35.0";
/// The services, each with its gRPC service name (what readiness asks about).
const SERVICES: [(&str, &str); 5] = [
    (
        "identity",
        citypass_proto::v1::identity_service_server::SERVICE_NAME,
    ),
    (
        "issuer",
        citypass_proto::v1::issuer_service_server::SERVICE_NAME,
    ),
    (
        "revocation",
        citypass_proto::v1::revocation_service_server::SERVICE_NAME,
    ),
    (
        "verifier",
        citypass_proto::v1::verifier_service_server::SERVICE_NAME,
    ),
    (
        "payments",
        citypass_proto::v1::payments_service_server::SERVICE_NAME,
    ),
];
const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The user of the distroless image (Dockerfile).
const IMAGE_USER: i64 = 65532;
/// Secret files: read by the owner and the pod's group (fsGroup), nobody else.
const SECRET_MODE: i32 = 0o440;
/// ConfigMaps the operator creates rather than the manifests (docs/operations.md,
/// "Deploy"): the issuer's public key set, written by `citypass keys`.
const MADE_BY_THE_OPERATOR: [&str; 1] = ["verifier-keyset"];
/// Where the store URLs are mounted (k8s/base/*/deployment.yaml, volume `stores`).
const STORES_DIR: &str = "/etc/citypass/stores/";
/// What the operator's `<service>-stores` Secret holds in production (no overlay
/// renders it; docs/operations.md, "Stores"): the managed stores at the ports
/// k8s/components/managed-stores/network-policies.yaml admits.
const OPERATOR_STORES: [(&str, &str); 3] = [
    (
        "database-url",
        "postgres://svc@postgres.citypass.example:5432/db?sslmode=verify-full&sslrootcert=/etc/citypass/tls/ca.crt&sslcert=/etc/citypass/tls/tls.crt&sslkey=/etc/citypass/tls/tls.key",
    ),
    (
        "redis-url",
        "rediss://:password@redis.citypass.example:6380/",
    ),
    (
        "replay-cluster",
        "rediss://:password@redis-0.citypass.example:6380/\nrediss://:password@redis-1.citypass.example:6380/",
    ),
];
/// A store URL's schemes: none may appear in a variable or a ConfigMap.
const STORE_SCHEMES: [&str; 4] = ["postgres://", "postgresql://", "redis://", "rediss://"];

/// One overlay as `kubectl kustomize` renders it.
struct Rendered {
    overlay: &'static str,
    text: String,
    objects: Vec<Value>,
}

fn render(overlay: &'static str) -> Rendered {
    let (text, objects) = manifests::render(overlay);
    Rendered {
        overlay,
        text,
        objects,
    }
}

impl Rendered {
    /// Every object of `kind`, typed.
    fn all<T: DeserializeOwned>(&self, kind: &str) -> Vec<T> {
        self.objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .map(|o| {
                serde_json::from_value(o.clone()).unwrap_or_else(|err| {
                    panic!("{}: {kind} {}: {err}", self.overlay, o["metadata"]["name"])
                })
            })
            .collect()
    }

    fn deployment(&self, name: &str) -> Deployment {
        self.all::<Deployment>("Deployment")
            .into_iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{}: no Deployment {name}", self.overlay))
    }

    fn config_map(&self, name: &str) -> ConfigMap {
        self.all::<ConfigMap>("ConfigMap")
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{}: no ConfigMap {name}", self.overlay))
    }

    fn secret(&self, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == name)
    }

    /// The text of file `file` of the Secret mounted as `volume` in `service`'s pod:
    /// from the rendered Secret (`stringData`), else what the operator puts there
    /// ([`OPERATOR_STORES`]).
    fn secret_file(&self, service: &str, pod: &PodSpec, volume: &str, file: &str) -> String {
        let secret = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == volume)
            .and_then(|v| v.secret.as_ref())
            .and_then(|s| s.secret_name.clone())
            .unwrap_or_else(|| panic!("{}: {service}: volume {volume} is no Secret", self.overlay));
        match self.secret(&secret) {
            Some(object) => {
                assert!(
                    object["data"].is_null(),
                    "{}: Secret {secret}: stringData, so that the tests read it",
                    self.overlay
                );
                object["stringData"][file]
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: Secret {secret} has no {file}", self.overlay))
                    .to_owned()
            }
            None => OPERATOR_STORES
                .iter()
                .find(|(name, _)| *name == file)
                .map(|(_, text)| (*text).to_owned())
                .unwrap_or_else(|| {
                    panic!(
                        "{}: {service}: what does the operator put in {secret}/{file}?",
                        self.overlay
                    )
                }),
        }
    }

    /// The service's configuration as the container sees it: its ConfigMap's
    /// config.yaml with the Deployment's `CITYPASS_*` variables over it.
    fn configuration(&self, service: &str) -> Configuration {
        let deployment = self.deployment(service);
        let pod = pod(&deployment);
        let container = &pod.containers[0];
        let env: Vec<(String, String)> = container
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect();
        let path = env
            .iter()
            .find(|(k, _)| k == "CITYPASS_CONFIG")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| panic!("{service}: no CITYPASS_CONFIG"));
        let (mount, file) = mounted(pod, container, &path)
            .unwrap_or_else(|| panic!("{service}: {path:?} is not mounted"));
        let source = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount)
            .and_then(|v| v.config_map.as_ref())
            .unwrap_or_else(|| panic!("{service}: the configuration is not a ConfigMap"));
        let text = self
            .config_map(&source.name)
            .data
            .and_then(|d| d.get(&file).cloned())
            .unwrap_or_else(|| panic!("{service}: ConfigMap {} has no {file}", source.name));
        let mut tree: Value = serde_saphyr::from_str(&text).expect("config.yaml");
        for (key, value) in &env {
            if key == "CITYPASS_CONFIG" {
                continue;
            }
            let Some(dotted) = key.strip_prefix("CITYPASS_") else {
                continue;
            };
            let path: Vec<String> = dotted.split("__").map(str::to_lowercase).collect();
            set(&mut tree, &path, Value::String(value.clone()));
        }
        // The store URLs: every file the configuration names under STORES_DIR.
        let mut values = Vec::new();
        strings(&tree, &mut values);
        let mut stores = BTreeMap::new();
        for value in values.iter().filter(|v| v.starts_with(STORES_DIR)) {
            let (volume, file) = mounted(pod, container, Path::new(value))
                .unwrap_or_else(|| panic!("{}: {service}: {value} is not mounted", self.overlay));
            let text = self.secret_file(service, pod, &volume, &file);
            stores.insert(value.clone(), text);
        }
        Configuration {
            text,
            env,
            tree,
            stores,
        }
    }
}

/// A service's configuration: the file, the variables, and both merged as a tree;
/// and the store URL files it names (container path -> text).
struct Configuration {
    text: String,
    env: Vec<(String, String)>,
    tree: Value,
    stores: BTreeMap<String, String>,
}

impl Configuration {
    /// Every string of the configuration, and the store URLs of its files.
    fn values(&self) -> Vec<String> {
        let mut values = Vec::new();
        strings(&self.tree, &mut values);
        for text in self.stores.values() {
            values.extend(text.lines().map(str::to_owned));
        }
        values
    }
}

fn set(tree: &mut Value, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *tree = value;
        return;
    };
    if !tree.is_object() {
        *tree = Value::Object(Default::default());
    }
    let child = tree
        .as_object_mut()
        .expect("an object")
        .entry(first.clone())
        .or_insert(Value::Null);
    set(child, rest, value);
}

fn strings(tree: &Value, out: &mut Vec<String>) {
    match tree {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn pod(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod template")
}

fn name(labels: Option<&BTreeMap<String, String>>) -> Option<&str> {
    labels.and_then(|l| l.get(NAME_LABEL)).map(String::as_str)
}

fn app(deployment: &Deployment) -> String {
    name(
        deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref()),
    )
    .expect("pods carry app.kubernetes.io/name")
    .to_owned()
}

fn is_service(deployment: &Deployment) -> bool {
    deployment
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/part-of"))
        .is_some_and(|p| p == "citypass")
}

/// The volume and file name under which `path` is mounted in `container`.
fn mounted(pod: &PodSpec, container: &Container, path: &Path) -> Option<(String, String)> {
    container.volume_mounts.iter().flatten().find_map(|m| {
        let rest = path.strip_prefix(&m.mount_path).ok()?;
        let file = rest.to_str()?.to_owned();
        let _ = pod;
        (!file.is_empty() && !file.contains('/')).then(|| (m.name.clone(), file))
    })
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

#[test]
fn every_container_has_probes_resources_and_the_restricted_context() {
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        let deployments: Vec<Deployment> = rendered.all("Deployment");
        assert!(deployments.iter().filter(|d| is_service(d)).count() == SERVICES.len());
        for deployment in &deployments {
            let who = format!("{overlay}: {}", app(deployment));
            let pod = pod(deployment);
            assert_eq!(pod.automount_service_account_token, Some(false), "{who}");
            let pod_context = pod
                .security_context
                .as_ref()
                .expect("a pod securityContext");
            assert_eq!(pod_context.run_as_non_root, Some(true), "{who}");
            assert_eq!(
                pod_context
                    .seccomp_profile
                    .as_ref()
                    .map(|s| s.type_.as_str()),
                Some("RuntimeDefault"),
                "{who}"
            );
            for container in pod
                .containers
                .iter()
                .chain(pod.init_containers.iter().flatten())
            {
                for (kind, probe) in [
                    ("startup", &container.startup_probe),
                    ("readiness", &container.readiness_probe),
                    ("liveness", &container.liveness_probe),
                ] {
                    assert!(probe.is_some(), "{who}: no {kind} probe");
                }
                let resources = container.resources.as_ref().expect("resources");
                let requests = resources.requests.clone().unwrap_or_default();
                assert!(
                    requests.contains_key("cpu") && requests.contains_key("memory"),
                    "{who}: cpu and memory requests"
                );
                assert!(
                    resources
                        .limits
                        .as_ref()
                        .is_some_and(|l| l.contains_key("memory")),
                    "{who}: a memory limit"
                );
                let context = container
                    .security_context
                    .as_ref()
                    .expect("securityContext");
                assert_eq!(context.allow_privilege_escalation, Some(false), "{who}");
                assert_eq!(context.read_only_root_filesystem, Some(true), "{who}");
                assert_eq!(context.run_as_non_root, Some(true), "{who}");
                assert_eq!(context.privileged, None, "{who}");
                let capabilities = context.capabilities.as_ref().expect("capabilities");
                assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_owned()][..]));
                assert!(capabilities.add.is_none(), "{who}: no capability added");
                assert_eq!(
                    context.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
                    Some("RuntimeDefault"),
                    "{who}"
                );
            }
        }
    }
}

#[test]
fn the_services_probe_their_probe_listener_and_outlive_their_drain() {
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        for (service, grpc_name) in SERVICES {
            let who = format!("{overlay}: {service}");
            let deployment = rendered.deployment(service);
            let pod = pod(&deployment);
            let container = &pod.containers[0];
            let config = rendered.configuration(service);
            let health_listen: std::net::SocketAddr = config.tree["server"]["health_listen"]
                .as_str()
                .unwrap_or_else(|| panic!("{who}: server.health_listen is not set"))
                .parse()
                .expect("server.health_listen is an address");
            let probe_port = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some("probes"))
                .map(|p| p.container_port)
                .unwrap_or_else(|| panic!("{who}: no container port named probes"));
            assert_eq!(i32::from(health_listen.port()), probe_port, "{who}");
            for (kind, probe, service_name) in [
                ("startup", &container.startup_probe, ""),
                ("readiness", &container.readiness_probe, grpc_name),
                ("liveness", &container.liveness_probe, ""),
            ] {
                let grpc = probe
                    .as_ref()
                    .and_then(|p| p.grpc.as_ref())
                    .unwrap_or_else(|| panic!("{who}: the {kind} probe is not gRPC"));
                assert_eq!(grpc.port, probe_port, "{who}: {kind}");
                assert_eq!(
                    grpc.service.as_deref().unwrap_or(""),
                    service_name,
                    "{who}: {kind}"
                );
            }
            let context = container
                .security_context
                .as_ref()
                .expect("securityContext");
            assert_eq!(context.run_as_user, Some(IMAGE_USER), "{who}");
            assert_eq!(
                pod.security_context.as_ref().and_then(|c| c.fs_group),
                Some(IMAGE_USER),
                "{who}: fsGroup, so that Secret files are readable"
            );

            // SIGTERM comes after preStop; then the drain; the grace period covers both.
            let pre_stop = container
                .lifecycle
                .as_ref()
                .and_then(|l| l.pre_stop.as_ref())
                .and_then(|h| h.sleep.as_ref())
                .map(|s| s.seconds)
                .unwrap_or_else(|| panic!("{who}: a preStop sleep"));
            assert!(pre_stop >= 5, "{who}: preStop covers endpoint removal");
            let seconds = |key: &str| {
                let text = config.tree["server"][key].as_str().unwrap_or("0s");
                humantime_seconds(text)
            };
            let drain = seconds("shutdown_delay") + seconds("shutdown_drain_timeout");
            let grace = pod.termination_grace_period_seconds.unwrap_or(30);
            assert!(
                grace > pre_stop + drain,
                "{who}: grace {grace}s <= preStop {pre_stop}s + drain {drain}s"
            );
        }
    }
}

/// Whole seconds of a duration as the configuration writes it (`10s`, `500ms`, `1m`).
fn humantime_seconds(text: &str) -> i64 {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let value: i64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("a duration: {text}"));
    match &text[digits.len()..] {
        "ms" => (value + 999) / 1000,
        "s" => value,
        "m" => value * 60,
        other => panic!("unexpected unit {other:?} in {text}"),
    }
}

#[test]
fn every_service_image_is_a_skaffold_artifact() {
    let skaffold: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("skaffold.yaml")).expect("skaffold.yaml"),
    )
    .expect("skaffold.yaml is YAML");
    let artifacts: BTreeSet<String> = skaffold["build"]["artifacts"]
        .as_array()
        .expect("build.artifacts")
        .iter()
        .map(|a| a["image"].as_str().expect("an image").to_owned())
        .collect();
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        let mut seen = BTreeSet::new();
        for deployment in rendered.all::<Deployment>("Deployment") {
            if !is_service(&deployment) {
                continue;
            }
            for container in &pod(&deployment).containers {
                let image = container.image.as_deref().expect("an image");
                // skaffold swaps in what it built by repository name, whatever the tag.
                let repository = image.split('@').next().unwrap_or(image);
                let repository = match repository.rsplit_once(':') {
                    Some((name, tag)) if !tag.contains('/') => name,
                    _ => repository,
                };
                assert!(
                    artifacts.contains(repository),
                    "{overlay}: image {image} is not a skaffold artifact ({artifacts:?})"
                );
                seen.insert(repository.to_owned());
            }
        }
        assert_eq!(seen, artifacts, "{overlay}: every artifact is deployed");
    }
}

#[test]
fn every_service_targets_a_named_container_port_that_exists() {
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        let deployments: Vec<Deployment> = rendered.all("Deployment");
        for service in rendered.all::<Service>("Service") {
            let who = format!(
                "{overlay}: Service {}",
                service.metadata.name.clone().unwrap_or_default()
            );
            let spec = service.spec.as_ref().expect("a spec");
            let selector = spec.selector.clone().unwrap_or_default();
            let selected: Vec<&Deployment> = deployments
                .iter()
                .filter(|d| selects(&selector, &pod_labels(d)))
                .collect();
            assert!(!selected.is_empty(), "{who}: selects no pod");
            for port in spec.ports.iter().flatten() {
                let Some(IntOrString::String(target)) = &port.target_port else {
                    panic!("{who}: port {} targets no named port", port.port);
                };
                for deployment in &selected {
                    let exists = pod(deployment).containers.iter().any(|c| {
                        c.ports
                            .iter()
                            .flatten()
                            .any(|p| p.name.as_deref() == Some(target.as_str()))
                    });
                    assert!(exists, "{who}: no container port named {target}");
                }
            }
        }
    }
}

#[test]
fn secrets_are_read_only_files_and_every_configured_path_is_mounted() {
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        for deployment in rendered.all::<Deployment>("Deployment") {
            let who = format!("{overlay}: {}", app(&deployment));
            let pod = pod(&deployment);
            let secret_volumes: BTreeSet<&str> = pod
                .volumes
                .iter()
                .flatten()
                .filter_map(|v| {
                    v.secret.as_ref().map(|s| {
                        assert_eq!(s.default_mode, Some(SECRET_MODE), "{who}: {}", v.name);
                        v.name.as_str()
                    })
                })
                .collect();
            if !secret_volumes.is_empty() {
                assert!(
                    pod.security_context
                        .as_ref()
                        .and_then(|c| c.fs_group)
                        .is_some(),
                    "{who}: Secret files are root's: the pod needs an fsGroup"
                );
            }
            for container in &pod.containers {
                assert!(container.env_from.is_none(), "{who}: envFrom");
                for env in container.env.iter().flatten() {
                    assert!(
                        env.value_from
                            .as_ref()
                            .is_none_or(|f| f.secret_key_ref.is_none()),
                        "{who}: {} reads a Secret into the environment",
                        env.name
                    );
                }
                for mount in container.volume_mounts.iter().flatten() {
                    let is_config = pod
                        .volumes
                        .iter()
                        .flatten()
                        .any(|v| v.name == mount.name && v.config_map.is_some());
                    if secret_volumes.contains(mount.name.as_str()) || is_config {
                        assert_eq!(mount.read_only, Some(true), "{who}: {}", mount.name);
                        // A subPath mount never sees an update: rotation would need a restart.
                        assert!(mount.sub_path.is_none(), "{who}: {} by subPath", mount.name);
                    }
                }
            }
        }
        for (service, _) in SERVICES {
            let who = format!("{overlay}: {service}");
            let deployment = rendered.deployment(service);
            let pod = pod(&deployment);
            let container = &pod.containers[0];
            let config = rendered.configuration(service);
            for value in config
                .values()
                .iter()
                .flat_map(|v| v.split(['?', '&', '=', ',']))
            {
                if !value.starts_with("/etc/citypass/") {
                    continue;
                }
                let (volume, file) = mounted(pod, container, Path::new(value))
                    .unwrap_or_else(|| panic!("{who}: {value} is not under a mounted volume"));
                let source = pod
                    .volumes
                    .iter()
                    .flatten()
                    .find(|v| v.name == volume)
                    .expect("volume");
                if let Some(config_map) = &source.config_map {
                    if MADE_BY_THE_OPERATOR.contains(&config_map.name.as_str()) {
                        continue;
                    }
                    let data = rendered
                        .config_map(&config_map.name)
                        .data
                        .unwrap_or_default();
                    assert!(
                        data.contains_key(&file),
                        "{who}: {value}: ConfigMap {} has no {file}",
                        config_map.name
                    );
                } else {
                    assert!(
                        source.secret.is_some(),
                        "{who}: {value} is neither ConfigMap nor Secret"
                    );
                }
            }
        }
    }
}

#[test]
fn store_urls_come_from_secret_files_never_variables_or_config_maps() {
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        for (service, _) in SERVICES {
            let who = format!("{overlay}: {service}");
            let deployment = rendered.deployment(service);
            let pod = pod(&deployment);
            let container = &pod.containers[0];
            let config = rendered.configuration(service);
            // Each store of the configuration is named by a file, never inline.
            let mut files = BTreeSet::new();
            for store in ["database", "redis"] {
                let node = &config.tree[store];
                if node.is_null() {
                    continue;
                }
                assert!(node["url"].is_null(), "{who}: {store}.url inline");
                files.insert(
                    node["url_file"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{who}: {store}.url_file"))
                        .to_owned(),
                );
            }
            let cluster = &config.tree["replay_cluster"];
            match cluster["urls_file"].as_str() {
                Some(file) => {
                    files.insert(file.to_owned());
                }
                None => assert!(
                    cluster.is_null() || cluster.as_array().is_some_and(Vec::is_empty),
                    "{who}: replay_cluster inline: {cluster}"
                ),
            }
            if service == "verifier" && overlay == "prod" {
                assert!(!cluster["urls_file"].is_null(), "{who}: no replay cluster");
            }
            assert!(!files.is_empty(), "{who}: no store");
            assert_eq!(
                files,
                config.stores.keys().cloned().collect::<BTreeSet<_>>(),
                "{who}: every store URL file is under {STORES_DIR}"
            );
            for file in &files {
                let (volume, _) = mounted(pod, container, Path::new(file))
                    .unwrap_or_else(|| panic!("{who}: {file} is not mounted"));
                let secret = pod
                    .volumes
                    .iter()
                    .flatten()
                    .find(|v| v.name == volume)
                    .and_then(|v| v.secret.as_ref())
                    .unwrap_or_else(|| panic!("{who}: {file} is not from a Secret"));
                let name = format!("{service}-stores");
                assert_eq!(secret.secret_name.as_deref(), Some(name.as_str()), "{who}");
                // Made by the dev-stores component; in production, by the operator.
                assert_eq!(
                    rendered.secret(&name).is_some(),
                    overlay == "dev",
                    "{who}: Secret {name} rendered"
                );
            }
            for text in config.stores.values() {
                assert!(
                    text.lines()
                        .all(|url| STORE_SCHEMES.iter().any(|s| url.starts_with(s))),
                    "{who}: a store file holds URLs only"
                );
            }
            // No store URL in a variable or the ConfigMap.
            for (name, value) in &config.env {
                assert!(
                    !STORE_SCHEMES.iter().any(|s| value.contains(s)),
                    "{who}: {name} holds a store URL"
                );
            }
            assert!(
                !STORE_SCHEMES.iter().any(|s| config.text.contains(s)),
                "{who}: the ConfigMap holds a store URL"
            );
        }
    }
}

/// Every upstream of a configuration (an object with an `https://` or `http://`
/// `url`): its path in the tree and the object.
fn upstreams<'a>(tree: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    match tree {
        Value::Object(map) => {
            if map
                .get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"))
            {
                out.push((at.clone(), tree));
            }
            for (key, value) in map {
                upstreams(value, format!("{at}.{key}"), out);
            }
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| upstreams(v, format!("{at}[{i}]"), out)),
        _ => {}
    }
}

#[test]
fn upstreams_to_headless_services_spread_their_calls() {
    // The callees called per request, whose callers must not be pinned to one pod.
    const PER_CALL: [&str; 2] = ["identity", "payments"];
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        let services: Vec<Service> = rendered.all("Service");
        let deployments: Vec<Deployment> = rendered.all("Deployment");
        let mut seen = 0;
        for (service, _) in SERVICES {
            let config = rendered.configuration(service);
            let mut found = Vec::new();
            upstreams(&config.tree, String::new(), &mut found);
            for (at, upstream) in found {
                let who = format!("{overlay}: {service}{at}");
                let url = upstream["url"].as_str().expect("a url");
                let (host, _) = host_port(url).expect("host and port");
                let Some(target) = services
                    .iter()
                    .find(|s| s.metadata.name.as_deref() == Some(host.as_str()))
                else {
                    continue;
                };
                let spec = target.spec.as_ref().expect("spec");
                let headless = spec.cluster_ip.as_deref() == Some("None");
                let refresh = upstream["dns_refresh"].as_str();
                // A ClusterIP name resolves to one address: spreading needs the pods'.
                assert_eq!(
                    refresh.is_some(),
                    headless,
                    "{who}: {url} with dns_refresh {refresh:?}"
                );
                let selector = spec.selector.clone().unwrap_or_default();
                let callee = deployments
                    .iter()
                    .find(|d| selects(&selector, &pod_labels(d)))
                    .map(app)
                    .unwrap_or_else(|| panic!("{who}: {host} selects no pod"));
                if PER_CALL.contains(&callee.as_str()) {
                    assert!(headless, "{who}: {callee} through a ClusterIP Service");
                    seen += 1;
                }
            }
        }
        // issuer, payments, revocation and the verifier to identity; the verifier to payments.
        assert_eq!(seen, 5, "{overlay}: the per-call paths");
    }
}

#[test]
fn every_configuration_loads_into_its_service() {
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        for (service, _) in SERVICES {
            let config = rendered.configuration(service);
            let dir = tempfile::tempdir().expect("a temporary directory");
            // The store URL files (read when the configuration loads) under the
            // temporary directory, and the paths that name them with them.
            let stores = dir.path().join("stores");
            std::fs::create_dir(&stores).expect("the stores directory");
            for (path, text) in &config.stores {
                let file = path.strip_prefix(STORES_DIR).expect("under the stores");
                std::fs::write(stores.join(file), text).expect("a store URL file");
            }
            let moved = |text: &str| text.replace(STORES_DIR, &format!("{}/", stores.display()));
            let path = dir.path().join("config.yaml");
            std::fs::write(&path, moved(&config.text)).expect("write config.yaml");
            let vars: Vec<(String, String)> = config
                .env
                .iter()
                .filter(|(k, _)| k != "CITYPASS_CONFIG")
                .map(|(k, v)| (k.clone(), moved(v)))
                .collect();
            use citypass_runtime::config::load_from;
            let loaded = match service {
                "identity" => load_from::<citypass_identity::IdentityConfig, _, _, _>(
                    Some(&path),
                    "CITYPASS",
                    vars,
                )
                .map(drop),
                "issuer" => {
                    load_from::<citypass_issuer::Config, _, _, _>(Some(&path), "CITYPASS", vars)
                        .map(drop)
                }
                "revocation" => load_from::<citypass_revocation_service::Config, _, _, _>(
                    Some(&path),
                    "CITYPASS",
                    vars,
                )
                .map(drop),
                "verifier" => {
                    load_from::<citypass_verifier::Config, _, _, _>(Some(&path), "CITYPASS", vars)
                        .map(drop)
                }
                "payments" => {
                    load_from::<citypass_payments::Config, _, _, _>(Some(&path), "CITYPASS", vars)
                        .map(drop)
                }
                other => panic!("unknown service {other}"),
            };
            if let Err(err) = loaded {
                panic!("{overlay}: {service}'s configuration does not load: {err}");
            }
        }
    }
}

#[test]
fn every_deployment_with_replicas_has_a_disruption_budget_and_the_hot_ones_scale() {
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        let budgets: Vec<PodDisruptionBudget> = rendered.all("PodDisruptionBudget");
        let autoscalers: Vec<HorizontalPodAutoscaler> = rendered.all("HorizontalPodAutoscaler");
        for deployment in rendered.all::<Deployment>("Deployment") {
            let who = format!("{overlay}: {}", app(&deployment));
            let labels = pod_labels(&deployment);
            let replicas = deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1);
            let covered = budgets.iter().any(|b| {
                b.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .and_then(|s| s.match_labels.as_ref())
                    .is_some_and(|m| selects(m, &labels))
            });
            // One replica with a budget would block every node drain.
            assert_eq!(
                covered,
                replicas > 1,
                "{who}: {replicas} replicas, budget {covered}"
            );
        }
        if overlay == "prod" {
            for service in ["verifier", "issuer"] {
                let scaler = autoscalers
                    .iter()
                    .find(|h| {
                        h.spec
                            .as_ref()
                            .is_some_and(|s| s.scale_target_ref.name == service)
                    })
                    .unwrap_or_else(|| panic!("prod: no autoscaler for {service}"));
                let min = scaler
                    .spec
                    .as_ref()
                    .and_then(|s| s.min_replicas)
                    .unwrap_or(1);
                assert!(min >= 2, "prod: {service} scales down to {min}");
            }
        }
    }
}

/// Where a network path leads: pods of the namespace by name, or outside by address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Pod(String),
    Outside,
}

type Path3 = (String, End, i32);

fn label_name(selector: Option<&LabelSelector>) -> Option<String> {
    let selector = selector?;
    assert!(selector.match_expressions.is_none(), "match by labels only");
    let labels = selector.match_labels.as_ref()?;
    assert_eq!(labels.len(), 1, "select by {NAME_LABEL} alone: {labels:?}");
    labels.get(NAME_LABEL).cloned()
}

fn port_numbers(ports: Option<&Vec<NetworkPolicyPort>>, who: &str) -> Vec<i32> {
    let ports = ports.unwrap_or_else(|| panic!("{who}: a rule without ports allows every port"));
    assert!(!ports.is_empty(), "{who}: a rule without ports");
    ports
        .iter()
        .map(|p| match &p.port {
            Some(IntOrString::Int(n)) => *n,
            other => panic!("{who}: ports by number: {other:?}"),
        })
        .collect()
}

/// A peer outside the namespace's pods: the namespaces admitted by name.
fn namespace_of(peer: &NetworkPolicyPeer) -> Option<String> {
    peer.namespace_selector.as_ref().map(|s| {
        s.match_labels
            .as_ref()
            .and_then(|m| m.get("kubernetes.io/metadata.name"))
            .cloned()
            .expect("namespaces selected by kubernetes.io/metadata.name")
    })
}

/// A URL's host and port (`https://identity:50051`, `rediss://:pw@redis:6380/`).
fn host_port(url: &str) -> Option<(String, i32)> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        "redis" => 6379,
        "rediss" => 6380,
        "postgres" | "postgresql" => 5432,
        _ => return None,
    };
    let authority = rest.split(['/', '?']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    Some(match authority.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().ok()?),
        None => (authority.to_owned(), default),
    })
}

#[test]
fn network_policies_allow_exactly_the_call_paths_of_the_configurations() {
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        let deployments: Vec<Deployment> = rendered.all("Deployment");
        let services: Vec<Service> = rendered.all("Service");
        let apps: BTreeSet<String> = deployments.iter().map(app).collect();

        // The paths the services make: every URL in their configurations.
        let mut expected: BTreeSet<Path3> = BTreeSet::new();
        for (service, _) in SERVICES {
            let config = rendered.configuration(service);
            for url in config.values().iter().flat_map(|v| v.split(',')) {
                let Some((host, port)) = host_port(url.trim()) else {
                    continue;
                };
                let target = services
                    .iter()
                    .find(|s| s.metadata.name.as_deref() == Some(host.as_str()));
                let path = match target {
                    None => (service.to_owned(), End::Outside, port),
                    Some(target) => {
                        let spec = target.spec.as_ref().expect("spec");
                        let target_port = spec
                            .ports
                            .iter()
                            .flatten()
                            .find(|p| p.port == port)
                            .and_then(|p| p.target_port.clone())
                            .unwrap_or_else(|| panic!("{overlay}: {service} dials {host}:{port}, which the Service does not expose"));
                        let selector = spec.selector.clone().unwrap_or_default();
                        let callee = deployments
                            .iter()
                            .find(|d| selects(&selector, &pod_labels(d)))
                            .unwrap_or_else(|| panic!("{overlay}: Service {host} selects no pod"));
                        let IntOrString::String(port_name) = target_port else {
                            panic!("{overlay}: Service {host} targets a number");
                        };
                        let number = pod(callee)
                            .containers
                            .iter()
                            .flat_map(|c| c.ports.iter().flatten())
                            .find(|p| p.name.as_deref() == Some(port_name.as_str()))
                            .map(|p| p.container_port)
                            .expect("the named port");
                        (service.to_owned(), End::Pod(app(callee)), number)
                    }
                };
                expected.insert(path);
            }
        }
        assert!(
            expected.len() >= 15,
            "{overlay}: the configurations name too few paths: {expected:?}"
        );

        // What the policies allow.
        let mut egress: BTreeSet<Path3> = BTreeSet::new();
        let mut ingress: BTreeSet<Path3> = BTreeSet::new();
        let mut from_namespaces: BTreeSet<(String, String, i32)> = BTreeSet::new();
        let mut to_namespaces: BTreeSet<(String, i32)> = BTreeSet::new();
        let mut deny_all = false;
        for policy in rendered.all::<NetworkPolicy>("NetworkPolicy") {
            let who = format!(
                "{overlay}: NetworkPolicy {}",
                policy.metadata.name.clone().unwrap_or_default()
            );
            let spec = policy.spec.as_ref().expect("spec");
            let types = spec.policy_types.clone().unwrap_or_default();
            let selected = label_name(spec.pod_selector.as_ref());
            let Some(selected) = selected else {
                // Only the namespace-wide policies select every pod: deny all, and DNS.
                let everything = spec
                    .pod_selector
                    .as_ref()
                    .is_none_or(|s| s.match_labels.as_ref().is_none_or(BTreeMap::is_empty));
                assert!(everything, "{who}: selects no pod by name");
                if spec.ingress.is_none() && spec.egress.is_none() {
                    deny_all |= types == ["Ingress", "Egress"];
                }
                for rule in spec.egress.iter().flatten() {
                    for port in port_numbers(rule.ports.as_ref(), &who) {
                        for peer in rule.to.iter().flatten() {
                            let ns = namespace_of(peer).unwrap_or_else(|| {
                                panic!("{who}: a namespace-wide egress to pods")
                            });
                            to_namespaces.insert((ns, port));
                        }
                    }
                }
                assert!(spec.ingress.is_none(), "{who}: namespace-wide ingress");
                continue;
            };
            assert!(
                apps.contains(&selected),
                "{who}: selects {selected}, which no Deployment runs"
            );
            for rule in spec.ingress.iter().flatten() {
                let peers = rule
                    .from
                    .as_ref()
                    .filter(|f| !f.is_empty())
                    .unwrap_or_else(|| panic!("{who}: ingress from anywhere"));
                for port in port_numbers(rule.ports.as_ref(), &who) {
                    for peer in peers {
                        if let Some(ns) = namespace_of(peer) {
                            assert!(peer.pod_selector.is_none(), "{who}");
                            from_namespaces.insert((ns, selected.clone(), port));
                        } else if let Some(source) = label_name(peer.pod_selector.as_ref()) {
                            ingress.insert((source, End::Pod(selected.clone()), port));
                        } else {
                            panic!("{who}: ingress from {peer:?}");
                        }
                    }
                }
            }
            for rule in spec.egress.iter().flatten() {
                let peers = rule
                    .to
                    .as_ref()
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| panic!("{who}: egress to anywhere"));
                for port in port_numbers(rule.ports.as_ref(), &who) {
                    for peer in peers {
                        if peer.ip_block.is_some() {
                            egress.insert((selected.clone(), End::Outside, port));
                        } else if let Some(target) = label_name(peer.pod_selector.as_ref()) {
                            assert!(peer.namespace_selector.is_none(), "{who}");
                            egress.insert((selected.clone(), End::Pod(target), port));
                        } else {
                            panic!("{who}: egress to {peer:?}");
                        }
                    }
                }
            }
        }
        assert!(
            deny_all,
            "{overlay}: no default-deny policy for ingress and egress"
        );
        assert_eq!(
            egress, expected,
            "{overlay}: egress allowed != the configurations' paths"
        );
        let inside: BTreeSet<Path3> = expected
            .iter()
            .filter(|p| p.1 != End::Outside)
            .cloned()
            .collect();
        assert_eq!(
            ingress, inside,
            "{overlay}: ingress allowed != the configurations' paths"
        );
        // Outside the service paths: DNS, the edge to each service's port, the scraper.
        assert_eq!(
            to_namespaces,
            BTreeSet::from([("kube-system".to_owned(), 53)]),
            "{overlay}: namespace-wide egress is DNS only"
        );
        let mut outside = BTreeSet::new();
        for (service, _) in SERVICES {
            let port = pod(&rendered.deployment(service)).containers[0]
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some("grpc"))
                .map(|p| p.container_port)
                .expect("a grpc port");
            outside.insert(("citypass-edge".to_owned(), service.to_owned(), port));
            outside.insert(("monitoring".to_owned(), service.to_owned(), 9464));
        }
        assert_eq!(
            from_namespaces, outside,
            "{overlay}: ingress from other namespaces"
        );
    }
}

#[test]
fn strict_validation_passes_and_catches_a_misspelt_field() {
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let validate = |text: &str, name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write the manifests");
            run_tool(
                "CITYPASS_TEST_KUBERNETES_VALIDATE",
                "kubernetes-validate",
                &[
                    "--strict".as_ref(),
                    "--no-warn".as_ref(),
                    "--quiet".as_ref(),
                    "-k".as_ref(),
                    KUBERNETES_VERSION.as_ref(),
                    path.as_os_str(),
                ],
            )
        };
        let good = validate(&rendered.text, "good.yaml");
        assert!(
            good.status.success(),
            "{overlay}: {}",
            String::from_utf8_lossy(&good.stdout)
        );
        // k8s-openapi reads this without a word, and the pod would run with a writable
        // root filesystem.
        let typo = rendered.text.replacen(
            "readOnlyRootFilesystem: true",
            "readOnlyRootFileSystem: true",
            1,
        );
        assert_ne!(typo, rendered.text);
        let misspelt: Vec<Deployment> = serde_saphyr::from_multiple::<Value>(&typo)
            .expect("YAML")
            .into_iter()
            .filter(|o| o["kind"] == "Deployment")
            .map(|o| serde_json::from_value(o).expect("k8s-openapi accepts the typo"))
            .collect();
        assert!(!misspelt.is_empty());
        let bad = validate(&typo, "typo.yaml");
        let said = String::from_utf8_lossy(&bad.stdout);
        assert!(!bad.status.success(), "{overlay}: the typo passed: {said}");
        assert!(said.contains("readOnlyRootFileSystem"), "{overlay}: {said}");
    }
}
