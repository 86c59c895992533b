//! The Redis Stream message that fans one log entry out to verifiers.
//!
//! The revocation service appends every committed entry, after the commit, with
//!
//! ```text
//! XADD <key> MAXLEN ~ <cap> * epoch <decimal epoch> entry <entry bytes>
//! ```
//!
//! - `<key>`: [`DEFAULT_STREAM_KEY`] unless configured otherwise;
//! - field [`FIELD_EPOCH`]: the entry's epoch as ASCII decimal, readable with
//!   `redis-cli` and cheap to check before decoding;
//! - field [`FIELD_ENTRY`]: [`encode_entry`]: a version byte ([`STREAM_VERSION`]), the
//!   entry in the binary form the snapshot uses (see the `codec` module
//!   documentation), then the entry's 32-byte chain hash (the hash of the log through
//!   it, see [`crate::chain`]); audit fields (actor, note) are not included.
//!
//! ```text
//! version  u8 = 3
//! entry    the codec's encoding
//! chain    32 bytes
//! ```
//!
//! Version 2 added the chain hash (security review, finding 6): Redis is not trusted
//! to tell the truth about the log. Whoever can write to it can append a message that
//! decodes (the chain hash is not keyed, so a forger computes a matching one), delete
//! one, or reorder them. The chain hash lets a follower refuse an entry that does not
//! continue its set, notice when the service's log (ListRevocations, WatchRevocations heartbeats) has
//! another entry at an epoch it applied, and then rebuild its set from the service.
//! Version 3 replaced the operator's reason with the one bit enforcement needs
//! (`compromised`, see `crate::reason`): what Redis holds says nothing about fraud or
//! arrears. Older versions are refused (and cause a resync from List).
//!
//! One message per entry: a device or subject revocation with cascaded certificate
//! entries is several consecutive epochs and several messages. Stream ids are Redis'
//! own (`*`), so **stream order is append order, not necessarily epoch order**: two
//! replicas (or two concurrent requests) committing epochs 7 and 8 may append 8 first.
//! A follower therefore applies in epoch order ([`crate::RevocationSet::apply`]
//! refuses gaps), holds entries above a gap for a short while, and resyncs from the
//! service (ListRevocations since its epoch) when the gap does not fill, when it starts, and after
//! losing Redis. The stream is capped (MAXLEN ~), and an append can fail without
//! failing the revocation (the PostgreSQL log is the truth), so a follower must never
//! assume the stream alone is complete.

use crate::chain::{ChainHash, Chained};
use crate::codec::{DecodeError, Reader, write_entry};
use crate::entry::Entry;

/// The stream key used unless configured otherwise.
pub const DEFAULT_STREAM_KEY: &str = "citypass:revocation:log";
/// Field holding the epoch, ASCII decimal.
pub const FIELD_EPOCH: &str = "epoch";
/// Field holding [`encode_entry`]'s bytes.
pub const FIELD_ENTRY: &str = "entry";
/// The version byte that starts an encoded entry.
pub const STREAM_VERSION: u8 = 3;
/// Largest `entry` field accepted (an entry and its chain hash are at most 94 bytes
/// today).
pub const MAX_STREAM_ENTRY_LEN: usize = 256;

/// Why a stream message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A field is missing.
    #[error("stream message without field `{0}`")]
    MissingField(&'static str),
    /// The epoch field is not a decimal number.
    #[error("stream message epoch field is not a decimal number")]
    BadEpoch,
    /// The entry field is longer than [`MAX_STREAM_ENTRY_LEN`].
    #[error("stream entry is {0} bytes, too long")]
    TooLong(usize),
    /// An unknown version byte (or an empty field).
    #[error("unsupported stream entry version")]
    UnsupportedVersion,
    /// The entry bytes do not decode.
    #[error("stream entry does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The two fields disagree.
    #[error("stream message epoch field {field} differs from the entry's epoch {entry}")]
    EpochMismatch {
        /// The `epoch` field.
        field: u64,
        /// The decoded entry's epoch.
        entry: u64,
    },
}

/// The `entry` field for an entry and its chain hash.
pub fn encode_entry(chained: &Chained) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.push(STREAM_VERSION);
    write_entry(&mut out, &chained.entry);
    out.extend_from_slice(chained.chain.as_bytes());
    out
}

/// Decodes an `entry` field strictly (version, every field, the chain hash, nothing
/// after). The chain hash is only read here; it is checked when the entry is applied.
pub fn decode_entry(bytes: &[u8]) -> Result<Chained, StreamError> {
    if bytes.len() > MAX_STREAM_ENTRY_LEN {
        return Err(StreamError::TooLong(bytes.len()));
    }
    let Some((&STREAM_VERSION, rest)) = bytes.split_first() else {
        return Err(StreamError::UnsupportedVersion);
    };
    let mut reader = Reader::new(rest);
    let entry = reader.entry()?;
    let chain =
        ChainHash::from_slice(reader.take(ChainHash::LEN)?).ok_or(DecodeError::Truncated)?;
    reader.finish()?;
    Ok(Chained { entry, chain })
}

/// Decodes one stream message from its two fields' values, checking that they agree.
pub fn decode_message(epoch: Option<&[u8]>, entry: Option<&[u8]>) -> Result<Chained, StreamError> {
    let epoch = epoch.ok_or(StreamError::MissingField(FIELD_EPOCH))?;
    let entry = entry.ok_or(StreamError::MissingField(FIELD_ENTRY))?;
    let field: u64 = std::str::from_utf8(epoch)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or(StreamError::BadEpoch)?;
    let decoded = decode_entry(entry)?;
    if decoded.entry.epoch != field {
        return Err(StreamError::EpochMismatch {
            field,
            entry: decoded.entry.epoch,
        });
    }
    Ok(decoded)
}

/// The `epoch` field for `entry`.
pub fn epoch_field(entry: &Entry) -> String {
    entry.epoch.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Action;
    use crate::target::Target;
    use citypass_token::CertSerial;

    #[test]
    fn messages_round_trip_and_fields_must_agree() {
        let plain = Entry {
            epoch: 42,
            target: Target::Certificate(CertSerial::from_bytes([9; 16])),
            action: Action::Revoke {
                compromised: false,
                revoked_before: 1_800_000_000,
            },
            expires_at: Some(1_800_086_400),
            created_at: 1_800_000_000,
        };
        let entry = Chained::link(&ChainHash([5; 32]), plain);
        let bytes = encode_entry(&entry);
        assert_eq!(bytes.len(), 1 + 8 + 4 + 16 + 8 + 8 + 8 + 32);
        assert!(bytes.len() <= MAX_STREAM_ENTRY_LEN);
        assert_eq!(&bytes[bytes.len() - 32..], entry.chain.as_bytes());
        let epoch = epoch_field(&entry.entry);
        assert_eq!(
            decode_message(Some(epoch.as_bytes()), Some(&bytes)),
            Ok(entry.clone())
        );
        assert_eq!(
            decode_message(Some(b"41"), Some(&bytes)),
            Err(StreamError::EpochMismatch {
                field: 41,
                entry: 42
            })
        );
        assert_eq!(
            decode_message(Some(b"+42"), Some(&bytes)),
            Err(StreamError::BadEpoch)
        );
        assert_eq!(
            decode_message(None, Some(&bytes)),
            Err(StreamError::MissingField("epoch"))
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            decode_entry(&trailing),
            Err(StreamError::Decode(DecodeError::TrailingBytes(1)))
        ));
        assert!(matches!(
            decode_entry(&bytes[..bytes.len() - 1]),
            Err(StreamError::Decode(DecodeError::Truncated))
        ));
        assert_eq!(decode_entry(&[]), Err(StreamError::UnsupportedVersion));
        let mut version_1 = bytes[..bytes.len() - 32].to_vec();
        version_1[0] = 1;
        assert_eq!(
            decode_entry(&version_1),
            Err(StreamError::UnsupportedVersion),
            "version 1 had no chain hash"
        );
        let mut version_2 = bytes.clone();
        version_2[0] = 2;
        assert_eq!(
            decode_entry(&version_2),
            Err(StreamError::UnsupportedVersion),
            "version 2 carried the operator's reason"
        );
    }
}
