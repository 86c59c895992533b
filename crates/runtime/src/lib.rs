//! What every citypass service reuses, so that services differ only in their logic.
//!
//! A service's `main.rs` is: load its configuration ([`config::load`]), start telemetry
//! ([`telemetry::init`]), build its stores and handlers, and [`Server::run`] them. The
//! server then brings the same surroundings to every service:
//!
//! - [`config`]: a YAML file, then `CITYPASS_…` environment variables on top;
//! - [`telemetry`]: logs and OpenTelemetry traces, OTLP export when configured;
//! - [`trace_context`]: W3C `traceparent` injected by clients and extracted by servers;
//! - [`stack`]: timeout, concurrency limit and load shedding, answered as gRPC statuses;
//! - [`deadline`]: each call's deadline, for the work (and downstream calls) it causes;
//! - [`health`] and reflection, on every server, and the [`probe`] listener for the
//!   kubelet's plaintext gRPC probes;
//! - [`key_file`]: key files loaded at start and followed (dev keys refused in
//!   production);
//! - [`shutdown`]: SIGTERM → `NOT_SERVING` → stop accepting → drain → exit;
//! - [`status`]: the one place where errors become `tonic::Status`.
//!
//! This crate does not know the citypass API: callers pass their generated services and
//! descriptor sets in.

#![forbid(unsafe_code)]

pub mod authz;
pub mod build;
pub mod caller;
pub mod config;
pub mod deadline;
pub mod environment;
pub mod health;
pub mod key_file;
pub mod outcome;
pub mod peer;
pub mod probe;
mod reflection;
pub mod scrape;
pub mod secret;
pub mod serve;
pub mod shed;
pub mod shutdown;
pub mod span_fields;
pub mod stack;
pub mod status;
pub mod telemetry;
pub mod text;
pub mod tls;
pub mod trace_context;
pub mod upstream;

pub use authz::{Allow, Policy, Rule};
pub use build::{BuildError, part};
pub use caller::{Caller, Principal, Role};
pub use config::{ConfigError, ServerConfig, TransportError};
pub use deadline::Deadline;
pub use environment::Environment;
pub use health::HealthHandle;
pub use key_file::{FollowedKeyFile, KeyFileError, KeyFormat};
pub use reflection::ReflectionError;
pub use secret::Secret;
pub use serve::{Draining, ServeError, Server};
pub use status::{ErrorKind, IntoStatus, ServiceError, reason_of, status_with_reason, to_status};
pub use telemetry::{TelemetryError, TelemetryGuard};
pub use tls::{Tls, TlsConfig, TlsError};
pub use tonic_health::ServingStatus;
pub use trace_context::{InjectTraceContext, InjectTraceContextLayer};
pub use upstream::{
    Resolve, SystemResolver, UpstreamConfig, UpstreamError, connector_tls_endpoint,
};
