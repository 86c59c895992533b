//! The whole revocation state in memory, built by applying the log in epoch order.
//!
//! Verifiers, the issuer and offline gates each hold one [`RevocationSet`] and answer
//! every revocation question from it without I/O. It is fed strictly in epoch order:
//! [`RevocationSet::apply`] refuses an entry that skips an epoch ([`ApplyError::Gap`]),
//! because a set with a hole silently lets the missing revocation pass; the caller
//! resyncs from the log (ListRevocations since [`RevocationSet::epoch`]) instead. Re-applying an
//! entry at or below the epoch is a no-op, so overlapping sources (a snapshot, then
//! Watch; the stream, then List) are harmless.
//!
//! # What the queries mean
//!
//! - A token or certificate entry kills that one code or certificate.
//! - A device, subject or key entry kills everything of its target issued before its
//!   `revoked_before`; what is issued later is unaffected. Except a key revoked as
//!   compromised (`KEY_COMPROMISED`): its holder chooses `iat`, so every code and
//!   certificate it signed is dead, whatever it claims. Several revocations of one
//!   target add up (the latest `revoked_before` counts), and a reinstatement never
//!   resurrects anything an earlier revocation killed.
//! - [`RevocationSet::issuance_blocked_subject`] / `_device`: the target's latest entry
//!   is a revocation, so the issuer must not issue for it (until it is reinstated).
//!
//! # Memory
//!
//! Per target the set keeps only the entries that can still change an answer: the
//! latest one (it decides whether issuance is blocked) and the revocations that no
//! other revocation of the target outdoes (one with a later-or-equal `revoked_before`
//! and a later-or-equal `expires_at`). So repeated revocations of one target cost one
//! or two entries, not one per revocation. [`RevocationSet::prune`] drops entries past
//! their `expires_at`: a token entry expires with the token, a certificate entry with
//! the certificate. Device, subject and key entries have no expiry and are kept for
//! good: a device or subject entry is what blocks issuance until a reinstatement (it
//! cannot expire while it is the target's latest word), and a key entry must outlive
//! every code its key could still sign, which for a stolen key is any `iat` the thief
//! chooses. Their number is the number of revoked devices, subjects and keys, which is
//! small next to the codes they stand for (one entry instead of one per code).
//!
//! # The chain
//!
//! A set also keeps the chain hash of the log up to its epoch ([`RevocationSet::chain`],
//! see [`crate::chain`]): applying an entry moves it on, whatever the set's kinds (an
//! entry of a kind the set does not keep still advances its epoch and its chain). A
//! follower applies what it reads with [`RevocationSet::apply_chained`], which refuses an
//! entry whose carried chain hash does not follow the set's, and compares the set's
//! chain with the service's head to find out whether it ever applied a forged entry.
//!
//! Two sets are equal when they cover the same kinds, are at the same epoch with the
//! same chain hash and hold the same entries; a set rebuilt from a snapshot equals the
//! set it was taken from (pruned at the snapshot's time and restricted to its kinds).

use std::collections::HashMap;
use std::hash::Hash;

use citypass_token::{CertSerial, Cti, DeviceId, Kid, SubjectId};

use crate::chain::{ChainHash, Chained, Head};
use crate::entry::{Entry, EntryError};
use crate::target::{Kinds, Target, TargetKind};

/// Why an entry was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The entry is not the next epoch: entries in between are missing. Resync from the
    /// log (ListRevocations since the set's epoch).
    #[error("revocation log gap: expected epoch {expected}, got {got}")]
    Gap {
        /// The epoch the set needs next.
        expected: u64,
        /// The epoch offered.
        got: u64,
    },
    /// The entry's carried chain hash is not the set's chain followed by the entry: it
    /// is not the entry the set's log continues with (forged, or the set itself holds a
    /// forged entry). Nothing was applied.
    #[error("revocation entry at epoch {epoch} does not follow the chain")]
    Chain {
        /// Its epoch.
        epoch: u64,
    },
    /// The entry itself is invalid.
    #[error("invalid revocation entry at epoch {epoch}: {source}")]
    Invalid {
        /// Its epoch.
        epoch: u64,
        /// What is wrong.
        #[source]
        source: EntryError,
    },
}

/// What [`RevocationSet::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The entry was the next epoch and is now in force.
    Applied,
    /// The set was already at or past the entry's epoch: nothing changed.
    AlreadyApplied,
}

/// The entries of one target that can still change an answer, in epoch order.
type Entries = Vec<Entry>;

/// See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSet {
    epoch: u64,
    chain: ChainHash,
    kinds: Kinds,
    tokens: HashMap<Cti, Entries>,
    certificates: HashMap<CertSerial, Entries>,
    devices: HashMap<DeviceId, Entries>,
    subjects: HashMap<SubjectId, Entries>,
    keys: HashMap<Kid, Entries>,
}

impl Default for RevocationSet {
    fn default() -> Self {
        RevocationSet::new()
    }
}

/// [`Entry::kill_bound`]; for tokens and certificates (which any revocation kills) a
/// constant, so that only expiry tells two of their revocations apart.
fn kill_bound(entry: &Entry) -> u64 {
    entry.kill_bound().unwrap_or(0)
}

fn expiry(entry: &Entry) -> u64 {
    entry.expires_at.unwrap_or(u64::MAX)
}

/// Whether revocation `y` makes revocation `x` useless: it kills at least as much for
/// at least as long (on a tie, the earlier entry is the one kept).
fn outdoes(y: &Entry, x: &Entry) -> bool {
    let (ky, kx) = ((kill_bound(y), expiry(y)), (kill_bound(x), expiry(x)));
    y.is_revoke() && ky.0 >= kx.0 && ky.1 >= kx.1 && (ky != kx || y.epoch < x.epoch)
}

/// Drops what can no longer change an answer (see the module documentation).
fn compact(entries: &mut Entries) {
    let Some(latest) = entries.last().map(|e| e.epoch) else {
        return;
    };
    let keep: Vec<bool> = entries
        .iter()
        .map(|x| {
            x.epoch == latest
                || (x.is_revoke() && !entries.iter().any(|y| y.epoch != x.epoch && outdoes(y, x)))
        })
        .collect();
    let mut flags = keep.into_iter();
    entries.retain(|_| flags.next().unwrap_or(true));
}

fn insert<K: Hash + Eq>(map: &mut HashMap<K, Entries>, key: K, entry: Entry) {
    let entries = map.entry(key).or_default();
    let at = entries.partition_point(|e| e.epoch < entry.epoch);
    if entries.get(at).is_some_and(|e| e.epoch == entry.epoch) {
        return;
    }
    entries.insert(at, entry);
    compact(entries);
}

fn killed(entries: Option<&Entries>, iat: u64) -> bool {
    entries.is_some_and(|v| v.iter().any(|e| e.kills(iat)))
}

fn blocked(entries: Option<&Entries>) -> bool {
    entries.and_then(|v| v.last()).is_some_and(Entry::is_revoke)
}

fn prune_map<K>(map: &mut HashMap<K, Entries>, now: u64) -> usize {
    let mut removed = 0;
    map.retain(|_, entries| {
        let before = entries.len();
        entries.retain(|e| e.is_live(now));
        removed += before - entries.len();
        !entries.is_empty()
    });
    removed
}

impl RevocationSet {
    /// An empty set at epoch 0 covering every kind.
    pub fn new() -> Self {
        RevocationSet::with_kinds(Kinds::ALL)
    }

    /// An empty set at epoch 0 that keeps only entries of `kinds` (an offline gate
    /// needs certificates, tokens and keys; it cannot use device or subject entries).
    /// Entries of other kinds still advance the epoch when applied.
    pub fn with_kinds(kinds: Kinds) -> Self {
        RevocationSet {
            epoch: 0,
            chain: ChainHash::GENESIS,
            kinds,
            tokens: HashMap::new(),
            certificates: HashMap::new(),
            devices: HashMap::new(),
            subjects: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    /// The epoch the set is complete up to: every entry up to it has been applied.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The chain hash of the log up to [`RevocationSet::epoch`].
    pub fn chain(&self) -> ChainHash {
        self.chain
    }

    /// The epoch and the chain hash together.
    pub fn head(&self) -> Head {
        Head {
            epoch: self.epoch,
            chain: self.chain,
        }
    }

    /// The kinds the set keeps. Queries about other kinds answer "not revoked", so a
    /// caller relying on them must check this first.
    pub fn kinds(&self) -> Kinds {
        self.kinds
    }

    /// Whether the set keeps entries of `kind`.
    pub fn covers(&self, kind: TargetKind) -> bool {
        self.kinds.contains(kind)
    }

    /// Applies the next log entry, trusting it: the set's chain moves on by the entry,
    /// whatever it is. See the module documentation.
    pub fn apply(&mut self, entry: Entry) -> Result<Applied, ApplyError> {
        if self.check(&entry)? == Applied::AlreadyApplied {
            return Ok(Applied::AlreadyApplied);
        }
        self.chain = self.chain.next(&entry);
        self.epoch = entry.epoch;
        self.insert(entry);
        Ok(Applied::Applied)
    }

    /// Applies the next log entry only if its carried chain hash follows the set's chain
    /// ([`ApplyError::Chain`] otherwise, and nothing changes). An entry at or below the
    /// set's epoch is [`Applied::AlreadyApplied`], unchecked: whether it agrees with what
    /// the set applied at that epoch is for the caller, who remembers those chain
    /// hashes, to tell.
    pub fn apply_chained(&mut self, chained: Chained) -> Result<Applied, ApplyError> {
        if self.check(&chained.entry)? == Applied::AlreadyApplied {
            return Ok(Applied::AlreadyApplied);
        }
        if !chained.follows(&self.chain) {
            return Err(ApplyError::Chain {
                epoch: chained.entry.epoch,
            });
        }
        self.chain = chained.chain;
        self.epoch = chained.entry.epoch;
        self.insert(chained.entry);
        Ok(Applied::Applied)
    }

    /// Whether `entry` is valid and the next epoch (`Applied`), already applied, or a gap.
    fn check(&self, entry: &Entry) -> Result<Applied, ApplyError> {
        entry.validate().map_err(|source| ApplyError::Invalid {
            epoch: entry.epoch,
            source,
        })?;
        if entry.epoch <= self.epoch {
            return Ok(Applied::AlreadyApplied);
        }
        let expected = self.epoch + 1;
        if entry.epoch != expected {
            return Err(ApplyError::Gap {
                expected,
                got: entry.epoch,
            });
        }
        Ok(Applied::Applied)
    }

    /// Applies entries in order, stopping at the first error (entries before it stay
    /// applied). Returns how many were new.
    pub fn apply_all(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<usize, ApplyError> {
        let mut applied = 0;
        for entry in entries {
            if self.apply(entry)? == Applied::Applied {
                applied += 1;
            }
        }
        Ok(applied)
    }

    /// Puts a valid entry in its target's list, without any epoch check (snapshots
    /// hold epochs with gaps: only live entries).
    pub(crate) fn insert(&mut self, entry: Entry) {
        if !self.kinds.contains(entry.target.kind()) {
            return;
        }
        match entry.target {
            Target::Token(cti) => insert(&mut self.tokens, cti, entry),
            Target::Certificate(serial) => insert(&mut self.certificates, serial, entry),
            Target::Device(id) => insert(&mut self.devices, id, entry),
            Target::Subject(id) => insert(&mut self.subjects, id, entry),
            Target::Key(kid) => insert(&mut self.keys, kid, entry),
        }
    }

    /// Sets the head of a set rebuilt from a snapshot.
    pub(crate) fn set_head(&mut self, head: Head) {
        self.epoch = head.epoch;
        self.chain = head.chain;
    }

    /// Whether the code with this `cti` is revoked.
    pub fn token_revoked(&self, cti: &Cti) -> bool {
        killed(self.tokens.get(cti), 0)
    }

    /// Whether the device certificate with this serial is revoked.
    pub fn certificate_revoked(&self, serial: &CertSerial) -> bool {
        killed(self.certificates.get(serial), 0)
    }

    /// Whether a code or certificate of this subject issued at `iat` is revoked.
    pub fn subject_revoked(&self, subject_id: &SubjectId, iat: u64) -> bool {
        killed(self.subjects.get(subject_id), iat)
    }

    /// Whether a code or certificate of this device issued at `iat` is revoked.
    pub fn device_revoked(&self, device_id: &DeviceId, iat: u64) -> bool {
        killed(self.devices.get(device_id), iat)
    }

    /// Whether a code or certificate signed by this key and issued at `iat` is revoked.
    pub fn key_revoked(&self, kid: &Kid, iat: u64) -> bool {
        killed(self.keys.get(kid), iat)
    }

    /// Whether the issuer must refuse to issue for this subject: its latest entry is a
    /// revocation (not followed by a reinstatement).
    pub fn issuance_blocked_subject(&self, subject_id: &SubjectId) -> bool {
        blocked(self.subjects.get(subject_id))
    }

    /// Whether the issuer must refuse to issue for this device.
    pub fn issuance_blocked_device(&self, device_id: &DeviceId) -> bool {
        blocked(self.devices.get(device_id))
    }

    /// Drops entries past their `expires_at` (strictly before `now`); returns how many.
    /// Call it periodically, e.g. every minute.
    pub fn prune(&mut self, now: u64) -> usize {
        prune_map(&mut self.tokens, now)
            + prune_map(&mut self.certificates, now)
            + prune_map(&mut self.devices, now)
            + prune_map(&mut self.subjects, now)
            + prune_map(&mut self.keys, now)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        [
            self.tokens.values().map(Vec::len).sum::<usize>(),
            self.certificates.values().map(Vec::len).sum(),
            self.devices.values().map(Vec::len).sum(),
            self.subjects.values().map(Vec::len).sum(),
            self.keys.values().map(Vec::len).sum(),
        ]
        .iter()
        .sum()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries held of `kinds` that are live at `now`, in epoch order.
    pub fn entries(&self, kinds: Kinds, now: u64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        let mut take = |kind: TargetKind, lists: &mut dyn Iterator<Item = &Entries>| {
            if kinds.contains(kind) {
                out.extend(lists.flatten().filter(|e| e.is_live(now)).cloned());
            }
        };
        take(TargetKind::Token, &mut self.tokens.values());
        take(TargetKind::Device, &mut self.devices.values());
        take(TargetKind::Subject, &mut self.subjects.values());
        take(TargetKind::Certificate, &mut self.certificates.values());
        take(TargetKind::Key, &mut self.keys.values());
        out.sort_unstable_by_key(|e| e.epoch);
        out
    }

    /// A copy keeping only `kinds` (what a snapshot of those kinds rebuilds to).
    pub fn restricted(&self, kinds: Kinds) -> RevocationSet {
        let kinds = self.kinds.intersect(kinds);
        let keep = |kind: TargetKind| kinds.contains(kind);
        RevocationSet {
            epoch: self.epoch,
            chain: self.chain,
            kinds,
            tokens: if keep(TargetKind::Token) {
                self.tokens.clone()
            } else {
                HashMap::new()
            },
            certificates: if keep(TargetKind::Certificate) {
                self.certificates.clone()
            } else {
                HashMap::new()
            },
            devices: if keep(TargetKind::Device) {
                self.devices.clone()
            } else {
                HashMap::new()
            },
            subjects: if keep(TargetKind::Subject) {
                self.subjects.clone()
            } else {
                HashMap::new()
            },
            keys: if keep(TargetKind::Key) {
                self.keys.clone()
            } else {
                HashMap::new()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Action;

    const SUBJECT: &SubjectId = &SubjectId::from_bytes([0x5b; 16]);
    const DEVICE_SAME_BYTES: &DeviceId = &DeviceId::from_bytes([0x5b; 16]);

    fn revoke(epoch: u64, target: Target, revoked_before: u64, expires_at: Option<u64>) -> Entry {
        Entry {
            epoch,
            target,
            action: Action::Revoke {
                compromised: false,
                revoked_before,
            },
            expires_at,
            created_at: 1_000,
        }
    }

    fn reinstate(epoch: u64, target: Target) -> Entry {
        Entry {
            epoch,
            target,
            action: Action::Reinstate,
            expires_at: None,
            created_at: 1_000,
        }
    }

    fn subject() -> Target {
        Target::Subject(*SUBJECT)
    }

    #[test]
    fn entries_apply_in_epoch_order_only() {
        let mut set = RevocationSet::new();
        assert_eq!(
            set.apply(revoke(
                2,
                Target::Token(Cti::from_bytes([1; 16])),
                10,
                Some(500)
            )),
            Err(ApplyError::Gap {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(set.epoch(), 0);
        assert_eq!(
            set.apply(revoke(
                1,
                Target::Token(Cti::from_bytes([1; 16])),
                10,
                Some(500)
            )),
            Ok(Applied::Applied)
        );
        assert_eq!(
            set.apply(revoke(
                1,
                Target::Token(Cti::from_bytes([9; 16])),
                10,
                Some(500)
            )),
            Ok(Applied::AlreadyApplied),
            "an old epoch is a no-op, whatever it holds"
        );
        assert!(set.token_revoked(&Cti::from_bytes([1; 16])));
        assert!(!set.token_revoked(&Cti::from_bytes([9; 16])));
        assert_eq!(set.epoch(), 1);
        let err = set
            .apply(reinstate(2, Target::Token(Cti::from_bytes([1; 16]))))
            .unwrap_err();
        assert!(matches!(err, ApplyError::Invalid { epoch: 2, .. }));
        assert_eq!(set.epoch(), 1, "an invalid entry does not advance the set");
    }

    #[test]
    fn chained_entries_apply_only_when_they_follow_the_chain() {
        let mut set = RevocationSet::new();
        let first = Chained::link(
            &ChainHash::GENESIS,
            revoke(1, Target::Token(Cti::from_bytes([1; 16])), 10, None),
        );
        // Carried hash of another predecessor: refused, nothing changes.
        let stray = Chained::link(
            &first.chain,
            revoke(1, Target::Token(Cti::from_bytes([2; 16])), 10, None),
        );
        assert_eq!(
            set.apply_chained(stray),
            Err(ApplyError::Chain { epoch: 1 })
        );
        assert_eq!(set.head(), Head::GENESIS);
        assert_eq!(set.apply_chained(first.clone()), Ok(Applied::Applied));
        assert_eq!(set.chain(), first.chain);
        // Applying unchained computes the same chain.
        let mut plain = RevocationSet::new();
        plain.apply(first.entry.clone()).unwrap();
        assert_eq!(plain, set);
        let forged = Chained::link(
            &ChainHash::GENESIS,
            revoke(1, Target::Token(Cti::from_bytes([3; 16])), 10, None),
        );
        assert_eq!(
            set.apply_chained(forged),
            Ok(Applied::AlreadyApplied),
            "old epochs are the caller's to compare"
        );
        assert!(!set.token_revoked(&Cti::from_bytes([3; 16])));
    }

    #[test]
    fn revoked_before_splits_old_from_new_and_reinstating_resurrects_nothing() {
        let mut set = RevocationSet::new();
        set.apply(revoke(1, subject(), 100, None)).unwrap();
        assert!(set.subject_revoked(SUBJECT, 99));
        assert!(
            !set.subject_revoked(SUBJECT, 100),
            "revoked_before is exclusive"
        );
        assert!(set.issuance_blocked_subject(SUBJECT));
        set.apply(reinstate(2, subject())).unwrap();
        assert!(!set.issuance_blocked_subject(SUBJECT));
        assert!(
            set.subject_revoked(SUBJECT, 99),
            "still dead after reinstating"
        );
        assert!(!set.subject_revoked(SUBJECT, 150));
        set.apply(revoke(3, subject(), 200, None)).unwrap();
        assert!(set.subject_revoked(SUBJECT, 150));
        assert!(set.issuance_blocked_subject(SUBJECT));
        // The first revocation is outdone by the third; the reinstatement no longer
        // decides anything.
        assert_eq!(set.len(), 1);
        assert!(
            !set.issuance_blocked_device(DEVICE_SAME_BYTES),
            "kinds are separate"
        );
    }

    #[test]
    fn a_later_revocation_with_an_earlier_bound_keeps_both() {
        let mut set = RevocationSet::new();
        set.apply(revoke(1, subject(), 200, None)).unwrap();
        set.apply(reinstate(2, subject())).unwrap();
        set.apply(revoke(3, subject(), 150, None)).unwrap();
        assert!(
            set.subject_revoked(SUBJECT, 199),
            "the larger bound stays in force"
        );
        assert!(set.issuance_blocked_subject(SUBJECT));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn prune_drops_expired_token_and_certificate_entries_only() {
        let mut set = RevocationSet::new();
        set.apply(revoke(
            1,
            Target::Token(Cti::from_bytes([1; 16])),
            0,
            Some(100),
        ))
        .unwrap();
        set.apply(revoke(
            2,
            Target::Certificate(CertSerial::from_bytes([2; 16])),
            0,
            Some(200),
        ))
        .unwrap();
        set.apply(revoke(3, Target::Key(Kid([3; 8])), 50, None))
            .unwrap();
        set.apply(revoke(4, subject(), 50, None)).unwrap();
        assert_eq!(set.prune(100), 0, "expires_at itself is still live");
        assert_eq!(set.prune(101), 1);
        assert!(!set.token_revoked(&Cti::from_bytes([1; 16])));
        assert!(set.certificate_revoked(&CertSerial::from_bytes([2; 16])));
        assert_eq!(set.prune(10_000), 1);
        assert!(set.key_revoked(&Kid([3; 8]), 49));
        assert!(!set.key_revoked(&Kid([3; 8]), 50));
        assert!(set.subject_revoked(SUBJECT, 1));
        assert_eq!(set.len(), 2);
        assert_eq!(set.epoch(), 4, "pruning never moves the epoch");
    }

    #[test]
    fn repeated_revocations_stay_small() {
        let mut set = RevocationSet::new();
        for epoch in 1..=100 {
            set.apply(revoke(
                epoch,
                Target::Token(Cti::from_bytes([7; 16])),
                0,
                Some(1_000 + epoch),
            ))
            .unwrap();
        }
        assert_eq!(set.len(), 1);
        assert_eq!(set.entries(Kinds::ALL, 0)[0].epoch, 100);
    }

    #[test]
    fn uncovered_kinds_advance_the_epoch_only() {
        let mut set = RevocationSet::with_kinds(Kinds::of([TargetKind::Certificate]));
        set.apply(revoke(1, subject(), 100, None)).unwrap();
        set.apply(revoke(
            2,
            Target::Certificate(CertSerial::from_bytes([1; 16])),
            0,
            Some(10),
        ))
        .unwrap();
        assert_eq!(set.epoch(), 2);
        assert_eq!(set.len(), 1);
        assert!(!set.subject_revoked(SUBJECT, 1));
        assert!(!set.covers(TargetKind::Subject));
    }
}
