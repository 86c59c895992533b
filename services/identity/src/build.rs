//! The composition root: a [`IdentityConfig`] in, a ready [`Server`] out. `main.rs`,
//! `citypass dev` and the tests all build the service here.

use std::sync::Arc;

use citypass_runtime::{BuildError, Server, part};

use crate::authorization::AUTHORIZATION;
use crate::config::IdentityConfig;
use crate::realname::RealNameCheck;
use crate::store::{MemoryStore, PostgresStore, Store};

/// Largest request the service decodes: enrolment (a document number and a name),
/// binding (a public key and a signature) and a face enrolment (512 floats, 2 KiB, and
/// a device proof) are far smaller.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The built service.
#[derive(Debug)]
pub struct Built {
    /// Serve it with `run()` or `serve(listener, shutdown)`.
    pub server: Server,
}

/// Builds the service from `config`: TLS identity, the store (PostgreSQL when
/// `database` is set, else memory), the real-name check (the provider's API when
/// `real_name` is set, else the sandbox), IdentityService. Call
/// inside a tokio runtime.
pub async fn build(config: IdentityConfig) -> Result<Built, BuildError> {
    config.validate().map_err(part("configuration"))?;
    let real_name = crate::real_name_check(&config).map_err(part("real-name check"))?;
    let tls = config.server.load_tls()?;
    let store: Arc<dyn Store> = match &config.database {
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
    let server = with_store(&config, store, real_name)?;
    Ok(Built {
        server: server.tls(tls),
    })
}

fn with_store(
    config: &IdentityConfig,
    store: Arc<dyn Store>,
    real_name: Arc<dyn RealNameCheck>,
) -> Result<Server, BuildError> {
    let service = crate::service_with(config, store, real_name)
        .map_err(part("identity service"))?
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    Ok(Server::new(config.server.clone())
        .add_service(service, &AUTHORIZATION)
        .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET))
}
