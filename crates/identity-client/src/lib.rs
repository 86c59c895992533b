//! What services ask the identity service, read once for all of them.
//!
//! Identity owns subjects and devices. The issuer (before it issues) and the payments
//! service (before a citizen's device-signed call) both read a device: its bound key,
//! its binding state, its subject and the subject's standing; payments also reads the
//! subject's transit account. Services never link each other's crates, so they call
//! identity over gRPC; what they share is here:
//!
//! - [`device`]: [`DeviceRecord`] and how a GetDevice answer is checked and read;
//! - [`calls`]: the calls themselves over the generated client ([`get_device`],
//!   [`transit_account`]), the deadline passed on, and how a failure is read;
//! - [`error`]: [`IdentityError`], why identity could not answer;
//! - [`cache`]: GetDevice answers reused for a few seconds, misses for one
//!   ([`DeviceCache`]).
#![forbid(unsafe_code)]

pub mod cache;
pub mod calls;
pub mod device;
pub mod error;

pub use cache::{DeviceCache, MISS_TTL};
pub use calls::{
    IdentityClient, client, connect_lazy, get_device, request, transit_account, transport_error,
};
pub use device::DeviceRecord;
pub use error::IdentityError;
