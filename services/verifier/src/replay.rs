//! Single use across every gate: first use wins, and a gate's retry gets its first
//! answer back.
//!
//! # The mark and the answer, in one step
//!
//! A code that passes every other step leaves a **mark**: its `cti` for an online code;
//! its certificate serial and counter for an offline code (a phone's counter only goes
//! up within a certificate, so a lower counter is an older copy: `COUNTER_REPLAY`). The
//! mark is written **together with the answer the gate gets and the gate's scan**
//! (gate id and `scan_id`), in one atomic step (one Lua script on the mark's key), so
//! no crash can leave a mark without its answer: a gate that retries the same scan
//! after a timeout finds its own scan on the mark and gets the stored answer
//! (`idempotent_replay`), never a false `REPLAYED`. Another scan on the mark is a
//! replay.
//!
//! # Scan ids
//!
//! Before the mark, the gate's scan id is claimed with the code's fingerprint
//! (SHA-256 of its text): a second, different code under a used scan id is
//! `SCAN_ID_CONFLICT` (a gate bug), and leaves that code unused. The claim is a step of
//! its own on purpose: it lives on another key than the mark (see below), and a claim
//! without a mark is harmless (the retry claims again, finds its own fingerprint, and
//! goes on to the mark). Scan ids are claimed only by codes that reach this step: a
//! code refused earlier leaves nothing behind.
//!
//! # Keys (Redis Cluster)
//!
//! Every key carries a hash tag (`{…}`) of what it is about: `{t:<cti>}` for an online
//! mark, `{o:<serial>}` for a certificate's counters, `{s:<hash of gate and scan
//! id>}` for a scan claim. Each script touches one key, so the city's marks spread over
//! the shards of a cluster by code, and no script needs two slots. Keys hold no personal
//! data: random code ids, hashes, and the stored answer (decision, kind, epoch, ages).
//!
//! Marks live until the code expires plus twice the skew (an offline certificate's
//! counters until the certificate does, plus as much): the verifier accepts a code up
//! to and including the second `exp + skew` by its own clock, and Redis, whose clock
//! expires the mark, may run ahead of it by up to the skew. `forget_at` is the last
//! second a mark is kept, whole (Redis: `PEXPIREAT (forget_at + 1) × 1000`).

mod memory;
mod redis;

use std::time::Duration;

use citypass_gate::Presented;
use citypass_runtime::Deadline;
use citypass_token::{CertSerial, CodeKind, Cti};
use futures::future::BoxFuture;

use crate::model::Basis;

pub use memory::MemoryReplayStore;
pub use redis::{Key, RedisReplayStore};

/// What a code leaves when it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    /// An online code: its `cti`.
    Token { cti: Cti },
    /// An offline code: its certificate's serial and its counter.
    Offline { serial: CertSerial, counter: u64 },
}

impl Mark {
    /// The mark `presented` leaves, and the last second (Unix, inclusive) it must be
    /// kept: a skew longer than the code can be accepted, since the store's clock
    /// (Redis) may run ahead of this one by up to the skew; an offline certificate's
    /// counters as long as the certificate.
    pub fn of(presented: &Presented, skew: u64) -> (Mark, u64) {
        match presented {
            Presented::Online { cti, .. } => (
                Mark::Token { cti: *cti },
                presented.forget_at(skew).saturating_add(skew),
            ),
            Presented::Offline {
                serial,
                counter,
                certificate_exp,
                ..
            } => (
                Mark::Offline {
                    serial: *serial,
                    counter: *counter,
                },
                certificate_exp.saturating_add(2 * skew),
            ),
        }
    }
}

/// The answer stored with a mark: what a retried scan gets back. Only ALLOW answers are
/// stored (a mark is left only by a code that passed every step before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The kind of code.
    pub code_kind: CodeKind,
    /// What the first decision used.
    pub basis: Basis,
    /// When it was taken (Unix seconds).
    pub decided_at: u64,
}

/// When a use reaches the store, which decides how an offline counter is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Decided now, at an online gate: a counter must be above every counter already
    /// used under its certificate (a phone's counter only goes up).
    Live,
    /// Uploaded after the fact by a gate that decided offline: uses of one certificate
    /// arrive out of order from different gates, so only a counter already used by
    /// another scan is a replay (a double use); the highest counter still moves up.
    Late,
}

/// One use of a code at one gate.
#[derive(Debug, Clone, Copy)]
pub struct Use<'a> {
    /// The gate (authenticated).
    pub gate_id: &'a str,
    /// The gate's scan id.
    pub scan_id: &'a str,
    /// SHA-256 of the code's text.
    pub fingerprint: [u8; 32],
    /// The code's mark.
    pub mark: Mark,
    /// The last second (Unix, inclusive) the mark must be kept.
    pub forget_at: u64,
    /// The answer to store with the mark.
    pub answer: StoredAnswer,
    /// Live or uploaded (offline counters are judged differently).
    pub arrival: Arrival,
}

/// What the store says about a use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// First use: the mark and the answer are stored.
    First,
    /// The same gate and scan id again: the answer stored by the first try.
    Retry(StoredAnswer),
    /// Used before, by another scan.
    Replayed,
    /// An offline code whose counter is not above one already used for its
    /// certificate.
    CounterReplay,
    /// The scan id was used by this gate with another code.
    ScanIdConflict,
}

/// Why the store could not answer. The decision then fails closed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Redis failed.
    #[error("replay store backend failed")]
    Backend(#[source] ::redis::RedisError),
    /// The call's deadline (or the store's timeout) passed first.
    #[error("replay store did not answer in time")]
    Timeout,
    /// The in-memory store is full of live marks (refuse rather than forget).
    #[error("replay store full")]
    Full,
    /// Redis holds a value this build cannot read.
    #[error("replay store holds an unreadable answer")]
    Corrupt,
    /// The Redis server lacks a command the scripts need.
    #[error("the replay store's Redis is too old: {0}")]
    Unsupported(&'static str),
}

/// Single-use marks with their answers; see the module documentation.
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `used` at `now` (Unix seconds), unless its scan id or mark says
    /// otherwise.
    fn record<'a>(
        &'a self,
        used: Use<'a>,
        now: u64,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Outcome, ReplayError>>;
}

/// The owner of a mark: which gate and scan made it (hashed: fixed length, no text of
/// the gate's in the store).
fn owner(gate_id: &str, scan_id: &str) -> [u8; 16] {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        &[gate_id.as_bytes(), b"\0", scan_id.as_bytes()].concat(),
    );
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest.as_ref()[..16]);
    out
}

// ---------------------------------------------------------------------------------
// Stored answers as text (what Redis holds).

fn kind_name(kind: CodeKind) -> &'static str {
    match kind {
        CodeKind::Online => "cp1",
        CodeKind::Offline => "cp2",
    }
}

fn millis(age: Option<Duration>) -> String {
    age.map_or_else(|| "-".to_owned(), |a| a.as_millis().to_string())
}

impl StoredAnswer {
    /// `1 <kind> <epoch> <revocation age ms|-> <key set age ms|-> <decided_at>`.
    pub fn encode(&self) -> String {
        format!(
            "1 {} {} {} {} {}",
            kind_name(self.code_kind),
            self.basis.revocation_epoch,
            millis(self.basis.revocation_age),
            millis(self.basis.key_set_age),
            self.decided_at
        )
    }

    /// Reads what [`StoredAnswer::encode`] wrote.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        if parts.next()? != "1" {
            return None;
        }
        let code_kind = match parts.next()? {
            "cp1" => CodeKind::Online,
            "cp2" => CodeKind::Offline,
            _ => return None,
        };
        let age = |part: &str| -> Option<Option<Duration>> {
            if part == "-" {
                Some(None)
            } else {
                part.parse().ok().map(|ms| Some(Duration::from_millis(ms)))
            }
        };
        let revocation_epoch = parts.next()?.parse().ok()?;
        let revocation_age = age(parts.next()?)?;
        let key_set_age = age(parts.next()?)?;
        let decided_at = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(StoredAnswer {
            code_kind,
            basis: Basis {
                revocation_epoch,
                revocation_age,
                key_set_age,
            },
            decided_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_answers_round_trip_and_junk_is_refused() {
        let answer = StoredAnswer {
            code_kind: CodeKind::Offline,
            basis: Basis {
                revocation_epoch: 42,
                revocation_age: Some(Duration::from_millis(1500)),
                key_set_age: None,
            },
            decided_at: 1_800_000_000,
        };
        assert_eq!(StoredAnswer::decode(&answer.encode()), Some(answer));
        for junk in [
            "",
            "2 cp1 1 - - 1",
            "1 cp3 1 - - 1",
            "1 cp1 x - - 1",
            "1 cp1 1 - - 1 9",
        ] {
            assert_eq!(StoredAnswer::decode(junk), None, "{junk}");
        }
    }
}
