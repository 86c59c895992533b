//! Why the stack could not start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use citypass_runtime::BuildError;

/// Why the stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The dev PKI could not be made or read.
    #[error("dev PKI: {0}")]
    Pki(#[from] citypass_pki::PkiError),
    /// A service could not be built (the error names the service and the part).
    #[error("{service}: {source}")]
    Build {
        service: &'static str,
        #[source]
        source: BuildError,
    },
    /// The issuer, the verifier or payments never heard from the revocation log, so it would
    /// refuse everything.
    #[error("the revocation log did not answer within {0:?}")]
    RevocationSilent(Duration),
    /// A file of the stack's (the verifier's key set or gate registry) could not be
    /// written.
    #[error("cannot write {path}: {source}")]
    Files {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The error of service `service`'s `build`.
pub(crate) fn built(service: &'static str) -> impl FnOnce(BuildError) -> StackError {
    move |source| StackError::Build { service, source }
}
