//! Each service's dev configuration as the stack writes it: its server (name, address,
//! dev certificate), its stores as [`StackConfig`] says, and the other services' URLs.
//! One function per service, so that all the stack sets for a service reads in one
//! place; [`crate::Stack::start`] builds them in order.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use citypass_identity::IdentityConfig;
use citypass_issuer::{FollowMode, RevocationSettings};
use citypass_runtime::config::{KeyFile, PostgresConfig, RedisConfig};
use citypass_runtime::{ServerConfig, TlsConfig, UpstreamConfig};

use crate::config::{IdentityStore, KeySource, NonceBackend, RevocationBackend, StackConfig};
use crate::files::VerifierFiles;

/// How old the revocation data of the issuer, the verifier and payments may get before
/// they fail closed.
const REVOCATION_MAX_AGE: Duration = Duration::from_secs(10);

/// Where the services that others call listen (a service called by another one gets
/// its field here).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addresses {
    pub identity: SocketAddr,
    pub revocation: SocketAddr,
    pub payments: SocketAddr,
}

/// A service's dev server settings: its name, its address, its certificate.
pub(crate) fn server(name: &str, listen: SocketAddr, tls: TlsConfig) -> ServerConfig {
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

/// The URL of a service of the stack.
pub(crate) fn url(addr: SocketAddr) -> String {
    format!("https://{addr}")
}

/// The Redis of the services' request nonces (with a timeout for a loaded test machine).
fn nonce_redis(url: &str) -> RedisConfig {
    let mut redis = RedisConfig::new(url);
    redis.timeout = Duration::from_secs(2);
    redis
}

/// Identity: its store.
pub(crate) fn identity(config: &StackConfig, server: ServerConfig) -> IdentityConfig {
    let mut identity = IdentityConfig::dev();
    identity.server = server;
    // Likewise Enrol's own attempt limit per address (the per-document one stays).
    identity.enrol_attempts_per_address = 100_000;
    if let IdentityStore::Postgres(url) = &config.identity_store {
        identity.database = Some(PostgresConfig::new(url.clone()));
    }
    identity
}

/// Revocation: its log, fan-out, identity (for certificate serials) and its snapshot
/// key, the only key it holds.
pub(crate) fn revocation(
    config: &StackConfig,
    server: ServerConfig,
    at: &Addresses,
) -> citypass_revocation_service::Config {
    let mut revocation = citypass_revocation_service::Config::dev();
    revocation.server = server;
    revocation.identity = UpstreamConfig::new(url(at.identity));
    revocation.snapshot_key = config.snapshot_key.clone();
    if let RevocationBackend::Postgres {
        database_url,
        redis_url,
        stream_key,
    } = &config.revocation
    {
        revocation.database = Some(PostgresConfig::new(database_url.clone()));
        revocation.redis = Some(RedisConfig::new(redis_url.clone()));
        revocation.stream_key = stream_key.clone();
    }
    revocation
}

/// Issuer, calling identity and following the revocation log over gRPC (its Redis
/// stream when there is one, Watch in the embedded mode). A ring in memory is handed
/// to `build_with` instead of `keyring`.
pub(crate) fn issuer(
    config: &StackConfig,
    server: ServerConfig,
    at: &Addresses,
) -> citypass_issuer::Config {
    let mut issuer = citypass_issuer::Config::dev(server);
    issuer.identity = UpstreamConfig::new(url(at.identity));
    issuer.issuance = config.issuance.clone();
    issuer.revocation = follow_settings(config, at);
    if let NonceBackend::Redis { url, prefix } = &config.nonces {
        issuer.redis = Some(nonce_redis(url));
        issuer.redis_key_prefix = prefix.clone();
    }
    if let KeySource::File {
        path,
        reload_interval,
    } = &config.keys
    {
        issuer.keyring = KeyFile::new(path, *reload_interval);
    }
    issuer
}

/// Verifier: the issuer's published key set, the subject keys and the gate registry as
/// files (as ConfigMaps and Secrets in a cluster), following the revocation log like
/// the issuer.
pub(crate) fn verifier(
    config: &StackConfig,
    server: ServerConfig,
    at: &Addresses,
    files: &VerifierFiles,
) -> citypass_verifier::Config {
    let mut verifier = citypass_verifier::Config::dev(server);
    verifier.key_set = KeyFile::new(&files.key_set, Duration::from_secs(1));
    verifier.gates = KeyFile::new(&files.gates, Duration::from_secs(1));
    verifier.subjects = Some(citypass_verifier::config::SubjectsSettings::dev(
        KeyFile::new(&files.subject_keys, Duration::from_secs(1)),
        UpstreamConfig::new(url(at.identity)),
    ));
    verifier.revocation = follow_settings(config, at);
    // Metro and bus taps go to the stack's payments (built after the verifier; the
    // channel is lazy). Stations and routes of the sample gates are in payments' fare
    // table.
    verifier.payments = Some(UpstreamConfig::new(url(at.payments)));
    // The dev park: 1 000 visitors a day, once each, and the configured venues.
    // Scenic gates fail open (a park lets visitors in when Redis is down); hospital
    // desks and service counters fail closed.
    verifier.scenes.scenic.fail = citypass_verifier::FailMode::Open;
    verifier.scenes.scenic.venues.insert(
        "dev-park".to_owned(),
        citypass_verifier::VenueSettings {
            capacity: 1_000,
            entries_per_day: 1,
            ..citypass_verifier::VenueSettings::default()
        },
    );
    verifier
        .scenes
        .scenic
        .venues
        .extend(config.scenic_venues.iter().cloned());
    // Hospital desks and service counters offer the 1:1 face check, with the templates
    // identity's feed carries (sealed under identity's development template key).
    verifier.face.hospital = citypass_verifier::face::FacePolicy::Offered;
    verifier.face.government = citypass_verifier::face::FacePolicy::Offered;
    verifier.face.feed = Some(citypass_verifier::face::FeedSettings::dev());
    if let NonceBackend::Redis { url, prefix } = &config.nonces {
        verifier.redis = Some(nonce_redis(url));
        verifier.redis_key_prefix = format!("{prefix}verifier:");
    }
    verifier
}

/// Payments: memory store, the built-in fare table, the sandbox provider, citizens'
/// calls checked at identity (GetDevice, GetTransitAccount) and against the
/// revocation log.
pub(crate) fn payments(
    config: &StackConfig,
    server: ServerConfig,
    at: &Addresses,
) -> citypass_payments::Config {
    let mut payments = citypass_payments::Config::dev();
    payments.server = server;
    payments.identity = Some(UpstreamConfig::new(url(at.identity)));
    payments.revocation = Some(follow_settings(config, at));
    if let NonceBackend::Redis { url, prefix } = &config.nonces {
        payments.redis = Some(nonce_redis(url));
        payments.redis_key_prefix = format!("{prefix}payments:");
    }
    payments
}

/// How a service of the stack follows the revocation log: its Redis stream when the
/// log has one, else WatchRevocations.
fn follow_settings(config: &StackConfig, at: &Addresses) -> RevocationSettings {
    let mut settings = RevocationSettings {
        service: UpstreamConfig::new(url(at.revocation)),
        follow: FollowMode::Watch,
        max_age: REVOCATION_MAX_AGE,
        ..RevocationSettings::default()
    };
    if let RevocationBackend::Postgres {
        redis_url,
        stream_key,
        ..
    } = &config.revocation
    {
        settings.follow = FollowMode::Redis;
        settings.redis = Some(RedisConfig::new(redis_url.clone()));
        settings.stream_key = stream_key.clone();
    }
    settings
}
