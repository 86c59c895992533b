//! The composition root: a [`Config`] in, a ready [`Server`] out. `main.rs`,
//! `citypass dev` and the tests all build the service here, so what they run is one
//! wiring.

use std::sync::Arc;

use citypass_runtime::{BuildError, Server, part};

use crate::authorization::AUTHORIZATION;
use crate::config::Config;
use crate::directory::GrpcDirectory;
use crate::fanout::{LocalPublisher, Publisher, RedisPublisher};
use crate::log::{Log, MemoryLog, PostgresLog};
use crate::registry::Registry;
use crate::service::RevocationApi;
use crate::signer::SnapshotKeySigner;

/// Largest request the service decodes: its requests are a target and a note.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The built service: the server to run, and a handle on the logic.
#[derive(Debug)]
pub struct Built {
    /// Serve it with `run()` or `serve(listener, shutdown)`.
    pub server: Server,
    /// The logic (fan-out counters, the tail), for tests and embedding.
    pub revocations: Arc<Registry>,
}

/// Builds the service from `config`: TLS identity, log, fan-out, identity client,
/// snapshot signer, RevocationService. Call inside a tokio runtime.
pub async fn build(config: Config) -> Result<Built, BuildError> {
    config.validate().map_err(part("configuration"))?;
    let tls = config.server.load_tls()?;
    let log: Arc<dyn Log> = match &config.database {
        Some(database) => Arc::new(
            PostgresLog::connect(database.url.expose(), database.max_connections)
                .await
                .map_err(part("PostgreSQL log"))?,
        ),
        None => {
            tracing::info!("log: in memory (no database): revocations are lost on restart");
            Arc::new(MemoryLog::new())
        }
    };
    let publisher: Arc<dyn Publisher> = match &config.redis {
        Some(redis) => {
            let ca_file = config.server.tls.as_ref().map(|t| t.ca_file.as_path());
            let client =
                citypass_redis::from_config(redis, ca_file).map_err(part("Redis fan-out"))?;
            Arc::new(
                RedisPublisher::connect_client(
                    client,
                    config.stream_key.clone(),
                    config.stream_max_len,
                    redis.timeout,
                )
                .await
                .map_err(part("Redis fan-out"))?,
            )
        }
        None => {
            tracing::info!("fan-out: in process only (no redis): verifiers must use Watch");
            Arc::new(LocalPublisher::new(4096))
        }
    };
    let channel = config
        .identity
        .channel(tls.as_ref())
        .map_err(part("identity client"))?;
    let directory = GrpcDirectory::new(channel, config.identity.request_timeout);
    // The snapshot key only: no code-signing or sealing key is ever loaded here.
    let signer = SnapshotKeySigner::from_file(
        &config.snapshot_key.path,
        config.snapshot_key.reload_interval,
        config.environment,
    )
    .map_err(part("snapshot signing key"))?;
    let server = Server::new(config.server).tls(tls);
    let revocations = Arc::new(
        Registry::new(
            config.revocation.clone(),
            log,
            publisher,
            Arc::new(directory),
            Arc::new(signer),
        )
        .map_err(part("revocation settings"))?
        .ends_watches_on(server.draining()),
    );
    let service = RevocationApi::new(revocations.clone())
        .into_server()
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let server = server
        .add_service(service, &AUTHORIZATION)
        .file_descriptor_set(citypass_proto::FILE_DESCRIPTOR_SET);
    Ok(Built {
        server,
        revocations,
    })
}
