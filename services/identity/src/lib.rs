//! IdentityService: citizens (subjects) under opaque ids, their devices and the
//! device certificates issued for them (`proto/citypass/v1/identity.proto`).
//!
//! A citizen enrols with an identity document; the number is validated (GB 11643 for a
//! resident ID), checked with the national real-name system, and kept only as a keyed
//! hash; the name only masked. A refused enrolment tells its caller nothing about
//! anyone (see [`identity`]). The citizen's phone then binds a P-256 key by signing a
//! single-use server challenge. The issuer reads devices ([`GetDevice`]) to decide
//! whether to issue codes, and records the device certificates it makes; the
//! revocation service lists them.
//!
//! One module per concept:
//!
//! - [`config`]: settings, dev defaults, and what production refuses;
//! - [`authorization`]: who may call each RPC;
//! - [`build`]: the composition root;
//! - [`error`]: the one error type and its gRPC codes;
//! - [`ids`]: the subject/device id format (a contract with the issuer);
//! - [`document`]: document number checks and the keyed hash;
//! - `citypass_pseudonym` (shared with the verifier): HMAC keys with ids, the transit
//!   account (derived at enrolment and stored) and the government-service pseudonym
//!   (derived at enrolment of a resident ID and stored);
//! - [`attempts`]: limits on enrolment attempts per caller and per document;
//! - [`name`]: name validation and masking;
//! - [`realname`]: the national real-name check (trait, sandbox, and the provider's
//!   HTTPS API for production, `realname/tencent.rs`);
//! - [`retries`]: Enrol's request ids, so that a retry gets the first answer;
//! - [`challenge`]: binding challenges;
//! - [`model`]: the records logic and stores share;
//! - [`store`]: the store trait, [`MemoryStore`] and [`PostgresStore`];
//! - [`face`]: face enrolment with consent (issue 14): consents per purpose, the
//!   guardian rule, sealed templates, withdrawal, the processing record, the filing
//!   count and the verifier's feed;
//! - [`device_call`]: the citizen's device-signed calls to identity (the face calls),
//!   checked with `citypass_device_proof`;
//! - [`identity`]: the logic ([`Identity`]);
//! - [`service`]: the thin tonic layer ([`IdentityApi`]).
//!
//! [`build`] is the one composition root: `main.rs`, `citypass dev` and the tests turn
//! an [`IdentityConfig`] into a running server through it.
//!
//! [`GetDevice`]: citypass_proto::v1::identity_service_server::IdentityService::get_device

#![forbid(unsafe_code)]

use std::sync::Arc;

pub mod attempts;
pub mod authorization;
pub mod build;
pub mod challenge;
pub mod config;
mod convert;
pub mod device_call;
pub mod document;
pub mod enrolment;
pub mod error;
pub mod face;
pub mod identity;
pub mod ids;
pub mod model;
pub mod name;
pub mod realname;
pub mod retries;
pub mod service;
pub mod store;

pub use authorization::AUTHORIZATION;
pub use build::{Built, MAX_REQUEST_BYTES, build};
pub use citypass_proto::v1::identity_service_server::IdentityServiceServer;
pub use config::{Environment, IdentityConfig, Secret};
pub use error::Error;
pub use identity::Identity;
pub use ids::{DeviceId, SubjectId};
pub use realname::tencent::{RealNameConfig, Tencent};
pub use realname::{Outcome, RealNameCheck, Sandbox, SandboxConfig, SandboxRule};
pub use service::IdentityApi;
pub use store::{FaceStore, MemoryStore, PostgresStore, Store};

/// The gRPC service, ready for `citypass_runtime::Server::add_service`.
pub type IdentityServer = IdentityServiceServer<IdentityApi>;

/// Builds the identity gRPC service over `store`, with the real-name check `config`
/// names ([`real_name_check`]). Fails on an unusable configuration, including any
/// development shortcut when `config.environment` is production.
pub fn service(config: &IdentityConfig, store: Arc<dyn Store>) -> Result<IdentityServer, Error> {
    service_with(config, store, real_name_check(config)?)
}

/// The real-name check `config` names: the provider's API (`real_name`), else the
/// sandbox (`real_name_sandbox`), which production refuses.
pub fn real_name_check(config: &IdentityConfig) -> Result<Arc<dyn RealNameCheck>, Error> {
    config.check_sandbox_allowed()?;
    Ok(match &config.real_name {
        Some(provider) => Arc::new(Tencent::new(provider)?),
        None => Arc::new(Sandbox::new(&config.real_name_sandbox)?),
    })
}

/// Builds the identity gRPC service over `store` and any real-name check.
pub fn service_with(
    config: &IdentityConfig,
    store: Arc<dyn Store>,
    real_name: Arc<dyn RealNameCheck>,
) -> Result<IdentityServer, Error> {
    let identity = Identity::new(config, store, real_name)?;
    Ok(IdentityServiceServer::new(IdentityApi::new(identity)))
}
