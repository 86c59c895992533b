//! What a service's `build(config)` returns when a part cannot be made.
//!
//! Every service composes itself the same way (TLS, stores, upstream clients, the tonic
//! service, the [`crate::Server`]); a failure names the part and keeps its cause, so
//! `main` and `citypass dev` print "identity client: upstream URL …" rather than a
//! bare transport error.

use std::sync::Arc;

use crate::config::ServerConfig;
use crate::tls::Tls;

/// A part of a service that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{part}: {source}")]
pub struct BuildError {
    /// Which part (`"TLS"`, `"identity client"`, `"PostgreSQL log"`, …).
    pub part: &'static str,
    /// Why.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl BuildError {
    /// A build error for `part`.
    pub fn new(
        part: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BuildError {
            part,
            source: source.into(),
        }
    }
}

/// `map_err(part("identity client"))`: wraps an error with the part it broke.
pub fn part<E: std::error::Error + Send + Sync + 'static>(
    part: &'static str,
) -> impl FnOnce(E) -> BuildError {
    move |source| BuildError::new(part, source)
}

impl ServerConfig {
    /// The process's TLS identity from `tls`, following its files, or `None` for a
    /// plaintext process. Call inside a tokio runtime.
    pub fn load_tls(&self) -> Result<Option<Arc<Tls>>, BuildError> {
        let Some(files) = &self.tls else {
            return Ok(None);
        };
        let tls = Tls::from_files(files).map_err(part("TLS"))?;
        tls.spawn_reloader();
        Ok(Some(tls))
    }
}
