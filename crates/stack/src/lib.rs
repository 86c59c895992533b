//! Every service built so far (identity, issuer, revocation), wired in one process,
//! each on its own loopback socket.
//!
//! `citypass dev` runs this on fixed ports with embedded (in-memory) stores so a
//! laptop needs no server at all; the end-to-end tests run it on ephemeral ports with
//! PostgreSQL and Redis. Both get the same wiring, so what the tests prove is what
//! `citypass dev` runs. Services still talk to each other over real gRPC (the issuer
//! calls identity through its client), exactly as in Kubernetes: nothing is shortcut
//! because it happens to share a process.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use citypass_app::Endpoints;
use citypass_identity::{IdentityConfig, MemoryStore, PostgresStore};
use citypass_issuer::{
    Environment, FollowMode, FollowerCheck, GrpcIdentity, IssuanceConfig, KeySource, Keys,
    MemoryNonceStore, NonceStore, RedisNonceStore, RevocationSettings,
};
use citypass_revocation_service::{
    GrpcDirectory, KeyringSigner, LocalPublisher, MemoryLog, PostgresLog, Publisher,
    RedisPublisher, Settings,
};
use citypass_runtime::{Server, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How old the issuer's revocation data may get before issuance fails closed.
const REVOCATION_MAX_AGE: Duration = Duration::from_secs(10);

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
    pub identity_store: IdentityStore,
    pub revocation: RevocationBackend,
    pub nonces: NonceBackend,
    /// The issuer's key ring.
    pub keys: KeySource,
    pub issuance: IssuanceConfig,
}

impl StackConfig {
    /// Ephemeral loopback ports, embedded stores, the given keys.
    pub fn ephemeral(keys: KeySource) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        StackConfig {
            identity_listen: any,
            issuer_listen: any,
            revocation_listen: any,
            identity_store: IdentityStore::Memory,
            revocation: RevocationBackend::Memory,
            nonces: NonceBackend::Memory,
            keys,
            issuance: IssuanceConfig::default(),
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
    #[error("identity: {0}")]
    Identity(#[from] citypass_identity::Error),
    #[error("issuer keys: {0}")]
    Keys(#[from] citypass_issuer::KeyError),
    /// A service's store, client or settings could not be set up (`which` names it).
    #[error("{which}: {source}")]
    Setup {
        which: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The issuer never heard from the revocation log, so it would refuse to issue.
    #[error("the revocation log did not answer the issuer within {0:?}")]
    RevocationSilent(Duration),
    #[error("revocation: {0}")]
    Revocation(#[from] citypass_revocation_service::Error),
}

/// A running stack. Dropping it does not stop the services: call [`Stack::shutdown`].
pub struct Stack {
    /// Identity's bound address.
    pub identity: SocketAddr,
    /// The issuer's bound address.
    pub issuer: SocketAddr,
    /// The revocation service's bound address.
    pub revocation: SocketAddr,
    /// The issuer's keys (to rotate or observe reloads).
    pub keys: Arc<Keys>,
    /// The issuer's view of the revocation log (epoch, age, queries).
    pub issuer_revocations: citypass_issuer::RevocationView,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Result<(), citypass_runtime::ServeError>>,
}

/// How long start-up waits for the issuer's first revocation sync.
const REVOCATION_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Wraps a set-up error with the name of what failed.
fn setup<E: std::error::Error + Send + Sync + 'static>(
    which: &'static str,
) -> impl FnOnce(E) -> StackError {
    move |e| StackError::Setup {
        which,
        source: Box::new(e),
    }
}

async fn listen(addr: SocketAddr) -> Result<TcpListener, StackError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StackError::Bind { addr, source })
}

impl Stack {
    /// Starts every service and returns once each is listening.
    pub async fn start(config: StackConfig) -> Result<Stack, StackError> {
        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mut tasks = JoinSet::new();

        // Identity.
        let identity_listener = listen(config.identity_listen).await?;
        let identity = identity_listener
            .local_addr()
            .map_err(|source| StackError::Bind {
                addr: config.identity_listen,
                source,
            })?;
        let identity_config = IdentityConfig::dev();
        let server = Server::new(ServerConfig::new("citypass-identity"))
            .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET);
        let server = match &config.identity_store {
            IdentityStore::Memory => server.add_service(citypass_identity::service(
                &identity_config,
                MemoryStore::new(),
            )?),
            IdentityStore::Postgres(url) => {
                let store = PostgresStore::connect(url, 10).await?;
                server.add_service(citypass_identity::service(&identity_config, store)?)
            }
        };
        tasks.spawn(server.serve(identity_listener, shutdown()));

        // Revocation: its log, fan-out, identity (for certificate serials) and the
        // issuer's key ring (it signs snapshots for offline gates).
        let signer = match &config.keys {
            KeySource::File {
                path,
                reload_interval,
            } => KeyringSigner::from_file(path, *reload_interval, false)?,
            KeySource::Memory(ring) => KeyringSigner::from_keyring(ring)?,
        };
        let (log, publisher): (
            Arc<dyn citypass_revocation_service::Log>,
            Arc<dyn Publisher>,
        ) = match &config.revocation {
            RevocationBackend::Memory => (
                Arc::new(MemoryLog::new()),
                Arc::new(LocalPublisher::new(4096)),
            ),
            RevocationBackend::Postgres {
                database_url,
                redis_url,
                stream_key,
            } => (
                Arc::new(PostgresLog::connect(database_url, 10).await?),
                Arc::new(
                    RedisPublisher::connect(
                        redis_url,
                        stream_key.clone(),
                        100_000,
                        Duration::from_millis(500),
                    )
                    .await
                    .map_err(setup("revocation fan-out"))?,
                ),
            ),
        };
        let directory =
            GrpcDirectory::connect_lazy(&format!("http://{identity}"), Duration::from_secs(2))
                .map_err(setup("revocation identity client"))?;
        let revocation_service = citypass_revocation_service::revocation_service(
            Settings::default(),
            log,
            publisher,
            Arc::new(directory),
            Arc::new(signer),
        )?;
        let revocation_listener = listen(config.revocation_listen).await?;
        let revocation = revocation_listener
            .local_addr()
            .map_err(|source| StackError::Bind {
                addr: config.revocation_listen,
                source,
            })?;
        tasks.spawn(
            Server::new(ServerConfig::new("citypass-revocation"))
                .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET)
                .add_service(revocation_service)
                .serve(revocation_listener, shutdown()),
        );

        // Issuer, calling identity over gRPC.
        let keys = Keys::load(config.keys, Environment::Dev)?;
        let nonces: Arc<dyn NonceStore> = match &config.nonces {
            NonceBackend::Memory => Arc::new(MemoryNonceStore::new(1_000_000)),
            NonceBackend::Redis { url, prefix } => Arc::new(
                RedisNonceStore::connect(url, prefix, Duration::from_secs(2))
                    .await
                    .map_err(setup("issuer nonce store"))?,
            ),
        };
        let identity_client =
            GrpcIdentity::connect_lazy(&format!("http://{identity}"), Duration::from_secs(2))
                .map_err(setup("issuer identity client"))?;
        // The issuer follows the revocation log: through the Redis stream when there
        // is one, through Watch in the embedded mode.
        let revocation_url = format!("http://{revocation}");
        let revocations = match &config.revocation {
            RevocationBackend::Memory => FollowerCheck::watch(&revocation_url, REVOCATION_MAX_AGE),
            RevocationBackend::Postgres {
                redis_url,
                stream_key,
                ..
            } => FollowerCheck::start(
                &RevocationSettings {
                    url: revocation_url,
                    follow: FollowMode::Redis,
                    redis_url: Some(redis_url.clone()),
                    stream_key: stream_key.clone(),
                    max_age: REVOCATION_MAX_AGE,
                    ..RevocationSettings::default()
                },
                None,
            ),
        }
        .map_err(setup("issuer revocation follower"))?;
        let issuer_revocations = revocations.view().clone();
        // Issuance fails closed until the issuer has heard from the log once.
        tokio::time::timeout(REVOCATION_SYNC_TIMEOUT, issuer_revocations.wait_synced())
            .await
            .map_err(|_| StackError::RevocationSilent(REVOCATION_SYNC_TIMEOUT))?;
        let issuer_service = citypass_issuer::issuer_service(
            config.issuance.clone(),
            keys.clone(),
            nonces,
            Arc::new(identity_client),
            Arc::new(revocations),
        )
        .map_err(setup("issuer settings"))?;
        let issuer_listener = listen(config.issuer_listen).await?;
        let issuer = issuer_listener
            .local_addr()
            .map_err(|source| StackError::Bind {
                addr: config.issuer_listen,
                source,
            })?;
        tasks.spawn(
            Server::new(ServerConfig::new("citypass-issuer"))
                .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET)
                .add_service(issuer_service)
                .serve(issuer_listener, shutdown()),
        );

        Ok(Stack {
            identity,
            issuer,
            revocation,
            keys,
            issuer_revocations,
            stop,
            tasks,
        })
    }

    /// The URLs an app uses.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            identity: format!("http://{}", self.identity),
            issuer: format!("http://{}", self.issuer),
        }
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
