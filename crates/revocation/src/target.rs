//! What an entry revokes, and the one accepted text form of each kind of id.
//!
//! The forms are those of `proto/citypass/v1/revocation.proto`: a token's `cti` and a
//! certificate's serial are 16 bytes written as 32 lowercase hex characters, device and
//! subject ids are the identity service's 32 lowercase hex characters, a signing key is
//! its 8-byte `kid` as 16 lowercase hex characters. Parsing is strict (no upper case,
//! no padding, no prefix) so that one target never has two spellings: a second
//! spelling would be a second, independent entry that a lookup by the first misses.

use std::fmt;

use citypass_token::{CertSerial, Cti, DeviceId, Kid, SubjectId};

/// Bytes in a `cti`, a certificate serial, a device id and a subject id.
pub const ID_LEN: usize = citypass_token::ID_LEN;

/// The kind of a target. The numbers are the proto's `TargetKind` numbers, and the
/// codes used in the snapshot and stream formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    /// An online or offline code, by `cti`.
    Token = 1,
    /// A bound device, by device id.
    Device = 2,
    /// A subject, by subject id.
    Subject = 3,
    /// A device certificate, by serial.
    Certificate = 4,
    /// An issuer signing key, by `kid`.
    Key = 5,
}

impl TargetKind {
    /// Every kind, in code order.
    pub const ALL: [TargetKind; 5] = [
        TargetKind::Token,
        TargetKind::Device,
        TargetKind::Subject,
        TargetKind::Certificate,
        TargetKind::Key,
    ];

    /// The proto enum number (1..=5).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind for a proto enum number; `None` for 0 (unspecified) and unknown numbers.
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            1 => TargetKind::Token,
            2 => TargetKind::Device,
            3 => TargetKind::Subject,
            4 => TargetKind::Certificate,
            5 => TargetKind::Key,
            _ => return None,
        })
    }

    /// A short lower-case name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Token => "token",
            TargetKind::Device => "device",
            TargetKind::Subject => "subject",
            TargetKind::Certificate => "certificate",
            TargetKind::Key => "key",
        }
    }

    /// Whether entries of this kind can be reinstated (devices and subjects only).
    pub fn reinstatable(self) -> bool {
        matches!(self, TargetKind::Device | TargetKind::Subject)
    }

    fn bit(self) -> u8 {
        1 << (self.code() - 1)
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of target kinds: what a snapshot or a set covers. Bit `k - 1` stands for the
/// kind with code `k`; the snapshot format stores these bits as they are.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kinds(u8);

impl Kinds {
    /// Every kind.
    pub const ALL: Kinds = Kinds(0b1_1111);
    /// No kind.
    pub const NONE: Kinds = Kinds(0);

    /// Exactly these kinds.
    pub fn of(kinds: impl IntoIterator<Item = TargetKind>) -> Self {
        Kinds(kinds.into_iter().fold(0, |bits, k| bits | k.bit()))
    }

    /// The kinds for stored bits; `None` if a bit names no kind.
    pub fn from_bits(bits: u8) -> Option<Self> {
        (bits & !Kinds::ALL.0 == 0).then_some(Kinds(bits))
    }

    /// The stored bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: TargetKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The kinds in both sets.
    pub fn intersect(self, other: Kinds) -> Kinds {
        Kinds(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds, in code order.
    pub fn iter(self) -> impl Iterator<Item = TargetKind> {
        TargetKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl fmt::Debug for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// What an entry revokes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A code, by `cti`.
    Token(Cti),
    /// A device, by its id.
    Device(DeviceId),
    /// A subject, by its id.
    Subject(SubjectId),
    /// A device certificate, by serial.
    Certificate(CertSerial),
    /// An issuer signing key.
    Key(Kid),
}

/// Why a target id was refused. Messages name the field and the expected form, never
/// the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No id at all.
    #[error("target_id: required")]
    Empty,
    /// Not the length of the kind's form.
    #[error("target_id: {what} is {expected} lowercase hex characters, got {got} characters")]
    Length {
        /// What the id names, e.g. `a key id (kid)`.
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The given length.
        got: usize,
    },
    /// A character outside `0-9a-f`.
    #[error("target_id: {what} is lowercase hex (0-9, a-f) only")]
    NotLowercaseHex {
        /// What the id names.
        what: &'static str,
    },
}

fn what(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Token => "a token id (cti)",
        TargetKind::Device => "a device id",
        TargetKind::Subject => "a subject id",
        TargetKind::Certificate => "a certificate serial",
        TargetKind::Key => "a key id (kid)",
    }
}

/// Parses exactly `N` bytes written as `2 * N` lowercase hex characters.
fn parse_hex<const N: usize>(text: &str, kind: TargetKind) -> Result<[u8; N], TargetError> {
    if text.is_empty() {
        return Err(TargetError::Empty);
    }
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return Err(TargetError::Length {
            what: what(kind),
            expected: 2 * N,
            got: text.chars().count(),
        });
    }
    citypass_token::parse_lower_hex(text).ok_or(TargetError::NotLowercaseHex { what: what(kind) })
}

impl Target {
    /// Parses `id` in the form `kind` prescribes.
    pub fn parse(kind: TargetKind, id: &str) -> Result<Target, TargetError> {
        Ok(match kind {
            TargetKind::Token => Target::Token(Cti::from_bytes(parse_hex(id, kind)?)),
            TargetKind::Certificate => {
                Target::Certificate(CertSerial::from_bytes(parse_hex(id, kind)?))
            }
            TargetKind::Key => Target::Key(Kid(parse_hex(id, kind)?)),
            TargetKind::Device => Target::Device(DeviceId::from_bytes(parse_hex(id, kind)?)),
            TargetKind::Subject => Target::Subject(SubjectId::from_bytes(parse_hex(id, kind)?)),
        })
    }

    /// A target from its raw bytes (16, or 8 for a kid), or `None` for another length.
    pub(crate) fn from_raw(kind: TargetKind, raw: &[u8]) -> Option<Target> {
        Some(match kind {
            TargetKind::Token => Target::Token(Cti::from_slice(raw).ok()?),
            TargetKind::Certificate => Target::Certificate(CertSerial::from_slice(raw).ok()?),
            TargetKind::Key => Target::Key(Kid(raw.try_into().ok()?)),
            TargetKind::Device => Target::Device(DeviceId::from_slice(raw).ok()?),
            TargetKind::Subject => Target::Subject(SubjectId::from_slice(raw).ok()?),
        })
    }

    /// The raw bytes of the id (16, or 8 for a kid), as the binary formats store them.
    pub(crate) fn raw(&self) -> &[u8] {
        match self {
            Target::Token(id) => id.as_bytes(),
            Target::Certificate(id) => id.as_bytes(),
            Target::Device(id) => id.as_bytes(),
            Target::Subject(id) => id.as_bytes(),
            Target::Key(kid) => &kid.0,
        }
    }

    /// The kind.
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Token(_) => TargetKind::Token,
            Target::Device(_) => TargetKind::Device,
            Target::Subject(_) => TargetKind::Subject,
            Target::Certificate(_) => TargetKind::Certificate,
            Target::Key(_) => TargetKind::Key,
        }
    }

    /// The id in its text form (what `parse` accepts).
    pub fn id(&self) -> String {
        hex::encode(self.raw())
    }
}

impl fmt::Debug for Target {
    // Device and subject ids stay out of debug output, which may end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Device(_) | Target::Subject(_) => write!(f, "{}(..)", self.kind()),
            _ => write!(f, "{}({})", self.kind(), self.id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_one_spelling() {
        let hex32 = "00112233445566778899aabbccddeeff";
        for kind in [
            TargetKind::Token,
            TargetKind::Device,
            TargetKind::Subject,
            TargetKind::Certificate,
        ] {
            let target = Target::parse(kind, hex32).unwrap();
            assert_eq!(target.kind(), kind);
            assert_eq!(target.id(), hex32);
            assert_eq!(Target::from_raw(kind, target.raw()), Some(target));
            assert!(matches!(
                Target::parse(kind, &hex32.to_uppercase()),
                Err(TargetError::NotLowercaseHex { .. })
            ));
            assert!(matches!(
                Target::parse(kind, &hex32[..30]),
                Err(TargetError::Length {
                    expected: 32,
                    got: 30,
                    ..
                })
            ));
        }
        let kid = Target::parse(TargetKind::Key, "0011223344556677").unwrap();
        assert_eq!(
            kid,
            Target::Key(Kid([0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]))
        );
        assert_eq!(kid.id(), "0011223344556677");
    }

    #[test]
    fn malformed_ids_get_precise_errors() {
        assert_eq!(Target::parse(TargetKind::Key, ""), Err(TargetError::Empty));
        let err = Target::parse(TargetKind::Key, hex32()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "target_id: a key id (kid) is 16 lowercase hex characters, got 32 characters"
        );
        let err = Target::parse(TargetKind::Key, "00112233445566zz").unwrap_err();
        assert_eq!(
            err.to_string(),
            "target_id: a key id (kid) is lowercase hex (0-9, a-f) only"
        );
        // Multi-byte characters are counted as characters and refused.
        let err = Target::parse(TargetKind::Device, "é").unwrap_err();
        assert!(matches!(err, TargetError::Length { got: 1, .. }));
        assert!(Target::parse(TargetKind::Device, " 00112233445566778899aabbccddeef").is_err());
    }

    fn hex32() -> &'static str {
        "00112233445566778899aabbccddeeff"
    }

    #[test]
    fn kinds_are_bits() {
        let kinds = Kinds::of([TargetKind::Certificate, TargetKind::Key]);
        assert_eq!(kinds.bits(), 0b1_1000);
        assert!(kinds.contains(TargetKind::Key));
        assert!(!kinds.contains(TargetKind::Token));
        assert_eq!(
            kinds.iter().collect::<Vec<_>>(),
            [TargetKind::Certificate, TargetKind::Key]
        );
        assert_eq!(Kinds::from_bits(0b10_0000), None);
        assert_eq!(Kinds::from_bits(0b1_1111), Some(Kinds::ALL));
        assert_eq!(TargetKind::from_code(0), None);
        assert_eq!(TargetKind::from_code(6), None);
        for kind in TargetKind::ALL {
            assert_eq!(TargetKind::from_code(i32::from(kind.code())), Some(kind));
        }
    }

    #[test]
    fn debug_output_hides_person_ids() {
        let device = Target::parse(TargetKind::Device, hex32()).unwrap();
        assert_eq!(format!("{device:?}"), "device(..)");
    }
}
