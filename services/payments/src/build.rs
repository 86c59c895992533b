//! The composition root: a [`Config`] in, a ready [`Server`] out. `main.rs` and the
//! tests build the service here (`citypass dev` will too).

use std::sync::Arc;

use citypass_runtime::{BuildError, Server, part};

use crate::authorization::AUTHORIZATION;
use crate::config::Config;
use crate::payments::Payments;
use crate::service::PaymentsApi;
use crate::store::{MemoryStore, PaymentsStore, PostgresStore};
use crate::tap::TapRules;

/// Largest request the service decodes: taps and links are far smaller.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The built service.
pub struct Built {
    /// Serve it with `run()` or `serve(listener, shutdown)`.
    pub server: Server,
    /// The logic behind it (for tests and, later, the outbox worker).
    pub payments: Payments,
}

/// Builds the service from `config`: checks, TLS identity, the fare table, the store
/// (PostgreSQL when `database` is set, else memory), PaymentsService with its
/// authorisation table, and the expiry pass ([`crate::expiry`]). Call inside a tokio
/// runtime.
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
    let payments = Payments::new(store, rules);
    let service = PaymentsApi::new(payments.clone())
        .into_server()
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let server = Server::new(config.server.clone());
    crate::expiry::spawn(
        &payments,
        config.payments.expiry_interval,
        server.draining(),
    );
    let server = server
        .add_service(service, &AUTHORIZATION)
        .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET);
    Ok(Built {
        server: server.tls(tls),
        payments,
    })
}
