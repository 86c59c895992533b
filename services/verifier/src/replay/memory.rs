//! The in-memory replay store: one process's marks (`citypass dev`, tests), bounded,
//! refusing rather than forgetting when full of live entries. It keeps the same rules as
//! the Redis scripts, and the contract suite (`tests/replay_contract.rs`) holds both to
//! them.

use std::collections::HashMap;
use std::sync::Mutex;

use citypass_runtime::Deadline;
use citypass_token::{CertSerial, Cti};
use futures::future::BoxFuture;

use super::{Arrival, Mark, Outcome, ReplayError, ReplayStore, Settled, StoredAnswer, Use, owner};

#[derive(Debug, Clone)]
struct Owned {
    owner: [u8; 16],
    /// `None`: reserved, PENDING.
    answer: Option<StoredAnswer>,
}

impl Owned {
    /// What the store says to a scan that finds this mark.
    fn outcome(&self, owner: [u8; 16]) -> Outcome {
        if self.owner != owner {
            return Outcome::Replayed;
        }
        match &self.answer {
            Some(answer) => Outcome::Retry(answer.clone()),
            None => Outcome::Pending,
        }
    }

    /// Settles `answer` if this is `owner`'s PENDING mark.
    fn settle(&mut self, owner: [u8; 16], answer: StoredAnswer) -> Settled {
        if self.owner != owner {
            return Settled::Lost;
        }
        match &self.answer {
            Some(first) => Settled::Before(first.clone()),
            None => {
                self.answer = Some(answer);
                Settled::Now
            }
        }
    }
}

#[derive(Debug)]
struct Certificate {
    highest: u64,
    forget_at: u64,
    uses: HashMap<u64, Owned>,
}

#[derive(Debug, Default)]
struct Memory {
    scans: HashMap<[u8; 16], ([u8; 32], u64)>,
    tokens: HashMap<Cti, (Owned, u64)>,
    /// Face-pass marks: short-lived (the face-pass window), so an expired one is
    /// forgotten when met, not only when the store is full.
    faces: HashMap<[u8; 16], (Owned, u64)>,
    certificates: HashMap<CertSerial, Certificate>,
    /// The offline uses held under all certificates: each is an entry of its own, or
    /// one phone's certificate could fill the memory past its capacity.
    offline_uses: usize,
}

impl Memory {
    fn len(&self) -> usize {
        self.scans.len()
            + self.tokens.len()
            + self.faces.len()
            + self.certificates.len()
            + self.offline_uses
    }

    fn prune(&mut self, now: u64) {
        self.scans.retain(|_, (_, forget_at)| *forget_at >= now);
        self.tokens.retain(|_, (_, forget_at)| *forget_at >= now);
        self.faces.retain(|_, (_, forget_at)| *forget_at >= now);
        let mut forgotten = 0;
        self.certificates.retain(|_, c| {
            let keep = c.forget_at >= now;
            if !keep {
                forgotten += c.uses.len();
            }
            keep
        });
        self.offline_uses -= forgotten;
    }
}

/// The in-memory store (`citypass dev`, tests): one process's marks, bounded; when
/// full of live marks it refuses ([`ReplayError::Full`]) rather than forget one.
#[derive(Debug)]
pub struct MemoryReplayStore {
    capacity: usize,
    inner: Mutex<Memory>,
}

impl MemoryReplayStore {
    /// A store for at most `capacity` live entries (scan claims and marks).
    pub fn new(capacity: usize) -> Self {
        MemoryReplayStore {
            capacity,
            inner: Mutex::new(Memory::default()),
        }
    }

    fn record_now(&self, used: &Use<'_>, now: u64) -> Result<Outcome, ReplayError> {
        let mut memory = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // At most three new entries: the scan claim, a mark (or certificate) and a use.
        if memory.len() + 3 > self.capacity {
            memory.prune(now);
            if memory.len() + 3 > self.capacity {
                return Err(ReplayError::Full);
            }
        }
        let owner = owner(used.gate_id, used.scan_id);
        match memory.scans.get(&owner) {
            Some((fingerprint, _)) if *fingerprint != used.fingerprint => {
                return Ok(Outcome::ScanIdConflict);
            }
            Some(_) => {}
            None => {
                memory
                    .scans
                    .insert(owner, (used.fingerprint, used.forget_at));
            }
        }
        let mine = Owned {
            owner,
            answer: used.answer.clone(),
        };
        match used.mark {
            Mark::Token { cti } => match memory.tokens.get(&cti) {
                Some((first, _)) => Ok(first.outcome(owner)),
                None => {
                    memory.tokens.insert(cti, (mine, used.forget_at));
                    Ok(Outcome::First)
                }
            },
            Mark::Face { digest } => match memory.faces.get(&digest) {
                Some((first, forget_at)) if *forget_at >= now => Ok(first.outcome(owner)),
                _ => {
                    memory.faces.insert(digest, (mine, used.forget_at));
                    Ok(Outcome::First)
                }
            },
            Mark::Offline { serial, counter } => {
                let certificate =
                    memory
                        .certificates
                        .entry(serial)
                        .or_insert_with(|| Certificate {
                            highest: 0,
                            forget_at: used.forget_at,
                            uses: HashMap::new(),
                        });
                if let Some(first) = certificate.uses.get(&counter) {
                    return Ok(first.outcome(owner));
                }
                if used.arrival == Arrival::Live
                    && !certificate.uses.is_empty()
                    && counter <= certificate.highest
                {
                    return Ok(Outcome::CounterReplay);
                }
                certificate.highest = certificate.highest.max(counter);
                certificate.forget_at = certificate.forget_at.max(used.forget_at);
                certificate.uses.insert(counter, mine);
                memory.offline_uses += 1;
                Ok(Outcome::First)
            }
        }
    }
}

impl MemoryReplayStore {
    fn settle_now(&self, used: &Use<'_>, answer: StoredAnswer) -> Settled {
        let mut memory = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let owner = owner(used.gate_id, used.scan_id);
        match used.mark {
            Mark::Token { cti } => memory
                .tokens
                .get_mut(&cti)
                .map_or(Settled::Lost, |(first, _)| first.settle(owner, answer)),
            Mark::Face { digest } => memory
                .faces
                .get_mut(&digest)
                .map_or(Settled::Lost, |(first, _)| first.settle(owner, answer)),
            Mark::Offline { serial, counter } => memory
                .certificates
                .get_mut(&serial)
                .and_then(|certificate| certificate.uses.get_mut(&counter))
                .map_or(Settled::Lost, |first| first.settle(owner, answer)),
        }
    }
}

impl ReplayStore for MemoryReplayStore {
    fn record<'a>(
        &'a self,
        used: Use<'a>,
        now: u64,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Outcome, ReplayError>> {
        Box::pin(std::future::ready(self.record_now(&used, now)))
    }

    fn settle<'a>(
        &'a self,
        used: Use<'a>,
        answer: StoredAnswer,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Settled, ReplayError>> {
        Box::pin(std::future::ready(Ok(self.settle_now(&used, answer))))
    }
}
