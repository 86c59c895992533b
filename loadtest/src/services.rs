//! The five services as separate processes, each its own binary as its container runs
//! it (`--services DIR`): identity, the revocation service, the issuer, payments and
//! the verifier, started in that order (each after those it calls) by the launcher the
//! launch test uses (`citypass_stack::launch`), from the base manifests' Deployments
//! and configurations (`k8s/base/<service>/`, built into this tool) with the dev
//! overlay's `CITYPASS_ENVIRONMENT=dev`, on real stores: three fresh databases on the
//! PostgreSQL server at `--postgres` (identity, revocation, payments) and the Redis at
//! `--redis` (replay marks, nonces, the revocation stream the others tail), under key
//! names of this run's own.
//!
//! What differs from a cluster, and only that: the files live under a temporary root,
//! the listeners are loopback ports, the Secrets are fresh dev keys
//! ([`DevSecrets`]), the gate registry is the sample one `citypass dev` writes (its bus
//! reader has a fare; the manifests' sample bus gate is on a route the fare table
//! lacks), payments charges through the sandbox provider (dev only), and identity takes
//! every enrolment from the generator's one address (its cap per address raised), as in
//! `citypass dev`; `--service-env` changes any other setting, and the report says so. Each process's CPU time, peak memory and time from spawn to its first
//! SERVING startup probe are its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use citypass_stack::launch::{
    DevSecrets, Launched, Launcher, ServicePlan, Source, Volume, binary_in,
};
use citypass_token::{SecureRandom as _, SystemRandom};
use serde_json::Value;
use sqlx::Connection as _;

use crate::error::LoadError;
use crate::process::Pid;

/// How long a service may take to pass its startup probe (a debug build on a loaded
/// machine is slow; a release one takes well under a second).
pub const START_DEADLINE: Duration = Duration::from_secs(120);
/// How long a service may take to stop after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A service of the base manifests: its name, Deployment and configuration.
struct Base {
    service: &'static str,
    deployment: &'static str,
    config: &'static str,
    /// Whether it keeps its data in PostgreSQL.
    database: bool,
}

/// In start order: each after those it calls.
const BASE: [Base; 5] = [
    Base {
        service: "identity",
        deployment: include_str!("../../k8s/base/identity/deployment.yaml"),
        config: include_str!("../../k8s/base/identity/config.yaml"),
        database: true,
    },
    Base {
        service: "revocation",
        deployment: include_str!("../../k8s/base/revocation/deployment.yaml"),
        config: include_str!("../../k8s/base/revocation/config.yaml"),
        database: true,
    },
    Base {
        service: "issuer",
        deployment: include_str!("../../k8s/base/issuer/deployment.yaml"),
        config: include_str!("../../k8s/base/issuer/config.yaml"),
        database: false,
    },
    Base {
        service: "payments",
        deployment: include_str!("../../k8s/base/payments/deployment.yaml"),
        config: include_str!("../../k8s/base/payments/config.yaml"),
        database: true,
    },
    Base {
        service: "verifier",
        deployment: include_str!("../../k8s/base/verifier/deployment.yaml"),
        config: include_str!("../../k8s/base/verifier/config.yaml"),
        database: false,
    },
];

/// Payments' fare table (the `payments-fares` ConfigMap).
const FARES: &str = include_str!("../../k8s/base/payments/fares.yaml");

/// Where the services run and what they run on.
#[derive(Debug, Clone)]
pub struct ServicesSpec {
    /// The directory of the service binaries (`citypass-identity`, …).
    pub bin_dir: PathBuf,
    /// A PostgreSQL URL whose user may create databases (one per service is made).
    pub postgres: String,
    /// The Redis URL.
    pub redis: String,
    /// Settings to change, as `(service, CITYPASS_… variable, value)`: none for the
    /// configuration the manifests give (e.g. longer scene deadlines for a debug build
    /// on a loaded machine).
    pub env: Vec<(String, String, String)>,
}

/// A `--service-env` argument, `SERVICE:CITYPASS_NAME=VALUE`.
pub fn parse_service_env(text: &str) -> Result<(String, String, String), String> {
    let (service, rest) = text
        .split_once(':')
        .ok_or("expected SERVICE:CITYPASS_NAME=VALUE")?;
    let (name, value) = rest
        .split_once('=')
        .ok_or("expected SERVICE:CITYPASS_NAME=VALUE")?;
    if !BASE.iter().any(|b| b.service == service) {
        return Err(format!(
            "{service} is not one of identity, revocation, issuer, payments, verifier"
        ));
    }
    if !name.starts_with("CITYPASS_") {
        return Err(format!(
            "{name}: a service setting's variable starts with CITYPASS_"
        ));
    }
    Ok((service.to_owned(), name.to_owned(), value.to_owned()))
}

/// One started service and its time to ready.
pub struct Running {
    pub launched: Launched,
    /// From spawn to its first SERVING startup probe.
    pub ready_after: Duration,
}

/// The five services, running.
pub struct Services {
    /// In start order.
    pub running: Vec<Running>,
    /// The CA, the PKI directory and the files.
    pub launcher: Launcher,
    /// The keys the services were given (the issuer's ring signs the load's codes).
    pub secrets: DevSecrets,
    _root: tempfile::TempDir,
}

fn failed(name: &str, problem: impl std::fmt::Display) -> LoadError {
    LoadError::Child {
        name: name.to_owned(),
        problem: problem.to_string(),
    }
}

/// `url` with its database replaced by `name` (the query, e.g. the TLS settings, kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rsplit_once('/') {
        Some((server, _)) if server.ends_with('/') => base,
        Some((server, _)) => server,
        None => base,
    };
    let base = base.trim_end_matches('/');
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A lower-case random tag for this run's names (databases, Redis keys).
fn run_tag() -> Result<String, LoadError> {
    let mut bytes = [0u8; 6];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| failed("services", "no system randomness"))?;
    Ok(hex::encode(bytes))
}

/// Creates `name` on the server at `postgres` and returns its URL.
async fn create_database(postgres: &str, name: &str) -> Result<String, LoadError> {
    let mut admin = sqlx::PgConnection::connect(postgres)
        .await
        .map_err(|e| failed("PostgreSQL", format!("cannot connect to --postgres: {e}")))?;
    // `name` is made here of [a-z0-9_] only.
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .map_err(|e| failed("PostgreSQL", format!("CREATE DATABASE {name}: {e}")))?;
    let _ = admin.close().await;
    Ok(with_database(postgres, name))
}

impl Services {
    /// Starts the five services (see the module documentation) and waits for each to
    /// pass its startup probe before starting the next.
    pub async fn start(spec: &ServicesSpec) -> Result<Services, LoadError> {
        let root = tempfile::tempdir().map_err(|e| failed("services", e))?;
        let mut launcher = Launcher::new(root.path()).map_err(|e| failed("services", e))?;
        let secrets = DevSecrets::generate().map_err(|e| failed("services", e))?;
        let tag = run_tag()?;
        let stream = format!("citypass:load:{tag}:revocation:log");
        let mut running = Vec::new();
        for base in &BASE {
            let service = base.service;
            let deployment: Value = serde_saphyr::from_str(base.deployment)
                .map_err(|e| failed(service, format!("its base Deployment: {e}")))?;
            let mut env = vec![("CITYPASS_ENVIRONMENT".to_owned(), "dev".to_owned())];
            // The store URLs, as the operator's `<service>-stores` Secret holds them.
            let mut stores = Vec::new();
            if base.database {
                let url = create_database(&spec.postgres, &format!("load_{tag}_{service}")).await?;
                stores.push(("database-url".to_owned(), url));
            }
            if service != "identity" {
                stores.push(("redis-url".to_owned(), spec.redis.clone()));
            }
            let stores_secret = format!("{service}-stores");
            if service == "revocation" {
                env.push(("CITYPASS_STREAM_KEY".to_owned(), stream.clone()));
            } else if service != "identity" {
                env.push((
                    "CITYPASS_REDIS_KEY_PREFIX".to_owned(),
                    format!("citypass:load:{tag}:{service}:"),
                ));
                env.push(("CITYPASS_REVOCATION__STREAM_KEY".to_owned(), stream.clone()));
            }
            if service == "identity" {
                // Every rider and citizen enrols from the generator's one address (the
                // dev stack allows the same).
                env.push((
                    "CITYPASS_ENROL_ATTEMPTS_PER_ADDRESS".to_owned(),
                    "100000".to_owned(),
                ));
            }
            if service == "payments" {
                // The sandbox provider charges the riders' linked accounts (dev only).
                env.push(("CITYPASS_SANDBOX__DELAY".to_owned(), "0s".to_owned()));
            }
            env.extend(
                spec.env
                    .iter()
                    .filter(|(to, _, _)| to == service)
                    .map(|(_, name, value)| (name.clone(), value.clone())),
            );
            let config_map = format!("{service}-config");
            let plan = ServicePlan::from_deployment(
                &deployment,
                binary_in(&spec.bin_dir, service),
                |source| {
                    let config = |name: &str, text: &str| {
                        Ok(Volume::Config(vec![(name.to_owned(), text.to_owned())]))
                    };
                    match source {
                        Source::ConfigMap(name) if name == config_map => {
                            config("config.yaml", base.config)
                        }
                        Source::ConfigMap("verifier-gates") => {
                            config("gates.yaml", citypass_stack::SAMPLE_GATES)
                        }
                        Source::ConfigMap("payments-fares") => config("fares.yaml", FARES),
                        Source::Secret(name) if name == stores_secret => {
                            Ok(Volume::Files(stores.clone()))
                        }
                        Source::ConfigMap(name) | Source::Secret(name) => secrets
                            .files(name)
                            .map(Volume::Files)
                            .ok_or_else(|| format!("no files for {name}")),
                    }
                },
                env,
            )
            .map_err(|e| failed(service, e))?;
            let mut launched = launcher.start(plan).map_err(|e| failed(service, e))?;
            let ready_after = launched
                .started(START_DEADLINE)
                .await
                .map_err(|e| failed(service, e))?;
            running.push(Running {
                launched,
                ready_after,
            });
        }
        Ok(Services {
            running,
            launcher,
            secrets,
            _root: root,
        })
    }

    /// The running `service`.
    pub fn get(&self, service: &str) -> Option<&Running> {
        self.running.iter().find(|r| r.launched.service == service)
    }

    /// `service`'s URL (empty if it is not one of the five).
    pub fn url(&self, service: &str) -> String {
        self.get(service)
            .map(|r| r.launched.url())
            .unwrap_or_default()
    }

    /// `service`'s process, label and time to ready, as the report measures it.
    pub fn process(&self, service: &str) -> Option<(Pid, String, Option<Duration>)> {
        self.get(service).map(|r| {
            (
                Pid::Child(r.launched.pid()),
                format!("citypass-{service}"),
                Some(r.ready_after),
            )
        })
    }

    /// Every service's process, in start order.
    pub fn processes(&self) -> Vec<(Pid, String, Option<Duration>)> {
        self.running
            .iter()
            .filter_map(|r| self.process(&r.launched.service))
            .collect()
    }

    /// The PKI directory (the CA and its key, the services' and gates' files).
    pub fn pki_dir(&self) -> &Path {
        &self.launcher.pki().dir
    }

    /// SIGTERM to each, the last started first; a service that does not stop in time
    /// is killed.
    pub async fn stop(self) {
        let Services { running, .. } = self;
        for r in running.into_iter().rev() {
            let service = r.launched.service.clone();
            if let Err(e) = r.launched.stop(STOP_DEADLINE).await {
                tracing::warn!(service, error = %e, "a service did not stop cleanly");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_name_replaces_the_one_in_the_url() {
        assert_eq!(
            with_database("postgres://u@h:5432/x?sslmode=verify-full", "d"),
            "postgres://u@h:5432/d?sslmode=verify-full"
        );
        assert_eq!(
            with_database("postgres://u@h:5432/x", "d"),
            "postgres://u@h:5432/d"
        );
    }

    #[test]
    fn a_service_setting_names_a_service_and_a_variable() {
        assert_eq!(
            parse_service_env("verifier:CITYPASS_SCENES__BUS__DEADLINE=5s"),
            Ok((
                "verifier".to_owned(),
                "CITYPASS_SCENES__BUS__DEADLINE".to_owned(),
                "5s".to_owned()
            ))
        );
        for bad in [
            "verifier",
            "verifier:X=1",
            "gate:CITYPASS_X=1",
            "verifier:CITYPASS_X",
        ] {
            assert!(parse_service_env(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_base_deployment_parses_and_names_its_service() {
        for base in &BASE {
            let deployment: Value = serde_saphyr::from_str(base.deployment).unwrap();
            assert_eq!(deployment["metadata"]["name"], base.service);
        }
    }
}
