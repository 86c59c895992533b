//! citypass-pseudonym: the keyed pseudonyms a subject is known by outside identity,
//! computed in one place so that identity (which stores some of them at enrolment) and
//! the verifier (which derives the others per scan) always agree.
//!
//! - [`key`]: an HMAC key as configured (hex, or `dev:…` for development);
//! - [`hmac_keys`]: HMAC keys with ids, the current one first, for rotation;
//! - [`scene`]: scene pseudonyms of the subject id (transit, hospital, one per venue);
//! - [`government`]: the government-service pseudonym of a resident ID number.
//!
//! No I/O and nothing of the service stack: only `ring` and the shared id types.

#![forbid(unsafe_code)]

pub mod government;
pub mod hmac_keys;
pub mod key;
pub mod scene;

pub use government::{GOVERNMENT_CONTEXT, GovernmentPseudonyms};
pub use hmac_keys::{HmacKeys, KeyError, KeyId};
pub use key::{Key, MIN_KEY_BYTES};
pub use scene::{Pseudonym, Pseudonyms, SCENE_CONTEXT, Scope};
