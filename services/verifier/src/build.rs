//! The composition root: a [`Config`] in, a ready [`Server`] out. `main.rs`, the tests
//! (and `citypass dev`, next) all build the verifier here.

use std::sync::Arc;
use std::time::Duration;

use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_revocation_follow::{Follower, RevocationView};
use citypass_runtime::{BuildError, Server, part};

use crate::authorization::AUTHORIZATION;
use crate::config::Config;
use crate::fraud::{FraudLog, MemoryFraudLog, RedisFraudLog};
use crate::gates::Gates;
use crate::key_set::Keys;
use crate::replay::{MemoryReplayStore, RedisReplayStore, ReplayStore};
use crate::service::VerifierApi;
use crate::upload::{UploadSources, Uploads};
use crate::verify::{Rules, Verifier};

/// Largest request the verifier decodes: an upload of 64 CP2 codes (about 600
/// characters each) with their ids, with room; a Verify is far smaller.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The built verifier: the server to run, and handles on what it follows.
#[derive(Debug)]
pub struct Built {
    /// Serve it with `run()` or `serve(listener, shutdown)`.
    pub server: Server,
    /// The key set in force (followed from its file).
    pub keys: Arc<Keys>,
    /// The gate registry in force (followed from its file).
    pub gates: Arc<Gates>,
    /// The verifier's view of the revocation log (epoch, age); every code is refused
    /// until it has synced once.
    pub revocations: RevocationView,
    /// The follower feeding `revocations` (the service keeps it running too).
    pub follower: Arc<Follower>,
}

/// Builds the verifier from `config`: TLS identity, key set and gate registry
/// (followed), replay store, revocation follower, VerifierService. Call inside a tokio
/// runtime.
pub async fn build(config: Config) -> Result<Built, BuildError> {
    config.validate().map_err(part("configuration"))?;
    let tls = config.server.load_tls()?;
    let ca_file = config.server.tls.as_ref().map(|t| t.ca_file.as_path());
    let keys = Keys::follow(
        &config.key_set.path,
        config.key_set.reload_interval,
        config.environment,
    )
    .map_err(part("key set"))?;
    if let Some(issuer) = &config.issuer {
        let channel = issuer
            .channel(tls.as_ref())
            .map_err(part("issuer client"))?;
        keys.refresh_from(
            citypass_proto::v1::issuer_service_client::IssuerServiceClient::new(channel),
            config.key_set.reload_interval,
        );
    }
    let gates = Gates::follow(
        &config.gates.path,
        config.gates.reload_interval,
        config.environment,
    )
    .map_err(part("gate registry"))?;
    let redis_store: Option<RedisReplayStore> = match &config.redis {
        _ if !config.replay_cluster.is_empty() => {
            let nodes: Vec<String> = config
                .replay_cluster
                .iter()
                .map(|node| node.expose().to_owned())
                .collect();
            let timeout = config
                .redis
                .as_ref()
                .map_or(Duration::from_millis(500), |redis| redis.timeout);
            let ca = match config
                .redis
                .as_ref()
                .and_then(|r| r.ca_file.as_deref())
                .or(ca_file)
            {
                Some(path) => {
                    Some(std::fs::read(path).map_err(part("Redis Cluster replay store"))?)
                }
                None => None,
            };
            Some(
                RedisReplayStore::connect_cluster(
                    &nodes,
                    config.redis_key_prefix.clone(),
                    timeout,
                    ca.as_deref(),
                )
                .await
                .map_err(part("Redis Cluster replay store"))?,
            )
        }
        Some(redis) => {
            let client =
                citypass_redis::from_config(redis, ca_file).map_err(part("Redis replay store"))?;
            Some(
                RedisReplayStore::connect(client, config.redis_key_prefix.clone(), redis.timeout)
                    .await
                    .map_err(part("Redis replay store"))?,
            )
        }
        None => None,
    };
    // The fraud log lives beside the marks: shared by every replica when they are.
    let (replay, fraud): (Arc<dyn ReplayStore>, Arc<dyn FraudLog>) = match redis_store {
        Some(store) => {
            let timeout = config
                .redis
                .as_ref()
                .map_or(Duration::from_millis(500), |redis| redis.timeout);
            let fraud = RedisFraudLog::new(
                store.connection(),
                &config.redis_key_prefix,
                config.upload.fraud_log_capacity,
                timeout,
            );
            (Arc::new(store), Arc::new(fraud))
        }
        None => (
            Arc::new(MemoryReplayStore::new(config.replay_capacity)),
            Arc::new(MemoryFraudLog::new(config.upload.fraud_log_capacity)),
        ),
    };

    let mut follow = config
        .revocation
        .follower_config(
            config.revocation_redis(),
            citypass_revocation_follow::Kinds::ALL,
        )
        .map_err(part("revocation follower"))?;
    let redis_ca = config
        .revocation_redis()
        .and_then(|r| r.ca_file.as_deref())
        .or(ca_file);
    if let Some(path) = redis_ca {
        follow.redis_ca = Some(std::fs::read(path).map_err(part("revocation follower"))?);
    }
    let channel = config
        .revocation
        .service
        .channel(tls.as_ref())
        .map_err(part("revocation follower"))?;
    let follower = Arc::new(
        Follower::start(follow, RevocationServiceClient::new(channel))
            .map_err(part("revocation follower"))?,
    );
    let revocations = follower.view();

    let rules = Rules {
        skew: config.decision.skew.as_secs(),
        revocation_max_age: config.revocation.max_age,
    };
    let uploads = Uploads::new(
        UploadSources {
            keys: keys.clone(),
            gates: gates.clone(),
            revocations: Arc::new(revocations.clone()),
            replay: replay.clone(),
            fraud,
        },
        rules.skew,
        config.upload.window,
    );
    let verifier = Verifier::new(
        rules,
        keys.clone(),
        gates.clone(),
        Arc::new(revocations.clone()),
        replay,
    )
    .keeping(follower.clone());
    let service = VerifierApi::new(verifier, uploads)
        .into_server()
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let server = Server::new(config.server)
        .tls(tls)
        .add_service(service, &AUTHORIZATION)
        .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET);
    Ok(Built {
        server,
        keys,
        gates,
        revocations,
        follower,
    })
}
