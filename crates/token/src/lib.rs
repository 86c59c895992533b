//! The citypass code format: signed, short-lived QR codes, without I/O.
//!
//! Three objects, all COSE_Sign1 (RFC 9052, tag 18) over CWT claims (RFC 8392):
//!
//! - the **online token** (`CP1:`), signed by the issuer with Ed25519, ~60 s of life;
//! - the **device certificate**, the issuer's signature over a fresh P-256 offline
//!   key made by the phone (`cnf`, RFC 8747), at most a day of life;
//! - the **offline code** (`CP2:`), signed on the phone with that key (ES256), the
//!   certificate embedded, so an offline gate needs only the issuer's public keys.
//!
//! Revocation snapshots are signed by a key of their own ([`SnapshotKey`]), published
//! beside the code keys with another usage ([`KeyUsage`]): a verifier takes codes only
//! from code keys and snapshots only from snapshot keys.
//!
//! Codes travel as Base45 text (RFC 9285) behind a context prefix, which keeps the QR
//! in alphanumeric mode. The phone SDK, the offline gate and every service share this
//! crate, which is why it does no I/O and depends on no other citypass crate.
//!
//! Decoding is strict and bounded: a size cap before Base45, a non-recursive
//! structural check before any CBOR parser (no indefinite lengths, bounded depth and
//! sizes), `alg` only from the protected header and pinned per key, unknown critical
//! headers refused, and an exact `typ` per object kind. Every failure is its own
//! [`TokenError`] variant.
#![forbid(unsafe_code)]

#[cfg(feature = "batch")]
mod batch;
mod bounds;
mod certificate;
mod claims;
mod clock;
mod envelope;
mod error;
mod ids;
mod inspect;
mod issuer;
mod keyring;
mod keys;
mod keyset;
mod offline;
mod online;
mod qr;
mod scope;
mod seal;
mod signature_check;
mod signed_message;
mod snapshot_key;
mod subject_key_file;
mod text;
mod validation;

#[cfg(feature = "batch")]
pub use batch::{BatchOutcome, MIN_BATCH, check_batch};
pub use certificate::{VerifiedCertificate, sign_certificate, verify_certificate};
pub use claims::{CertificateClaims, OfflineClaims, OnlineClaims};
pub use clock::unix_now;
pub use envelope::ObjectType;
pub use error::TokenError;
pub use ids::{
    CertSerial, Cti, DeviceId, ID_LEN, IdError, IdText, SubjectId, parse_id, parse_lower_hex,
};
pub use inspect::{CertificateSummary, Inspection, inspect};
pub use issuer::{IssuedCertificate, IssuedToken, Issuer};
pub use keyring::{Keyring, SubjectKeyStatus};
pub use keys::{Algorithm, DeviceKey, IssuerKey, Kid, PublicKey};
pub use keyset::{KeySet, KeyStatus, KeyUsage, PublishedKey};
pub use offline::{
    OfflineSigner, UncheckedOffline, VerifiedOffline, read_offline, sign_offline, verify_offline,
};
pub use online::{UncheckedOnline, VerifiedToken, read_online, sign_online, verify_online};
pub use qr::Qr;
pub use scope::{Scene, Scopes};
pub use seal::{SEAL_VERSION, SubjectKey, SubjectKeys, SubjectOpener, sealed_key_id};
pub use signature_check::SignatureCheck;
pub use signed_message::{
    RequestProof, binding_authorization_message, binding_message, sha256, sign_key_set,
    sign_snapshot, verify_key_set, verify_snapshot,
};
pub use snapshot_key::SnapshotKey;
pub use subject_key_file::SubjectKeyFile;
pub use text::{CodeKind, MAX_TEXT_LEN, kind_of};
pub use validation::Validation;

/// The randomness source to pass where a function takes `&dyn SecureRandom`.
pub use ring::rand::{SecureRandom, SystemRandom};
