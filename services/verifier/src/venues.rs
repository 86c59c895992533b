//! Scenic venues' daily counts: how many entered a venue on a local day, and how often
//! each visitor did, counted once per gate scan.
//!
//! [`VenueStore::enter`] admits one entry or says why not, in one atomic step per
//! venue-day: a scan already counted gets its first counts back (a retry counts
//! nothing twice); a visitor at the venue's `entries_per_day` is `AlreadyEntered`
//! (checked first: the more precise reason); a venue at its capacity is
//! `CapacityReached`. Refusals are not recorded (the replay store settles them).
//!
//! Backends: [`MemoryVenueStore`] (one process: `citypass dev`, tests, benches) and
//! [`RedisVenueStore`] (single Redis or Cluster; one hash per venue-day,
//! `<prefix>{v:<venue>:<day>}`, one Lua script per entry, expiring after the venue's
//! day). The contract suite (`tests/venue_contract.rs`) holds both to these rules. No
//! personal data: visitors are hashes of venue pseudonyms, scans hashes of gate and
//! scan id.

mod memory;
mod redis;

use citypass_runtime::Deadline;
use futures::future::BoxFuture;

pub use memory::MemoryVenueStore;
pub use redis::RedisVenueStore;

/// One entry to count.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The venue (the gate registry's `venue`).
    pub venue: &'a str,
    /// The venue's local day (days since 1970-01-01, local).
    pub day: i64,
    /// The visitor (a hash of their venue pseudonym).
    pub visitor: [u8; 16],
    /// The gate's scan (a hash of gate and scan id): counted once.
    pub scan: [u8; 16],
    /// The venue's entries a day.
    pub capacity: u32,
    /// Entries a day per visitor.
    pub entries_per_day: u32,
    /// The last second (Unix) the day's counts are kept.
    pub forget_at: u64,
}

/// What the store says about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted (now, or by an earlier try of the same scan).
    Entered {
        /// The visitor's entries today, this one included.
        entries_today: u32,
        /// The venue's capacity left today.
        remaining_capacity: u32,
    },
    /// The venue is full for the day.
    CapacityReached,
    /// The visitor has entered as often as the venue allows today.
    AlreadyEntered,
}

/// Why the store could not answer (the scene's fail mode decides).
#[derive(Debug, thiserror::Error)]
pub enum VenueError {
    /// Redis failed.
    #[error("venue store backend failed")]
    Backend(#[source] ::redis::RedisError),
    /// The deadline passed first.
    #[error("venue store did not answer in time")]
    Timeout,
    /// Redis holds a value this build cannot read.
    #[error("venue store holds an unreadable count")]
    Corrupt,
    /// The in-memory store holds as many venue-days as it may.
    #[error("venue store full")]
    Full,
}

/// Venues' daily counts; see the module documentation.
pub trait VenueStore: Send + Sync + 'static {
    /// Counts `entry` unless its visitor or venue is at the day's limit.
    fn enter<'a>(
        &'a self,
        entry: Entry<'a>,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Admission, VenueError>>;
}
