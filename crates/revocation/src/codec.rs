//! The binary form of one entry, shared by the snapshot and the stream formats.
//!
//! Fixed-width big-endian fields, no varints, no optional encodings: every entry has
//! exactly one encoding, which keeps snapshots deterministic (the same set always gives
//! the same bytes) and decoding trivially bounded (no nesting, no length read from the
//! input except the snapshot's entry count, which is checked against the bytes left).
//!
//! ```text
//! epoch           u64
//! kind            u8    TargetKind code, 1..=5
//! action          u8    1 revoke, 2 reinstate
//! compromised     u8    1: revoked as compromised; 0: withdrawn, or a reinstatement
//! flags           u8    bit 0: expires_at present; every other bit 0
//! target          16 bytes (cti, serial, device id, subject id) or 8 bytes (kid)
//! revoked_before  u64   revoke only
//! expires_at      u64   if flag bit 0
//! created_at      u64
//! ```
//!
//! The byte after the action held the operator's reason until stream and snapshot
//! version 3; it now holds only the bit enforcement needs ([`crate::reason`] says why).
//!
//! Device and subject ids travel as their 16 raw bytes and decode to the 32-character
//! lowercase hex form, the only form a [`Target`] holds.

use crate::entry::{Action, Entry, EntryError};
use crate::target::{Target, TargetKind};

/// Smallest encoded entry: a reinstatement (kid-sized targets cannot be reinstated, so
/// the smallest target is 16 bytes) without expiry.
pub(crate) const MIN_ENTRY_LEN: usize = 8 + 4 + 16 + 8;

const FLAG_EXPIRES: u8 = 1;

/// Why bytes are not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end inside a field.
    #[error("truncated")]
    Truncated,
    /// A kind code that names no kind.
    #[error("unknown target kind {0}")]
    UnknownKind(u8),
    /// An action code that names no action.
    #[error("unknown action {0}")]
    UnknownAction(u8),
    /// A compromised byte other than 0 or 1 (or 1 on a reinstatement).
    #[error("invalid compromised byte {0}")]
    InvalidCompromised(u8),
    /// Reserved flag bits set.
    #[error("reserved flag bits set: {0:#04x}")]
    ReservedFlags(u8),
    /// Decoded fields do not make a valid entry.
    #[error(transparent)]
    Invalid(#[from] EntryError),
    /// Bytes left after the last field.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

fn target_len(kind: TargetKind) -> usize {
    match kind {
        TargetKind::Key => 8,
        _ => 16,
    }
}

/// Appends the encoding of `entry` to `out`.
pub(crate) fn write_entry(out: &mut Vec<u8>, entry: &Entry) {
    out.extend_from_slice(&entry.epoch.to_be_bytes());
    out.push(entry.target.kind().code());
    let (compromised, revoked_before) = match entry.action {
        Action::Revoke {
            compromised,
            revoked_before,
        } => (compromised, Some(revoked_before)),
        Action::Reinstate => (false, None),
    };
    out.push(entry.action.code());
    out.push(u8::from(compromised));
    out.push(if entry.expires_at.is_some() {
        FLAG_EXPIRES
    } else {
        0
    });
    out.extend_from_slice(entry.target.raw());
    if let Some(rb) = revoked_before {
        out.extend_from_slice(&rb.to_be_bytes());
    }
    if let Some(t) = entry.expires_at {
        out.extend_from_slice(&t.to_be_bytes());
    }
    out.extend_from_slice(&entry.created_at.to_be_bytes());
}

/// A cursor over untrusted bytes; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    /// Reads one entry and checks it ([`Entry::validate`]).
    pub(crate) fn entry(&mut self) -> Result<Entry, DecodeError> {
        let epoch = self.u64()?;
        let kind_code = self.u8()?;
        let kind = TargetKind::from_code(i32::from(kind_code))
            .ok_or(DecodeError::UnknownKind(kind_code))?;
        let action_code = self.u8()?;
        let compromised = self.u8()?;
        let flags = self.u8()?;
        if flags & !FLAG_EXPIRES != 0 {
            return Err(DecodeError::ReservedFlags(flags));
        }
        let raw = self.take(target_len(kind))?;
        let target = Target::from_raw(kind, raw).ok_or(DecodeError::Truncated)?;
        let action = match (action_code, compromised) {
            (1, 0 | 1) => Action::Revoke {
                compromised: compromised == 1,
                revoked_before: self.u64()?,
            },
            (2, 0) => Action::Reinstate,
            (1 | 2, other) => return Err(DecodeError::InvalidCompromised(other)),
            (other, _) => return Err(DecodeError::UnknownAction(other)),
        };
        let expires_at = if flags & FLAG_EXPIRES != 0 {
            Some(self.u64()?)
        } else {
            None
        };
        let created_at = self.u64()?;
        let entry = Entry {
            epoch,
            target,
            action,
            expires_at,
            created_at,
        };
        entry.validate()?;
        Ok(entry)
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_token::DeviceId;

    #[test]
    fn smallest_entry_is_min_entry_len() {
        let entry = Entry {
            epoch: 1,
            target: Target::Device(DeviceId::from_bytes([0x00; 16])),
            action: Action::Reinstate,
            expires_at: None,
            created_at: 0,
        };
        let mut out = Vec::new();
        write_entry(&mut out, &entry);
        assert_eq!(out.len(), MIN_ENTRY_LEN);
        let mut reader = Reader::new(&out);
        assert_eq!(reader.entry().unwrap(), entry);
        reader.finish().unwrap();
    }

    /// The byte after the action carries one bit; a reason code from version 2 (say 6,
    /// fraud) or a compromised reinstatement is refused, never read as something else.
    #[test]
    fn the_compromised_byte_is_0_or_1_and_0_on_a_reinstatement() {
        let revoke = Entry {
            epoch: 1,
            target: Target::Key(citypass_token::Kid([7; 8])),
            action: Action::Revoke {
                compromised: true,
                revoked_before: 10,
            },
            expires_at: None,
            created_at: 5,
        };
        let mut out = Vec::new();
        write_entry(&mut out, &revoke);
        assert_eq!(out[10], 1);
        assert_eq!(Reader::new(&out).entry().unwrap(), revoke);
        out[10] = 6;
        assert_eq!(
            Reader::new(&out).entry(),
            Err(DecodeError::InvalidCompromised(6))
        );

        let reinstate = Entry {
            epoch: 2,
            target: Target::Device(DeviceId::from_bytes([0x00; 16])),
            action: Action::Reinstate,
            expires_at: None,
            created_at: 5,
        };
        let mut out = Vec::new();
        write_entry(&mut out, &reinstate);
        out[10] = 1;
        assert_eq!(
            Reader::new(&out).entry(),
            Err(DecodeError::InvalidCompromised(1))
        );
    }
}
