//! The composition root: a [`Config`] in, a ready [`Server`] out. `main.rs`, the tests
//! (and `citypass dev`, next) all build the verifier here.

use std::sync::Arc;
use std::time::Duration;

use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_revocation_follow::{Follower, RevocationView};
use citypass_runtime::{BuildError, Server, part};

use crate::authorization::AUTHORIZATION;
use crate::config::Config;
use crate::face::feed::FaceFeed;
use crate::face::{CounterFaces, FaceGalleries, FaceTemplates};
use crate::fraud::{FraudLog, MemoryFraudLog, RedisFraudLog};
use crate::gates::Gates;
use crate::key_set::Keys;
use crate::replay::{MemoryReplayStore, RedisReplayStore, ReplayStore};
use crate::scene::Policies;
use crate::service::VerifierApi;
use crate::stand_in_subjects::UnavailableSubjects;
use crate::stand_in_transit::UnavailableTaps;
use crate::subjects::Subjects;
use crate::subjects::cache::ProfileCache;
use crate::subjects::holder::Holder;
use crate::subjects::identity::IdentityProfiles;
use crate::subjects::sealing::SealingKeys;
use crate::transit::TransitTaps;
use crate::transit::payments::PaymentsTaps;
use crate::upload::{UploadSources, Uploads};
use crate::venues::{MemoryVenueStore, RedisVenueStore, VenueStore};
use crate::verify::{Rules, Verifier};
use citypass_pseudonym::Pseudonyms;

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
/// (followed), replay and venue stores, revocation follower, scene policies,
/// VerifierService. Call inside a tokio runtime.
///
/// The code's holder comes from `subjects` (subject keys, identity's cached profiles,
/// pseudonym keys); without it (dev only) scenes that need a holder follow their fail
/// mode ([`UnavailableSubjects`]). Metro and bus taps go to `payments`; without it (dev
/// only) they follow their fail mode too ([`UnavailableTaps`]).
pub async fn build(config: Config) -> Result<Built, BuildError> {
    build_with(config, None).await
}

/// [`build`] with `policy_subjects` as the scene policies' source of profiles and
/// pseudonyms instead of the configured one (tests give a fixed one); the holder step
/// (unsealing, subject revocations) still uses the configured one, and the policies
/// decide on the subject it opened (without a configured holder, none: scenes that
/// need one follow their fail mode).
pub async fn build_with(
    config: Config,
    policy_subjects: Option<Arc<dyn Subjects>>,
) -> Result<Built, BuildError> {
    build_replacing(
        config,
        Replacements {
            policy_subjects,
            ..Replacements::default()
        },
    )
    .await
}

/// Sources a test puts in place of the configured ones.
#[derive(Default)]
pub struct Replacements {
    /// The scene policies' holders (as [`build_with`]).
    pub policy_subjects: Option<Arc<dyn Subjects>>,
    /// The transit policy's taps instead of `payments:` (a fixed stand-in).
    pub transit: Option<Arc<dyn TransitTaps>>,
    /// The counters' face templates (until identity's feed fills them, none).
    pub face_templates: Option<Arc<dyn FaceTemplates>>,
}

/// [`build`] with `replacements` in place of the configured sources.
pub async fn build_replacing(
    config: Config,
    replacements: Replacements,
) -> Result<Built, BuildError> {
    let Replacements {
        policy_subjects,
        transit,
        face_templates,
    } = replacements;
    config.validate().map_err(part("configuration"))?;
    let tls = config.server.load_tls()?;
    let holder: Option<Arc<dyn Subjects>> = match &config.subjects {
        Some(settings) => {
            let sealing = SealingKeys::follow(
                &settings.keys.path,
                settings.keys.reload_interval,
                config.environment,
            )
            .map_err(part("subject keys"))?;
            let pseudonyms = settings
                .pseudonym_keys(config.environment)
                .map_err(|e| part("subject pseudonym key")(std::io::Error::other(e)))?;
            let channel = settings
                .identity
                .channel(tls.as_ref())
                .map_err(part("identity client"))?;
            let profiles = ProfileCache::new(
                Arc::new(IdentityProfiles::new(channel)),
                settings.max_age,
                settings.capacity,
                settings.identity.request_timeout,
            );
            Some(Arc::new(Holder::new(
                sealing,
                profiles,
                Pseudonyms::new(pseudonyms),
            )))
        }
        None => None,
    };
    let subjects: Arc<dyn Subjects> = match (policy_subjects, &holder) {
        (Some(subjects), _) => subjects,
        (None, Some(holder)) => holder.clone(),
        (None, None) => Arc::new(UnavailableSubjects),
    };
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
    // The venue counts live where the marks do.
    // The venue counts and the fraud log live where the marks do.
    let redis_stores = |store: RedisReplayStore, timeout| {
        let venues =
            RedisVenueStore::new(store.connection(), config.redis_key_prefix.clone(), timeout);
        let venues: Arc<dyn VenueStore> = Arc::new(venues);
        let fraud: Arc<dyn FraudLog> = Arc::new(RedisFraudLog::new(
            store.connection(),
            &config.redis_key_prefix,
            config.upload.fraud_log_capacity,
            timeout,
        ));
        let replay: Arc<dyn ReplayStore> = Arc::new(store);
        (replay, venues, fraud)
    };
    let (replay, venues, fraud) = match &config.redis {
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
            let store = RedisReplayStore::connect_cluster(
                &nodes,
                config.redis_key_prefix.clone(),
                timeout,
                ca.as_deref(),
            )
            .await
            .map_err(part("Redis Cluster replay store"))?;
            redis_stores(store, timeout)
        }
        Some(redis) => {
            let client =
                citypass_redis::from_config(redis, ca_file).map_err(part("Redis replay store"))?;
            let store =
                RedisReplayStore::connect(client, config.redis_key_prefix.clone(), redis.timeout)
                    .await
                    .map_err(part("Redis replay store"))?;
            redis_stores(store, redis.timeout)
        }
        None => (
            Arc::new(MemoryReplayStore::new(config.replay_capacity)) as Arc<dyn ReplayStore>,
            Arc::new(MemoryVenueStore::new(config.venue_capacity)) as Arc<dyn VenueStore>,
            Arc::new(MemoryFraudLog::new(config.upload.fraud_log_capacity)) as Arc<dyn FraudLog>,
        ),
    };
    // Metro and bus taps: payments over mTLS with the verifier's own certificate;
    // without `payments:` (dev only) every tap is unavailable (the scene's fail mode).
    let transit: Arc<dyn TransitTaps> = match (transit, &config.payments) {
        (Some(transit), _) => transit,
        (None, Some(payments)) => Arc::new(PaymentsTaps::new(
            payments
                .channel(tls.as_ref())
                .map_err(part("payments client"))?,
        )),
        (None, None) => Arc::new(UnavailableTaps),
    };
    let policies = Arc::new(
        Policies::new(config.scenes.clone(), subjects.clone(), venues)
            .with_transit(transit.clone()),
    );

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
            subjects: subjects.clone(),
            transit: transit.clone(),
        },
        rules.skew,
        config.upload.window,
    );
    let face_templates: Arc<dyn FaceTemplates> = match (face_templates, &config.face.feed) {
        (Some(replaced), _) => replaced,
        (None, Some(feed)) => {
            let keys = feed
                .keys(config.environment)
                .map_err(|e| part("face template keys")(std::io::Error::other(e)))?;
            // `validate` made sure the feed has identity to ask.
            let identity = config
                .subjects
                .as_ref()
                .map(|s| &s.identity)
                .ok_or_else(|| part("face feed")(std::io::Error::other("subjects is required")))?;
            // The feed's own timeout (a page of templates), not the profile lookups'.
            let mut upstream = identity.clone();
            upstream.request_timeout = feed.timeout;
            let channel = upstream
                .channel(tls.as_ref())
                .map_err(part("face feed client"))?;
            let galleries = Arc::new(FaceGalleries::fed(feed.max_age));
            FaceFeed::new(channel, keys).follow(
                &galleries,
                feed.poll_interval,
                feed.rebuild_interval,
            );
            galleries
        }
        (None, None) => Arc::new(FaceGalleries::new()),
    };
    let mut verifier = Verifier::new(
        rules,
        keys.clone(),
        gates.clone(),
        Arc::new(revocations.clone()),
        replay,
        policies,
    )
    .keeping(follower.clone())
    .with_faces(CounterFaces::new(config.face.clone(), face_templates));
    if let Some(holder) = holder {
        verifier = verifier.with_subjects(holder);
    }
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
