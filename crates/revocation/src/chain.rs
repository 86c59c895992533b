//! The hash chain over the log: what makes a forged, replaced or missing entry visible.
//!
//! Every entry of the log carries its **chain hash**: the hash of the whole log up to
//! and including it,
//!
//! ```text
//! chain(0) = 32 zero bytes                                        (ChainHash::GENESIS)
//! chain(N) = SHA-256("citypass/v1/revocation-chain\0" || chain(N-1) || entry(N))
//! ```
//!
//! where `entry(N)` is the entry's canonical binary encoding (the one the stream and the
//! snapshot carry, see the `codec` module; audit fields are not part of it). So
//! `chain(N)` commits to every entry up to N, in order: two logs agree on `chain(N)`
//! only if they agree on all of epochs 1..=N.
//!
//! The hash is not keyed: anyone can compute the chain hash of an entry they invent,
//! including someone with write access to Redis. That is fine: the chain does not
//! authenticate an entry by itself, it makes every copy of the log comparable with the
//! revocation service's, in one 32-byte value. A follower keeps the chain hash of its
//! set ([`crate::RevocationSet::chain`]) and
//!
//! - applies an entry only if it follows its head (`next(head, entry) == entry.chain`:
//!   a stream entry that does not is refused, and the follower asks the service);
//! - compares, at every check, its chain hash with the service's head ([`Head`], which
//!   List and WatchRevocations heartbeats carry, signed), or with the chain hash of the service's
//!   next entry: a forged entry that it applied (one that chained correctly onto its
//!   head because the forger computed the hash) shows as a mismatch there, and the
//!   follower rebuilds its set from the service, which it can reach only over
//!   authenticated TLS.
//!
//! # The signed head
//!
//! [`SignedHead`]: the log's head epoch and chain hash and when they were read, signed by
//! the revocation service's snapshot key (the key gates already accept snapshots from,
//! published with usage `revocation-snapshot`). The signed bytes are
//!
//! ```text
//! magic       "CPRH"
//! version     u8   = 1
//! epoch       u64
//! chain       32 bytes
//! created_at  u64  Unix seconds
//! ```
//!
//! signed exactly as a snapshot is (`citypass_token::sign_snapshot`: the context string
//! of revocation snapshots, then the length-prefixed bytes). The magic tells the two
//! apart: a snapshot starts with `CPRS`, which no head decodes from, and a head with
//! `CPRH`, which no snapshot decodes from; so a signed head can never pass as a signed
//! snapshot or the other way round, and no key of another usage signs either.

use citypass_token::{
    Algorithm, KeySet, KeyUsage, Kid, SnapshotKey, TokenError, sign_snapshot, verify_snapshot,
};
use ring::digest;

use crate::codec::write_entry;
use crate::entry::Entry;

/// Domain separation of the chain hash: no other SHA-256 in citypass starts so.
const DOMAIN: &[u8] = b"citypass/v1/revocation-chain\0";
/// Magic of the signed head's bytes.
const HEAD_MAGIC: &[u8; 4] = b"CPRH";
/// Version of the signed head's bytes.
const HEAD_VERSION: u8 = 1;
/// Length of the signed head's bytes.
const HEAD_LEN: usize = 4 + 1 + 8 + ChainHash::LEN + 8;

/// The hash of the log up to and including one entry (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash(pub [u8; ChainHash::LEN]);

impl ChainHash {
    /// Bytes in a chain hash.
    pub const LEN: usize = 32;
    /// The chain hash of the empty log (epoch 0).
    pub const GENESIS: ChainHash = ChainHash([0; ChainHash::LEN]);

    /// The chain hash of the log that is `self` followed by `entry`.
    pub fn next(&self, entry: &Entry) -> ChainHash {
        let mut encoded = Vec::with_capacity(64);
        write_entry(&mut encoded, entry);
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(DOMAIN);
        context.update(&self.0);
        context.update(&encoded);
        let mut out = [0u8; ChainHash::LEN];
        out.copy_from_slice(context.finish().as_ref());
        ChainHash(out)
    }

    /// A chain hash from exactly 32 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<ChainHash> {
        <[u8; ChainHash::LEN]>::try_from(bytes).ok().map(ChainHash)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; ChainHash::LEN] {
        &self.0
    }
}

impl std::fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainHash({self})")
    }
}

impl std::fmt::Display for ChainHash {
    /// The first 8 bytes in hex: enough to tell two chains apart in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("…")
    }
}

/// An entry with the chain hash its source says it has: what the stream, List and
/// Watch deliver. Nothing about it is checked until it is applied
/// ([`crate::RevocationSet::apply_chained`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chained {
    /// The entry.
    pub entry: Entry,
    /// The chain hash through it, as carried.
    pub chain: ChainHash,
}

impl Chained {
    /// Chains `entry` onto `prev` (what the log does when it appends).
    pub fn link(prev: &ChainHash, entry: Entry) -> Chained {
        Chained {
            chain: prev.next(&entry),
            entry,
        }
    }

    /// Whether the carried chain hash is `prev` followed by the entry.
    pub fn follows(&self, prev: &ChainHash) -> bool {
        prev.next(&self.entry) == self.chain
    }
}

/// A position in the log: an epoch and the chain hash through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Head {
    /// The epoch.
    pub epoch: u64,
    /// The chain hash through that epoch ([`ChainHash::GENESIS`] at 0).
    pub chain: ChainHash,
}

impl Head {
    /// The empty log.
    pub const GENESIS: Head = Head {
        epoch: 0,
        chain: ChainHash::GENESIS,
    };
}

/// Why a signed head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The chain hash is not 32 bytes, or the kid not 8.
    #[error("malformed signed head")]
    Malformed,
    /// The signing key is not in the key set, is published for another usage than
    /// snapshots, or may no longer be used.
    #[error("head signing key not usable: {0}")]
    Key(#[source] TokenError),
    /// The signature does not verify.
    #[error("head signature does not verify")]
    BadSignature,
}

/// The log's head, signed by the snapshot key (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    /// The head.
    pub head: Head,
    /// When the service read it, Unix seconds.
    pub created_at: u64,
    /// Ed25519 signature over [`SignedHead::message`], as `sign_snapshot` makes it.
    pub signature: Vec<u8>,
    /// The signing key.
    pub kid: Kid,
}

impl SignedHead {
    /// The signed bytes for `head` read at `created_at`.
    pub fn message(head: &Head, created_at: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_LEN);
        out.extend_from_slice(HEAD_MAGIC);
        out.push(HEAD_VERSION);
        out.extend_from_slice(&head.epoch.to_be_bytes());
        out.extend_from_slice(head.chain.as_bytes());
        out.extend_from_slice(&created_at.to_be_bytes());
        out
    }

    /// Signs `head`, read at `created_at`, with the snapshot key.
    pub fn sign(head: Head, created_at: u64, key: &SnapshotKey) -> SignedHead {
        SignedHead {
            signature: sign_snapshot(key, &SignedHead::message(&head, created_at)),
            kid: key.kid(),
            head,
            created_at,
        }
    }

    /// Checks the signature with a key of `keys` published for snapshots and usable at
    /// `now` (as [`crate::SignedSnapshot::verify`] does); returns the head.
    pub fn verify(&self, keys: &KeySet, now: u64) -> Result<Head, HeadError> {
        let key = keys
            .usable(&self.kid, KeyUsage::Snapshot, now)
            .map_err(HeadError::Key)?;
        if key.key.alg() != Algorithm::EdDsa {
            return Err(HeadError::Key(TokenError::AlgMismatch));
        }
        verify_snapshot(
            key,
            &SignedHead::message(&self.head, self.created_at),
            &self.signature,
        )
        .map_err(|_| HeadError::BadSignature)?;
        Ok(self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Action;
    use crate::snapshot::{SignedSnapshot, SnapshotError};
    use crate::target::Target;
    use citypass_token::Cti;
    use citypass_token::{KeyStatus, PublishedKey};

    fn entry(epoch: u64, byte: u8) -> Entry {
        Entry {
            epoch,
            target: Target::Token(Cti::from_bytes([byte; 16])),
            action: Action::Revoke {
                compromised: false,
                revoked_before: 10,
            },
            expires_at: Some(100),
            created_at: 10,
        }
    }

    #[test]
    fn the_chain_commits_to_every_entry_and_their_order() {
        let a = ChainHash::GENESIS.next(&entry(1, 1));
        let b = a.next(&entry(2, 2));
        assert_ne!(a, ChainHash::GENESIS);
        assert_ne!(b, a);
        // Deterministic, and sensitive to any field and to the predecessor.
        assert_eq!(ChainHash::GENESIS.next(&entry(1, 1)).next(&entry(2, 2)), b);
        assert_ne!(ChainHash::GENESIS.next(&entry(1, 3)).next(&entry(2, 2)), b);
        assert_ne!(ChainHash::GENESIS.next(&entry(2, 2)), b);
        let linked = Chained::link(&a, entry(2, 2));
        assert_eq!(linked.chain, b);
        assert!(linked.follows(&a));
        assert!(!linked.follows(&ChainHash::GENESIS));
        assert_eq!(ChainHash::from_slice(b.as_bytes()), Some(b));
        assert_eq!(ChainHash::from_slice(&[0; 31]), None);
        // A known answer (computed independently: Python's hashlib over the layout in
        // the module documentation), which pins the format for every implementation
        // (the PostgreSQL migration that chains existing rows, for one).
        let hex: String = a.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "20d2c3ff99a4086be5e7bd20c3adc308632fe9cdb9d0fae82955064fa4f03a44"
        );
        assert_eq!(format!("{a}"), "20d2c3ff99a4086b…");
    }

    #[test]
    fn signed_heads_verify_with_snapshot_keys_only_and_never_as_snapshots() {
        let key = SnapshotKey::from_seed(&[7; 32], true).unwrap();
        let keys = KeySet::new(vec![PublishedKey {
            key: key.public_key().clone(),
            status: KeyStatus::Active,
            usage: KeyUsage::Snapshot,
        }])
        .unwrap();
        let head = Head {
            epoch: 2,
            chain: ChainHash::GENESIS.next(&entry(1, 1)).next(&entry(2, 2)),
        };
        let signed = SignedHead::sign(head, 500, &key);
        assert_eq!(signed.verify(&keys, 500), Ok(head));
        let mut moved = signed.clone();
        moved.head.epoch = 3;
        assert_eq!(moved.verify(&keys, 500), Err(HeadError::BadSignature));
        let mut later = signed.clone();
        later.created_at += 1;
        assert_eq!(later.verify(&keys, 500), Err(HeadError::BadSignature));
        // The head's signature over its bytes is not a snapshot's.
        let as_snapshot = SignedSnapshot {
            bytes: SignedHead::message(&head, 500),
            signature: signed.signature.clone(),
            kid: signed.kid,
        };
        assert_eq!(as_snapshot.verify(&keys, 500), Err(SnapshotError::BadMagic));
    }
}
