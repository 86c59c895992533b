//! The composition root: a [`Config`] in, a ready [`Server`] out. `main.rs` and the
//! tests build the service here (`citypass dev` will too).

use std::sync::Arc;

use citypass_device_proof::{ProofVerifier, open_nonce_store};
use citypass_identity_client::DeviceCache;
use citypass_revocation_follow::{FollowerCheck, RevocationView};
use citypass_runtime::{BuildError, Server, part};

use crate::authorization::AUTHORIZATION;
use crate::citizen::{Citizens, GrpcDirectory};
use crate::config::Config;
use crate::error::Error;
use crate::payments::Payments;
use crate::provider::{Sandbox, SandboxConfig};
use crate::service::PaymentsApi;
use crate::store::{MemoryStore, PaymentsStore, PostgresStore};
use crate::tap::TapRules;
use crate::worker::OutboxWorker;

/// Largest request the service decodes: taps and links are far smaller.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The built service.
pub struct Built {
    /// Serve it with `run()` or `serve(listener, shutdown)`.
    pub server: Server,
    /// The logic behind it (for tests).
    pub payments: Payments,
    /// The sandbox provider the outbox worker charges through, when configured (for
    /// tests and `citypass dev` to reconcile with).
    pub sandbox: Option<Arc<Sandbox>>,
    /// The revocation log as citizens' calls see it, when they are served (with
    /// `identity`): they fail closed until its first sync, so `citypass dev` waits for it.
    pub revocations: Option<RevocationView>,
}

/// Builds the service from `config`: checks, TLS identity, the fare table, the store
/// (PostgreSQL when `database` is set, else memory), PaymentsService with its
/// authorisation table, the expiry pass ([`crate::expiry`]) and, with `sandbox` set,
/// the outbox worker charging through the sandbox provider, and, with `identity` set,
/// the check of citizens' device-signed calls (nonces in Redis when `redis` is set;
/// revoked devices and subjects refused from a follower of the revocation log, which
/// fails closed while its data is older than `revocation.max_age`).
/// Call inside a tokio runtime.
pub async fn build(config: Config) -> Result<Built, BuildError> {
    config.validate().map_err(part("configuration"))?;
    let tls = config.server.load_tls()?;
    let fares = config.fare_table().map_err(part("fare table"))?;
    let settings = config
        .payments
        .tap_settings()
        .map_err(part("configuration"))?;
    let rules = TapRules::new(fares, settings).map_err(part("configuration"))?;
    let store: Arc<dyn PaymentsStore> = match &config.database {
        Some(database) => Arc::new(
            PostgresStore::connect(database.url.expose(), database.max_connections)
                .await
                .map_err(part("PostgreSQL store"))?,
        ),
        None => {
            tracing::info!("store: in memory (no database): data is lost on restart");
            Arc::new(MemoryStore::new())
        }
    };
    let payments = Payments::new(store, rules).with_server_clock(
        Arc::new(citypass_token::unix_now),
        config.payments.max_clock_skew,
    );
    let notification_keys = config.notification_keys().map_err(part("configuration"))?;
    let mut api = PaymentsApi::new(payments.clone(), config.payments.max_clock_skew)
        .with_late_tap_window(config.payments.late_tap_window)
        .with_notification_keys(notification_keys);
    let mut revocation_view = None;
    if let Some(identity) = &config.identity {
        let nonces = open_nonce_store(
            config.redis.as_ref(),
            &config.redis_key_prefix,
            config.citizen.nonce_capacity,
            config.server.tls.as_ref().map(|t| t.ca_file.as_path()),
        )
        .await
        .map_err(part("Redis nonce store"))?;
        let channel = identity
            .channel(tls.as_ref())
            .map_err(part("identity client"))?;
        let directory = GrpcDirectory::new(
            citypass_identity_client::client(channel),
            DeviceCache::new(
                config.citizen.identity_cache_ttl,
                config.citizen.identity_cache_capacity,
            ),
        );
        // `validate` made sure the log is configured whenever identity is.
        let settings = config
            .revocation
            .as_ref()
            .ok_or_else(|| part("configuration")(Error::Config("revocation is not set".into())))?;
        let revocations = FollowerCheck::start(
            settings,
            config.revocation_redis(),
            tls.as_ref(),
            config.server.tls.as_ref().map(|t| t.ca_file.as_path()),
        )
        .map_err(part("revocation follower"))?;
        revocation_view = Some(revocations.view().clone());
        api = api.with_citizens(Citizens::new(
            ProofVerifier::new(config.citizen.proof_freshness, nonces),
            Arc::new(directory),
            Arc::new(revocations),
        ));
    } else {
        tracing::warn!("no identity service is configured: citizens' calls answer UNAVAILABLE");
    }
    let service = api
        .into_server()
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let server = Server::new(config.server.clone());
    crate::expiry::spawn(
        &payments,
        config.payments.expiry_interval,
        server.draining(),
    );
    let sandbox = match &config.sandbox {
        Some(settings) => {
            let sandbox = Arc::new(Sandbox::new(SandboxConfig {
                delay: settings.delay,
                timeouts_after_success: settings.timeouts_after_success,
            }));
            OutboxWorker::new(payments.store().clone(), sandbox.clone())
                .spawn(config.payments.outbox_interval, server.draining());
            Some(sandbox)
        }
        None => {
            tracing::warn!(
                "no payment provider is configured: charges stay in the outbox until one is"
            );
            None
        }
    };
    let server = server
        .add_service(service, &AUTHORIZATION)
        .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET);
    Ok(Built {
        server: server.tls(tls),
        payments,
        sandbox,
        revocations: revocation_view,
    })
}
