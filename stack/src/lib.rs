//! Every service built so far (identity, issuer, revocation, verifier, payments), in one
//! process, each on its own loopback socket, each built by its own `build(config)`.
//!
//! `citypass dev` runs this on fixed ports with embedded (in-memory) stores so a
//! laptop needs no server at all; the end-to-end tests run it on ephemeral ports with
//! PostgreSQL and Redis. Both get the same wiring, and it is the wiring of the
//! services' own binaries: the stack only writes each service's dev [`Config`]s (ports,
//! stores, the dev PKI's certificates, the other services' URLs) and calls the
//! service's `build`. Services talk to each other over real gRPC with mutual TLS,
//! exactly as in Kubernetes: nothing is shortcut because it shares a process.
//!
//! [`Config`]: citypass_issuer::Config
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use citypass_app::Endpoints;
use citypass_identity::IdentityConfig;
use citypass_issuer::{FollowMode, Keys, RevocationView};
pub use citypass_issuer::{IssuanceConfig, KeySource};
use citypass_pki::{Authority, DevPki, Subject};
pub use citypass_runtime::config::KeyFile;
use citypass_runtime::config::{PostgresConfig, RedisConfig};
use citypass_runtime::{BuildError, Role, ServerConfig, Tls, TlsConfig, UpstreamConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A well-formed resident ID number (GB 11643: a Beijing district, a real birth date,
/// the right check character) ending in `seq`, for demo citizens.
pub fn sample_resident_id(seq: u16) -> String {
    let first17 = format!("11010519900307{:03}", seq % 1000);
    // 17 ASCII digits: the check character always exists.
    let check = citypass_identity::document::gb11643_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

/// How old the issuer's revocation data may get before issuance fails closed.
const REVOCATION_MAX_AGE: Duration = Duration::from_secs(10);
/// How long start-up waits for the issuer's first revocation sync.
const REVOCATION_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Where identity keeps its records.
#[derive(Debug, Clone)]
pub enum IdentityStore {
    /// In memory (the embedded default; lost on exit).
    Memory,
    /// PostgreSQL at this URL (migrations run at start).
    Postgres(String),
}

/// Where the issuer keeps single-use request nonces.
#[derive(Debug, Clone)]
pub enum NonceBackend {
    /// In memory, bounded.
    Memory,
    /// Redis at this URL, keys under a prefix.
    Redis { url: String, prefix: String },
}

/// Where the revocation log lives, and how new entries fan out.
#[derive(Debug, Clone)]
pub enum RevocationBackend {
    /// In memory, fanned out in process (the embedded default; lost on exit).
    Memory,
    /// PostgreSQL at `database_url`, fanned out through a Redis Stream at `redis_url`.
    Postgres {
        database_url: String,
        redis_url: String,
        stream_key: String,
    },
}

/// How to run the stack.
#[derive(Debug)]
pub struct StackConfig {
    /// Identity's address (port 0 for an ephemeral one).
    pub identity_listen: SocketAddr,
    /// The issuer's address.
    pub issuer_listen: SocketAddr,
    /// The revocation service's address.
    pub revocation_listen: SocketAddr,
    /// The verifier's address.
    pub verifier_listen: SocketAddr,
    /// The payments service's address.
    pub payments_listen: SocketAddr,
    pub identity_store: IdentityStore,
    pub revocation: RevocationBackend,
    pub nonces: NonceBackend,
    /// The issuer's key ring (code keys, the subject key, and the public half of the
    /// snapshot key, which the issuer publishes).
    pub keys: KeySource,
    /// The revocation service's snapshot key file: the only key it holds (it never
    /// sees the key ring).
    pub snapshot_key: KeyFile,
    pub issuance: IssuanceConfig,
    /// Scenic venues besides the dev park (`dev-park`: 1 000 a day, once each), by
    /// venue id, as the verifier's `scenes.scenic.venues` (capacity, entries a day,
    /// UTC offset), each with one gate, `<venue>-gate` ([`venue_gate_id`]), in the
    /// registry file written on first run. Empty by default; tests give small venues
    /// (capacity 1). Venue ids are lower-case letters, digits and `-`.
    pub scenic_venues: Vec<(String, citypass_verifier::VenueSettings)>,
    /// The stack's own files: the dev PKI (`pki/`, made on first use and kept).
    pub dir: PathBuf,
}

impl StackConfig {
    /// Ephemeral loopback ports, embedded stores, the given keys, files in `dir`.
    pub fn ephemeral(keys: KeySource, snapshot_key: KeyFile, dir: impl Into<PathBuf>) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        StackConfig {
            identity_listen: any,
            issuer_listen: any,
            revocation_listen: any,
            verifier_listen: any,
            payments_listen: any,
            identity_store: IdentityStore::Memory,
            revocation: RevocationBackend::Memory,
            nonces: NonceBackend::Memory,
            keys,
            snapshot_key,
            issuance: IssuanceConfig::default(),
            scenic_venues: Vec::new(),
            dir: dir.into(),
        }
    }
}

/// Why the stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The dev PKI could not be made or read.
    #[error("dev PKI: {0}")]
    Pki(#[from] citypass_pki::PkiError),
    /// A service could not be built (the error names the service and the part).
    #[error("{service}: {source}")]
    Build {
        service: &'static str,
        #[source]
        source: BuildError,
    },
    /// The issuer or the verifier never heard from the revocation log, so it would
    /// refuse everything.
    #[error("the revocation log did not answer within {0:?}")]
    RevocationSilent(Duration),
    /// A file of the stack's (the verifier's key set or gate registry) could not be
    /// written.
    #[error("cannot write {path}: {source}")]
    Files {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The verifier's sample gates, one or more per scene, written to its registry file on
/// first run (each also gets a dev certificate, `pki/gate-<id>/`).
pub const SAMPLE_GATE_IDS: [&str; 6] = [
    "metro-entry-1",
    "metro-exit-1",
    "bus-1",
    "hospital-desk-1",
    "scenic-gate-1",
    "hall-counter-1",
];

const SAMPLE_GATES: &str = "\
# The verifier's gate registry (citypass dev): gate id (the name in the gate's
# certificate) -> where it stands. Edit freely: the verifier reloads it on change.
gates:
  metro-entry-1: {scene: metro, direction: entry, station: dev-station-1, operator: dev-metro}
  metro-exit-1: {scene: metro, direction: exit, station: dev-station-1, operator: dev-metro}
  bus-1: {scene: bus, stop: dev-route-1, operator: dev-bus}
  hospital-desk-1: {scene: hospital, hospital: dev-hospital, operator: dev-hospital}
  scenic-gate-1: {scene: scenic, venue: dev-park, operator: dev-park}
  hall-counter-1: {scene: government, hall: dev-service-hall, operator: dev-government}
";

/// The gate id of a configured scenic venue's gate ([`StackConfig::scenic_venues`]).
pub fn venue_gate_id(venue: &str) -> String {
    format!("{venue}-gate")
}

/// A configured venue's gate, as a line of the registry file.
fn venue_gate(venue: &str) -> String {
    format!(
        "  {}: {{scene: scenic, venue: {venue}, operator: {venue}}}\n",
        venue_gate_id(venue)
    )
}

fn write(path: &std::path::Path, bytes: impl AsRef<[u8]>) -> Result<(), StackError> {
    let files = |source| StackError::Files {
        path: path.to_owned(),
        source,
    };
    // Written aside and renamed, so the verifier never reads half a file.
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, bytes).map_err(files)?;
    std::fs::rename(&aside, path).map_err(files)
}

/// [`write`] for a secret (the verifier's subject keys): the file is created
/// owner-only (0600) before a byte is written, as `citypass keys` writes its copy.
fn write_secret(path: &std::path::Path, bytes: impl AsRef<[u8]>) -> Result<(), StackError> {
    use std::io::Write as _;
    let files = |source| StackError::Files {
        path: path.to_owned(),
        source,
    };
    let aside = path.with_extension("tmp");
    // A leftover from a crash keeps its mode when reopened: start afresh.
    match std::fs::remove_file(&aside) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(files(err)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&aside).map_err(files)?;
    file.write_all(bytes.as_ref()).map_err(files)?;
    std::fs::rename(&aside, path).map_err(files)
}

/// Writes the issuer's published key set (the JWKS GetKeySet returns) where the
/// verifier reads it.
fn publish_key_set(keys: &Keys, path: &std::path::Path) -> Result<(), StackError> {
    write(path, keys.current().jwks_json())
}

/// Rewrites the verifier's key set file whenever the issuer publishes a new one (a
/// `citypass keys rotate`), until the issuer's keys are dropped.
async fn follow_key_set(keys: Arc<Keys>, path: PathBuf) {
    let mut published = keys.subscribe();
    drop(keys);
    while published.changed().await.is_ok() {
        let jwks = published.borrow_and_update().jwks_json().to_vec();
        if let Err(e) = write(&path, jwks) {
            tracing::warn!(error = %e, "the verifier's key set file was not updated");
        }
    }
}

fn built(service: &'static str) -> impl FnOnce(BuildError) -> StackError {
    move |source| StackError::Build { service, source }
}

/// A running stack. Dropping it does not stop the services: call [`Stack::shutdown`].
pub struct Stack {
    /// Identity's bound address.
    pub identity: SocketAddr,
    /// The issuer's bound address.
    pub issuer: SocketAddr,
    /// The revocation service's bound address.
    pub revocation: SocketAddr,
    /// The verifier's bound address.
    pub verifier: SocketAddr,
    /// The payments service's bound address (memory store, the sandbox provider).
    pub payments: SocketAddr,
    /// The issuer's keys (to rotate or observe reloads).
    pub keys: Arc<Keys>,
    /// The issuer's view of the revocation log (epoch, age, queries).
    pub issuer_revocations: RevocationView,
    /// The verifier's view of the revocation log.
    pub verifier_revocations: RevocationView,
    /// The verifier's gate registry file (sample gates of every scene, written on
    /// first run and then left to the developer; reloaded on change).
    pub gates_file: PathBuf,
    /// The dev PKI the services' certificates come from.
    pub pki: DevPki,
    ca: Authority,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Result<(), citypass_runtime::ServeError>>,
}

async fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StackError> {
    let bind = |source| StackError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    Ok((listener, local))
}

/// A service's dev server settings: its name, its address, its certificate.
fn server(name: &str, listen: SocketAddr, tls: TlsConfig) -> ServerConfig {
    let mut server = ServerConfig::new(format!("citypass-{name}"));
    server.listen = listen;
    server.tls = Some(tls);
    server.reflection = true;
    // Every app of a dev machine (and every test client) calls from loopback, one
    // address: the per-address limit for anonymous callers would throttle them all
    // as one citizen.
    server.limits.anonymous_per_second = NonZeroU32::new(100_000).unwrap_or(NonZeroU32::MIN);
    server
}

fn url(addr: SocketAddr) -> String {
    format!("https://{addr}")
}

impl Stack {
    /// Starts every service and returns once each is listening.
    pub async fn start(config: StackConfig) -> Result<Stack, StackError> {
        let (pki, ca) = DevPki::ensure(&config.dir.join("pki"))?;
        let (identity_listener, identity) = listen(config.identity_listen).await?;
        let (revocation_listener, revocation) = listen(config.revocation_listen).await?;
        let (issuer_listener, issuer) = listen(config.issuer_listen).await?;
        let (verifier_listener, verifier) = listen(config.verifier_listen).await?;
        let (payments_listener, payments) = listen(config.payments_listen).await?;

        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mut tasks = JoinSet::new();

        // Identity.
        let mut identity_config = IdentityConfig::dev();
        identity_config.server = server("identity", identity, pki.service(&ca, "identity")?);
        // Likewise Enrol's own attempt limit per address (the per-document one stays).
        identity_config.enrol_attempts_per_address = 100_000;
        if let IdentityStore::Postgres(url) = &config.identity_store {
            identity_config.database = Some(PostgresConfig::new(url.clone()));
        }
        let identity_built = citypass_identity::build(identity_config)
            .await
            .map_err(built("identity"))?;
        tasks.spawn(identity_built.server.serve(identity_listener, shutdown()));

        // Revocation: its log, fan-out, identity (for certificate serials) and its
        // snapshot key, the only key it holds.
        let mut revocation_config = citypass_revocation_service::Config::dev();
        revocation_config.server =
            server("revocation", revocation, pki.service(&ca, "revocation")?);
        revocation_config.identity = UpstreamConfig::new(url(identity));
        revocation_config.snapshot_key = config.snapshot_key.clone();
        if let RevocationBackend::Postgres {
            database_url,
            redis_url,
            stream_key,
        } = &config.revocation
        {
            revocation_config.database = Some(PostgresConfig::new(database_url.clone()));
            revocation_config.redis = Some(RedisConfig::new(redis_url.clone()));
            revocation_config.stream_key = stream_key.clone();
        }
        let revocation_built = citypass_revocation_service::build(revocation_config)
            .await
            .map_err(built("revocation"))?;
        tasks.spawn(
            revocation_built
                .server
                .serve(revocation_listener, shutdown()),
        );

        // Issuer, calling identity and following the revocation log over gRPC (its
        // Redis stream when there is one, Watch in the embedded mode).
        let mut issuer_config =
            citypass_issuer::Config::dev(server("issuer", issuer, pki.service(&ca, "issuer")?));
        issuer_config.identity = UpstreamConfig::new(url(identity));
        issuer_config.issuance = config.issuance.clone();
        issuer_config.revocation.service = UpstreamConfig::new(url(revocation));
        issuer_config.revocation.max_age = REVOCATION_MAX_AGE;
        if let NonceBackend::Redis { url, prefix } = &config.nonces {
            let mut redis = RedisConfig::new(url.clone());
            redis.timeout = Duration::from_secs(2);
            issuer_config.redis = Some(redis);
            issuer_config.redis_key_prefix = prefix.clone();
        }
        issuer_config.revocation.follow = FollowMode::Watch;
        if let RevocationBackend::Postgres {
            redis_url,
            stream_key,
            ..
        } = &config.revocation
        {
            issuer_config.revocation.follow = FollowMode::Redis;
            issuer_config.revocation.redis = Some(RedisConfig::new(redis_url.clone()));
            issuer_config.revocation.stream_key = stream_key.clone();
        }
        // The verifier opens subjects with the ring's subject keys alone, exported into
        // a file of their own (never the signing seeds). Exported at start: after a
        // `citypass keys sealing-add`/`sealing-rotate`, restart `citypass dev`.
        let subject_key_file = match &config.keys {
            KeySource::File { path, .. } => {
                let text = std::fs::read_to_string(path).map_err(|source| StackError::Files {
                    path: path.clone(),
                    source,
                })?;
                citypass_token::Keyring::from_json(&text)
                    .map_err(|e| StackError::Files {
                        path: path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })?
                    .subject_key_file()
            }
            KeySource::Memory(ring) => ring.subject_key_file(),
        };
        let issuer_built = match config.keys {
            KeySource::File {
                path,
                reload_interval,
            } => {
                issuer_config.keyring = KeyFile::new(path, reload_interval);
                citypass_issuer::build(issuer_config).await
            }
            KeySource::Memory(ring) => citypass_issuer::build_with(issuer_config, Some(ring)).await,
        }
        .map_err(built("issuer"))?;
        // Issuance fails closed until the issuer has heard from the log once.
        tokio::time::timeout(
            REVOCATION_SYNC_TIMEOUT,
            issuer_built.revocations.wait_synced(),
        )
        .await
        .map_err(|_| StackError::RevocationSilent(REVOCATION_SYNC_TIMEOUT))?;
        let keys = issuer_built.keys.clone();
        let issuer_revocations = issuer_built.revocations.clone();
        tasks.spawn(issuer_built.server.serve(issuer_listener, shutdown()));

        // Verifier: the issuer's published key set and the gate registry as files (as
        // ConfigMaps in a cluster), following the revocation log like the issuer.
        let verifier_dir = config.dir.join("verifier");
        std::fs::create_dir_all(&verifier_dir).map_err(|source| StackError::Files {
            path: verifier_dir.clone(),
            source,
        })?;
        let key_set_file = verifier_dir.join("keyset.jwks.json");
        publish_key_set(&keys, &key_set_file)?;
        let subject_keys_file = verifier_dir.join("subject-keys.json");
        write_secret(&subject_keys_file, subject_key_file.to_json())?;
        let gates_file = verifier_dir.join("gates.yaml");
        if !gates_file.exists() {
            let mut gates = SAMPLE_GATES.to_owned();
            for (venue, _) in &config.scenic_venues {
                gates.push_str(&venue_gate(venue));
            }
            write(&gates_file, gates)?;
        }
        for gate in SAMPLE_GATE_IDS {
            pki.gate(&ca, gate)?;
        }
        let mut verifier_config = citypass_verifier::Config::dev(server(
            "verifier",
            verifier,
            pki.service(&ca, "verifier")?,
        ));
        verifier_config.key_set = KeyFile::new(&key_set_file, Duration::from_secs(1));
        verifier_config.gates = KeyFile::new(&gates_file, Duration::from_secs(1));
        verifier_config.subjects = Some(citypass_verifier::config::SubjectsSettings::dev(
            KeyFile::new(&subject_keys_file, Duration::from_secs(1)),
            UpstreamConfig::new(url(identity)),
        ));
        verifier_config.revocation.service = UpstreamConfig::new(url(revocation));
        verifier_config.revocation.max_age = REVOCATION_MAX_AGE;
        verifier_config.revocation.follow = citypass_verifier::FollowMode::Watch;
        // The dev park: 1 000 visitors a day, once each, and the configured venues.
        // Scenic gates fail open (a park lets visitors in when Redis is down); hospital
        // desks and service counters fail closed.
        verifier_config.scenes.scenic.fail = citypass_verifier::FailMode::Open;
        verifier_config.scenes.scenic.venues.insert(
            "dev-park".to_owned(),
            citypass_verifier::VenueSettings {
                capacity: 1_000,
                entries_per_day: 1,
                ..citypass_verifier::VenueSettings::default()
            },
        );
        verifier_config
            .scenes
            .scenic
            .venues
            .extend(config.scenic_venues.iter().cloned());
        if let NonceBackend::Redis { url, prefix } = &config.nonces {
            let mut redis = RedisConfig::new(url.clone());
            redis.timeout = Duration::from_secs(2);
            verifier_config.redis = Some(redis);
            verifier_config.redis_key_prefix = format!("{prefix}verifier:");
        }
        if let RevocationBackend::Postgres {
            redis_url,
            stream_key,
            ..
        } = &config.revocation
        {
            verifier_config.revocation.follow = citypass_verifier::FollowMode::Redis;
            verifier_config.revocation.redis = Some(RedisConfig::new(redis_url.clone()));
            verifier_config.revocation.stream_key = stream_key.clone();
        }
        let verifier_built = citypass_verifier::build(verifier_config)
            .await
            .map_err(built("verifier"))?;
        tokio::time::timeout(
            REVOCATION_SYNC_TIMEOUT,
            verifier_built.revocations.wait_synced(),
        )
        .await
        .map_err(|_| StackError::RevocationSilent(REVOCATION_SYNC_TIMEOUT))?;
        let verifier_revocations = verifier_built.revocations.clone();
        tokio::spawn(follow_key_set(keys.clone(), key_set_file));
        tasks.spawn(verifier_built.server.serve(verifier_listener, shutdown()));

        // Payments: memory store, the built-in fare table, the sandbox provider, citizens'
        // calls checked at identity.
        let mut payments_config = citypass_payments::Config::dev();
        payments_config.server = server("payments", payments, pki.service(&ca, "payments")?);
        // Citizens' calls are checked at identity (GetDevice, GetTransitAccount).
        payments_config.identity = Some(UpstreamConfig::new(url(identity)));
        if let NonceBackend::Redis { url, prefix } = &config.nonces {
            let mut redis = RedisConfig::new(url.clone());
            redis.timeout = Duration::from_secs(2);
            payments_config.redis = Some(redis);
            payments_config.redis_key_prefix = format!("{prefix}payments:");
        }
        let payments_built = citypass_payments::build(payments_config)
            .await
            .map_err(built("payments"))?;
        tasks.spawn(payments_built.server.serve(payments_listener, shutdown()));

        Ok(Stack {
            identity,
            issuer,
            revocation,
            verifier,
            payments,
            keys,
            issuer_revocations,
            verifier_revocations,
            gates_file,
            pki,
            ca,
            stop,
            tasks,
        })
    }

    /// TLS for a client of the stack: the dev CA, and a certificate for `subject` if
    /// given (an operator, a gate, a service), none for a citizen's app.
    pub fn client_tls(&self, subject: Option<&Subject>) -> Result<Arc<Tls>, StackError> {
        let ca = self.ca.cert_pem().as_bytes();
        let tls = match subject {
            None => Tls::from_pem(ca, None),
            Some(subject) => {
                let issued = self.ca.issue(subject)?;
                Tls::from_pem(
                    ca,
                    Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
                )
            }
        };
        tls.map_err(|e| StackError::Pki(citypass_pki::PkiError::Invalid(e.to_string())))
    }

    /// TLS for an operator of the stack holding `roles`.
    pub fn operator_tls(&self, name: &str, roles: &[Role]) -> Result<Arc<Tls>, StackError> {
        self.client_tls(Some(&Subject::operator(
            name,
            roles,
            citypass_pki::OPERATOR_LIFE,
        )))
    }

    /// The CA that issued the services' certificates.
    pub fn ca(&self) -> &Authority {
        &self.ca
    }

    /// The URLs an app uses, with TLS that trusts the dev CA.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            identity: url(self.identity),
            issuer: url(self.issuer),
            payments: url(self.payments),
            tls: self.client_tls(None).ok(),
        }
    }

    /// The verifier's URL.
    pub fn verifier_url(&self) -> String {
        url(self.verifier)
    }

    /// TLS for gate `id` of the stack (any id: the verifier answers UNKNOWN_GATE for
    /// one its registry does not list).
    pub fn gate_tls(&self, id: &str) -> Result<Arc<Tls>, StackError> {
        self.client_tls(Some(&Subject::gate(id)))
    }

    /// The revocation service's URL.
    pub fn revocation_url(&self) -> String {
        url(self.revocation)
    }

    /// Stops every service (health NOT_SERVING, drain, exit) and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while let Some(result) = self.tasks.join_next().await {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "a service stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "a service task failed"),
            }
        }
    }

    /// Waits until any service stops on its own (an error), for `citypass dev`.
    pub async fn wait_any(&mut self) -> Option<String> {
        match self.tasks.join_next().await? {
            Ok(Ok(())) => Some("a service stopped".to_owned()),
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn secrets_are_written_owner_only() {
        let dir = std::env::temp_dir().join(format!("citypass-stack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("subject-keys.json");
        std::fs::write(path.with_extension("tmp"), b"left by a crash").unwrap();
        super::write_secret(&path, b"{}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((mode, text.as_str()), (0o600, "{}"));
    }
}
