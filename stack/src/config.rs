//! How to run the stack: its addresses, where each service keeps its data, the
//! issuer's keys and the revocation service's snapshot key, and the stack's own folder.

use std::net::SocketAddr;
use std::path::PathBuf;

pub use citypass_issuer::{IssuanceConfig, KeySource};
pub use citypass_runtime::config::KeyFile;

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
    /// The stack's own files: the dev PKI (`pki/`, made on first use and kept).
    pub dir: PathBuf,
    /// Scenic venues besides the dev park (`dev-park`: 1 000 a day, once each), by
    /// venue id, as the verifier's `scenes.scenic.venues` (capacity, entries a day,
    /// UTC offset), each with one gate, `<venue>-gate` ([`crate::venue_gate_id`]), in
    /// the registry file written on first run. Empty by default; tests give small
    /// venues (capacity 1). Venue ids are lower-case letters, digits and `-`.
    pub scenic_venues: Vec<(String, citypass_verifier::VenueSettings)>,
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
            dir: dir.into(),
            scenic_venues: Vec::new(),
        }
    }
}
