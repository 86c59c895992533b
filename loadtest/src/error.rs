//! Why a load run could not start or finish: one variant per failing part, so the
//! binary's message names it (the library never panics on a bad file or argument).

use std::path::PathBuf;

/// A load run's failure.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--mix` does not parse.
    #[error("the mix {text:?}: {problem}")]
    Mix { text: String, problem: String },
    /// The rate, duration or cap is out of range.
    #[error("{0}")]
    Settings(String),
    /// The in-process stack did not start.
    #[error("starting the in-process stack: {0}")]
    Stack(#[from] citypass_stack::StackError),
    /// A file of the target (`--keys-dir`) is missing or unusable.
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    /// No gate of the registry has a certificate to load it with.
    #[error("no sample gate is usable: {0}")]
    NoGates(String),
    /// Signing or reading a code failed.
    #[error("making the codes: {0}")]
    Token(#[from] citypass_token::TokenError),
    /// A client could not be made for the verifier's URL.
    #[error("the verifier's URL: {0}")]
    Upstream(#[from] citypass_runtime::upstream::UpstreamError),
    /// TLS material was refused.
    #[error("TLS: {0}")]
    Tls(#[from] citypass_runtime::tls::TlsError),
    /// The codes to be replayed could not be used once before the run.
    #[error("using the replayed codes once before the run: {0}")]
    Spend(String),
    /// The bare verify server could not start.
    #[error("the bare verify server: {0}")]
    Ceiling(String),
    /// The floor's Redis (`--floor-scripts`) did not answer.
    #[error("the floor's Redis: {0}")]
    FloorRedis(#[from] redis::RedisError),
    /// A server started as a child process failed to start or to become ready.
    #[error("{name}: {problem}")]
    Child { name: String, problem: String },
    /// A VerifyStream could not be opened or broke.
    #[error("VerifyStream: {0}")]
    Stream(String),
    /// The citizens' apps could not be enrolled, bound or connected.
    #[error("the citizens' apps: {0}")]
    Citizens(String),
    /// A revocation of the propagation measurement failed.
    #[error("revocation: {0}")]
    Revocation(String),
    /// The sweep's chart could not be drawn.
    #[error("the chart: {0}")]
    Chart(String),
    /// Requests were still unanswered long after their deadline.
    #[error("{0} requests still unanswered after the drain deadline")]
    Unanswered(usize),
    /// The JSON report could not be written.
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}
