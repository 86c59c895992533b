//! The signed snapshot an offline gate loads: every live entry of some kinds, compact.
//!
//! A gate that has been offline cannot replay the log from the start; it loads a
//! snapshot (complete up to its epoch) and follows with WatchRevocations from that epoch. The
//! snapshot is signed by the revocation service's snapshot key
//! ([`citypass_token::SnapshotKey`], with [`citypass_token::sign_snapshot`]: a context
//! string of its own, so a snapshot signature can never pass as a code's or a key
//! set's), and the gate checks it with the key set it already trusts, accepting only
//! a key published for snapshots (`KeyUsage::Snapshot`): a code key never vouches for
//! revocation data, and the snapshot key never for a code (security review, finding 4).
//!
//! # Layout (version 3)
//!
//! ```text
//! magic       "CPRS"
//! version     u8   = 3
//! kinds       u8   bit k-1 set: entries of TargetKind k are included (and complete)
//! epoch       u64  the snapshot is complete up to this epoch
//! chain       32 bytes: the log's chain hash at `epoch` (see `crate::chain`)
//! created_at  u64  Unix seconds; entries expired at this time are left out
//! count       u32  number of entries
//! entries     count × entry (see `codec`), strictly increasing epochs, each
//!             at most `epoch` and of one of `kinds`
//! ```
//!
//! Version 2 added `chain` (security review, finding 6): the snapshot carries, signed,
//! the head of the log it describes, so whoever follows it with WatchRevocations checks that the
//! entries it then applies continue that very log. Version 3 replaced the operator's
//! reason in each entry with the one bit enforcement needs (`crate::reason`): a gate
//! holding a snapshot learns nothing about fraud or arrears. Older versions are no
//! longer read.
//!
//! Integers are big-endian. Exactly one byte string encodes a given snapshot (entries
//! sorted, fixed-width fields, reserved bits zero, nothing after the last entry), so
//! two replicas at the same epoch and time produce identical bytes.
//!
//! Decoding is strict and bounded: the length is capped before anything is read
//! ([`MAX_SNAPSHOT_LEN`], or a caller's cap), the entry count must fit in the bytes
//! that are left before any allocation, and every field is range-checked. No input
//! makes it panic (a property test feeds it arbitrary bytes).

use citypass_token::{
    Algorithm, KeySet, KeyUsage, Kid, SnapshotKey, TokenError, sign_snapshot, verify_snapshot,
};

use crate::chain::{ChainHash, Head};
use crate::codec::{DecodeError, MIN_ENTRY_LEN, Reader, write_entry};
use crate::entry::Entry;
use crate::set::RevocationSet;
use crate::target::Kinds;

const MAGIC: &[u8; 4] = b"CPRS";
const VERSION: u8 = 3;
const HEADER_LEN: usize = 4 + 1 + 1 + 8 + ChainHash::LEN + 8 + 4;

/// Largest snapshot decoded by default: 64 MiB, about 1.2 million entries. (gRPC
/// clients default to 4 MiB messages; a gate loading large snapshots raises its limit.)
pub const MAX_SNAPSHOT_LEN: usize = 64 * 1024 * 1024;

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Longer than the cap.
    #[error("snapshot is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Not a citypass revocation snapshot.
    #[error("not a revocation snapshot (bad magic)")]
    BadMagic,
    /// A version this code does not read.
    #[error("unsupported snapshot version {0}")]
    UnsupportedVersion(u8),
    /// The kinds byte has bits that name no kind, or none at all.
    #[error("invalid kinds bits {0:#04x}")]
    BadKinds(u8),
    /// The count says more entries than the bytes can hold.
    #[error("entry count {0} does not fit in the snapshot")]
    BadCount(u32),
    /// An entry does not decode.
    #[error("entry {index}: {source}")]
    Entry {
        /// Its position.
        index: usize,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// Entries are not in strictly increasing epoch order.
    #[error("entry {0}: epochs are not strictly increasing")]
    OutOfOrder(usize),
    /// An entry beyond the snapshot's epoch.
    #[error("entry {0}: epoch beyond the snapshot's epoch")]
    BeyondEpoch(usize),
    /// An entry of a kind the snapshot says it does not cover.
    #[error("entry {0}: kind not covered by the snapshot")]
    KindNotCovered(usize),
    /// Bytes after the last entry.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// The signing key is not in the key set, is published for another usage than
    /// snapshots, or may no longer be used.
    #[error("snapshot signing key not usable: {0}")]
    Key(#[source] TokenError),
    /// The signature does not verify.
    #[error("snapshot signature does not verify")]
    BadSignature,
}

/// A decoded (or to-be-encoded) snapshot. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Complete up to this epoch.
    pub epoch: u64,
    /// The log's chain hash at `epoch`.
    pub chain: ChainHash,
    /// The kinds included.
    pub kinds: Kinds,
    /// Unix seconds when it was taken.
    pub created_at: u64,
    /// The live entries of `kinds`, in epoch order.
    pub entries: Vec<Entry>,
}

impl Snapshot {
    /// The bytes (see the module documentation). Entries must be in epoch order, as
    /// [`RevocationSet::snapshot`] produces them.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.entries.len() * (MIN_ENTRY_LEN + 16));
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(self.kinds.bits());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(self.chain.as_bytes());
        out.extend_from_slice(&self.created_at.to_be_bytes());
        // A set cannot hold 4 billion entries in memory; saturate rather than wrap.
        out.extend_from_slice(
            &u32::try_from(self.entries.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for entry in &self.entries {
            write_entry(&mut out, entry);
        }
        out
    }

    /// Decodes with the default cap ([`MAX_SNAPSHOT_LEN`]).
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        Snapshot::decode_with_limit(bytes, MAX_SNAPSHOT_LEN)
    }

    /// Decodes bytes of at most `max_len`.
    pub fn decode_with_limit(bytes: &[u8], max_len: usize) -> Result<Snapshot, SnapshotError> {
        if bytes.len() > max_len {
            return Err(SnapshotError::TooLarge {
                len: bytes.len(),
                max: max_len,
            });
        }
        let header = |_| SnapshotError::BadMagic;
        let mut r = Reader::new(bytes);
        if r.take(4).map_err(header)? != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = r.u8().map_err(header)?;
        if version != VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let bits = r.u8().map_err(header)?;
        let kinds = Kinds::from_bits(bits)
            .filter(|k| !k.is_empty())
            .ok_or(SnapshotError::BadKinds(bits))?;
        let epoch = r.u64().map_err(header)?;
        let chain = ChainHash::from_slice(r.take(ChainHash::LEN).map_err(header)?)
            .ok_or(SnapshotError::BadMagic)?;
        let created_at = r.u64().map_err(header)?;
        let count = r.u32().map_err(header)?;
        let n = usize::try_from(count).map_err(|_| SnapshotError::BadCount(count))?;
        if n > r.remaining() / MIN_ENTRY_LEN {
            return Err(SnapshotError::BadCount(count));
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(n);
        for index in 0..n {
            let entry = r
                .entry()
                .map_err(|source| SnapshotError::Entry { index, source })?;
            if entries.last().is_some_and(|prev| prev.epoch >= entry.epoch) {
                return Err(SnapshotError::OutOfOrder(index));
            }
            if entry.epoch > epoch {
                return Err(SnapshotError::BeyondEpoch(index));
            }
            if !kinds.contains(entry.target.kind()) {
                return Err(SnapshotError::KindNotCovered(index));
            }
            entries.push(entry);
        }
        match r.remaining() {
            0 => Ok(Snapshot {
                epoch,
                chain,
                kinds,
                created_at,
                entries,
            }),
            n => Err(SnapshotError::TrailingBytes(n)),
        }
    }

    /// The head of the log the snapshot describes.
    pub fn head(&self) -> Head {
        Head {
            epoch: self.epoch,
            chain: self.chain,
        }
    }

    /// Signs the encoded snapshot with the snapshot key.
    pub fn sign(&self, key: &SnapshotKey) -> SignedSnapshot {
        SignedSnapshot::sign(self.encode(), key)
    }
}

/// Snapshot bytes with the snapshot key's detached signature and its id: what the
/// Snapshot RPC returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSnapshot {
    /// The encoded snapshot (exactly the signed bytes).
    pub bytes: Vec<u8>,
    /// Ed25519 signature over the snapshot message (`citypass_token::sign_snapshot`).
    pub signature: Vec<u8>,
    /// The signing key.
    pub kid: Kid,
}

impl SignedSnapshot {
    /// Signs encoded snapshot bytes.
    pub fn sign(bytes: Vec<u8>, key: &SnapshotKey) -> Self {
        let signature = sign_snapshot(key, &bytes);
        SignedSnapshot {
            bytes,
            signature,
            kid: key.kid(),
        }
    }

    /// Checks the signature with a key of `keys` published for snapshots and usable at
    /// `now` (Ed25519, active or retired-but-valid; revoked keys and keys of another
    /// usage are refused) and decodes.
    pub fn verify(&self, keys: &KeySet, now: u64) -> Result<Snapshot, SnapshotError> {
        self.verify_with_limit(keys, now, MAX_SNAPSHOT_LEN)
    }

    /// [`SignedSnapshot::verify`] with a size cap, checked before the signature.
    pub fn verify_with_limit(
        &self,
        keys: &KeySet,
        now: u64,
        max_len: usize,
    ) -> Result<Snapshot, SnapshotError> {
        if self.bytes.len() > max_len {
            return Err(SnapshotError::TooLarge {
                len: self.bytes.len(),
                max: max_len,
            });
        }
        let key = keys
            .usable(&self.kid, KeyUsage::Snapshot, now)
            .map_err(SnapshotError::Key)?;
        if key.key.alg() != Algorithm::EdDsa {
            return Err(SnapshotError::Key(TokenError::AlgMismatch));
        }
        verify_snapshot(key, &self.bytes, &self.signature)
            .map_err(|_| SnapshotError::BadSignature)?;
        Snapshot::decode_with_limit(&self.bytes, max_len)
    }
}

impl RevocationSet {
    /// A snapshot of the live entries (at `now`) of `kinds` that this set covers.
    pub fn snapshot(&self, kinds: Kinds, now: u64) -> Snapshot {
        let kinds = self.kinds().intersect(kinds);
        Snapshot {
            epoch: self.epoch(),
            chain: self.chain(),
            kinds,
            created_at: now,
            entries: self.entries(kinds, now),
        }
    }

    /// The set a snapshot describes: its kinds, its epoch and chain hash, its entries.
    /// Follow it by applying log entries after `snapshot.epoch`.
    pub fn from_snapshot(snapshot: &Snapshot) -> RevocationSet {
        let mut set = RevocationSet::with_kinds(snapshot.kinds);
        for entry in &snapshot.entries {
            set.insert(entry.clone());
        }
        set.set_head(snapshot.head());
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Action;
    use crate::target::{Target, TargetKind};
    use citypass_token::{CertSerial, Cti, SubjectId};
    use citypass_token::{KeyStatus, PublishedKey};

    fn sample_set() -> RevocationSet {
        let mut set = RevocationSet::new();
        let targets = [
            Target::Token(Cti::from_bytes([1; 16])),
            Target::Certificate(CertSerial::from_bytes([2; 16])),
            Target::Key(Kid([3; 8])),
            Target::Subject(SubjectId::from_bytes([0xab; 16])),
        ];
        for (i, target) in targets.into_iter().enumerate() {
            let epoch = i as u64 + 1;
            set.apply(Entry {
                epoch,
                target,
                action: Action::Revoke {
                    compromised: false,
                    revoked_before: 500,
                },
                expires_at: (epoch <= 2).then_some(1_000 * epoch),
                created_at: 400,
            })
            .unwrap();
        }
        set
    }

    #[test]
    fn round_trip_and_determinism() {
        let set = sample_set();
        let snapshot = set.snapshot(Kinds::ALL, 500);
        let bytes = snapshot.encode();
        assert_eq!(bytes, set.clone().snapshot(Kinds::ALL, 500).encode());
        let decoded = Snapshot::decode(&bytes).unwrap();
        assert_eq!(decoded, snapshot);
        assert_eq!(RevocationSet::from_snapshot(&decoded), set);

        // Offline gates ask for certificates and keys only; expired entries are left out.
        let kinds = Kinds::of([TargetKind::Certificate, TargetKind::Key, TargetKind::Token]);
        let partial = set.snapshot(kinds, 1_500);
        assert_eq!(partial.entries.len(), 2, "the token entry expired at 1000");
        let mut live = set.clone();
        live.prune(1_500);
        assert_eq!(
            RevocationSet::from_snapshot(&partial),
            live.restricted(kinds)
        );
    }

    #[test]
    fn strict_decoding() {
        let bytes = sample_set().snapshot(Kinds::ALL, 0).encode();
        assert_eq!(
            Snapshot::decode_with_limit(&bytes, 10),
            Err(SnapshotError::TooLarge {
                len: bytes.len(),
                max: 10
            })
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Snapshot::decode(&trailing),
            Err(SnapshotError::TrailingBytes(1))
        );
        let mut version = bytes.clone();
        version[4] = 1;
        assert_eq!(
            Snapshot::decode(&version),
            Err(SnapshotError::UnsupportedVersion(1)),
            "version 1 had no chain hash"
        );
        let mut count = bytes.clone();
        count[54..58].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Snapshot::decode(&count),
            Err(SnapshotError::BadCount(u32::MAX))
        );
        let mut epoch = bytes.clone();
        epoch[6..14].copy_from_slice(&1u64.to_be_bytes());
        assert_eq!(Snapshot::decode(&epoch), Err(SnapshotError::BeyondEpoch(1)));
        let mut kinds = bytes.clone();
        kinds[5] = 0b1;
        assert_eq!(
            Snapshot::decode(&kinds),
            Err(SnapshotError::KindNotCovered(1))
        );
        assert_eq!(Snapshot::decode(b"CPR"), Err(SnapshotError::BadMagic));
        for len in 0..bytes.len() {
            assert!(Snapshot::decode(&bytes[..len]).is_err());
        }
    }

    #[test]
    fn signatures_verify_with_the_key_set_only() {
        let key = SnapshotKey::from_seed(&[7; 32], true).unwrap();
        let other = SnapshotKey::from_seed(&[8; 32], true).unwrap();
        let published = |k: &SnapshotKey, status| PublishedKey {
            key: k.public_key().clone(),
            status,
            usage: KeyUsage::Snapshot,
        };
        let keys = KeySet::new(vec![published(&key, KeyStatus::Active)]).unwrap();
        let snapshot = sample_set().snapshot(Kinds::ALL, 600);
        let signed = snapshot.sign(&key);
        assert_eq!(signed.kid, key.kid());
        assert_eq!(signed.verify(&keys, 600).unwrap(), snapshot);

        let mut tampered = signed.clone();
        let last = tampered.bytes.len() - 1;
        tampered.bytes[last] ^= 1;
        assert_eq!(
            tampered.verify(&keys, 600),
            Err(SnapshotError::BadSignature)
        );

        let forged = snapshot.sign(&other);
        assert!(matches!(
            forged.verify(&keys, 600),
            Err(SnapshotError::Key(_))
        ));
        let mut renamed = forged;
        renamed.kid = key.kid();
        assert_eq!(renamed.verify(&keys, 600), Err(SnapshotError::BadSignature));

        let revoked = KeySet::new(vec![published(&key, KeyStatus::Revoked)]).unwrap();
        assert!(matches!(
            signed.verify(&revoked, 600),
            Err(SnapshotError::Key(_))
        ));

        // The same key published for codes does not vouch for a snapshot.
        let as_code = KeySet::new(vec![PublishedKey {
            usage: KeyUsage::Code,
            ..published(&key, KeyStatus::Active)
        }])
        .unwrap();
        assert_eq!(
            signed.verify(&as_code, 600),
            Err(SnapshotError::Key(TokenError::WrongKeyUsage))
        );
    }
}
