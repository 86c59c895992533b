//! Every way a code can fail, one variant each.
//!
//! The verifier turns these into deny reasons, so a variant never carries token bytes,
//! subject ids or other personal data: only which rule failed. `code()` gives a stable
//! snake-case name that logs, the CLI and the gRPC mapping share.

use thiserror::Error;

/// Why a code, certificate or key set was refused (or could not be made).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TokenError {
    // --- text layer -------------------------------------------------------------------
    /// The text is longer than any citypass code can be; refused before decoding.
    #[error("input of {len} bytes exceeds the {max}-byte cap")]
    TooLarge { len: usize, max: usize },
    /// The text does not start with a known context prefix (`CP1:` or `CP2:`).
    #[error("unknown or missing context prefix")]
    BadPrefix,
    /// The prefix names another kind of code than the caller expected.
    #[error("prefix names a different kind of code")]
    WrongPrefix,
    /// The text after the prefix is not valid Base45.
    #[error("invalid Base45")]
    BadBase45,

    // --- CBOR structure ---------------------------------------------------------------
    /// The bytes end in the middle of a CBOR item.
    #[error("truncated CBOR")]
    Truncated,
    /// Indefinite-length strings, arrays or maps are not accepted.
    #[error("indefinite-length CBOR item")]
    IndefiniteLength,
    /// Containers nest deeper than the format ever needs.
    #[error("CBOR nesting deeper than {max}")]
    TooDeep { max: usize },
    /// A container or string is larger than the format ever needs.
    #[error("CBOR item larger than allowed")]
    ItemTooLarge,
    /// Bytes remain after the single top-level item.
    #[error("trailing bytes after the CBOR item")]
    TrailingBytes,
    /// Well-formed CBOR, but not the expected COSE structure (reserved encodings
    /// included).
    #[error("malformed COSE structure")]
    Malformed,
    /// The COSE_Sign1 is not wrapped in CBOR tag 18.
    #[error("not a tagged COSE_Sign1")]
    NotCoseSign1,

    // --- headers ----------------------------------------------------------------------
    /// The protected header has no `alg` (the COSE form of "alg: none").
    #[error("protected header has no alg")]
    MissingAlg,
    /// `alg` appears in the unprotected header, where it is never trusted.
    #[error("alg in the unprotected header")]
    AlgInUnprotected,
    /// The unprotected header carries parameters; nothing is read from it, so nothing
    /// may be put there.
    #[error("unprotected header is not empty")]
    UnprotectedHeaderNotEmpty,
    /// `alg` is not one citypass uses.
    #[error("unsupported alg")]
    UnsupportedAlg,
    /// `alg` differs from the algorithm pinned to the key.
    #[error("alg differs from the key's algorithm")]
    AlgMismatch,
    /// No `kid`, or one that is not 8 bytes.
    #[error("missing or malformed kid")]
    BadKid,
    /// `kid` names no key in the key set.
    #[error("unknown kid")]
    UnknownKid,
    /// `kid` names a key published for another usage (a revocation-snapshot key
    /// offered for a code, or a code key for a snapshot).
    #[error("key published for another usage")]
    WrongKeyUsage,
    /// The key was revoked.
    #[error("signing key revoked")]
    KeyRevoked,
    /// The key was retired and its valid-until has passed.
    #[error("signing key retired and past its valid-until")]
    KeyExpired,
    /// `crit` names a header parameter this implementation does not process.
    #[error("unknown critical header parameter")]
    UnknownCriticalHeader,
    /// No `typ` in the protected header.
    #[error("missing typ")]
    MissingTyp,
    /// `typ` names another kind of object (e.g. a device certificate shown as a code).
    #[error("typ names a different kind of object")]
    WrongTyp,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,

    // --- claims -----------------------------------------------------------------------
    /// A claim the kind requires is absent.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// A claim has the wrong CBOR type or an impossible value.
    #[error("invalid claim {0}")]
    InvalidClaim(&'static str),
    /// A claim label occurs twice.
    #[error("duplicate claim")]
    DuplicateClaim,
    /// `exp` lies before `iat`, or the lifetime exceeds what the kind allows.
    #[error("lifetime is negative or too long")]
    BadLifetime,

    // --- time -------------------------------------------------------------------------
    /// `exp` plus the skew allowance has passed.
    #[error("expired")]
    Expired,
    /// `iat` lies beyond now plus the skew allowance.
    #[error("not yet valid")]
    NotYetValid,

    // --- offline codes ----------------------------------------------------------------
    /// The embedded device certificate has expired.
    #[error("device certificate expired")]
    CertificateExpired,
    /// The embedded device certificate is not valid yet.
    #[error("device certificate not yet valid")]
    CertificateNotYetValid,
    /// The embedded device certificate fails a check other than time (its own error is
    /// the reason, reported as `certificate_invalid`).
    #[error("device certificate invalid: {0}")]
    CertificateInvalid(Box<TokenError>),
    /// The offline code claims a time outside its certificate's validity.
    #[error("offline code outside its certificate's validity")]
    OutsideCertificate,

    // --- keys and sealing -------------------------------------------------------------
    /// Key material is malformed (wrong length, not on the curve, bad PKCS#8...).
    #[error("invalid key material: {0}")]
    InvalidKey(&'static str),
    /// Two keys in one key set share a `kid`.
    #[error("duplicate kid in key set")]
    DuplicateKid,
    /// A JWKS or key file does not parse.
    #[error("invalid key set: {0}")]
    InvalidKeySet(String),
    /// The sealed subject does not open under this subject key (or is too short to
    /// hold a sealed value).
    #[error("sealed subject does not open")]
    Unseal,
    /// The sealed subject names a subject key id that no key held has: sealed by a key
    /// not yet loaded here, or by one dropped after its retirement.
    #[error("sealed subject names unknown subject key id {id}")]
    UnknownSubjectKey { id: u8 },
    /// The sealed subject's layout version is not one this implementation reads.
    #[error("sealed subject has unsupported layout version {version}")]
    UnsupportedSealVersion { version: u8 },
    /// A time computed from a lifetime (`now` + lifetime, a retirement's valid-until)
    /// does not fit in Unix seconds: refused rather than wrapped or saturated.
    #[error("time overflows: a lifetime too long for the clock")]
    TimeOverflow,
    /// Signing or randomness failed inside the crypto library.
    #[error("cryptographic operation failed")]
    Crypto,
    /// A code could not be rendered as a QR symbol.
    #[error("cannot render QR: {0}")]
    Qr(&'static str),
}

impl TokenError {
    /// Stable snake-case name of the failure: the deny reason's spelling in logs and CLI.
    pub fn code(&self) -> &'static str {
        use TokenError::*;
        match self {
            TooLarge { .. } => "too_large",
            BadPrefix => "bad_prefix",
            WrongPrefix => "wrong_prefix",
            BadBase45 => "bad_base45",
            Truncated => "truncated",
            IndefiniteLength => "indefinite_length",
            TooDeep { .. } => "too_deep",
            ItemTooLarge => "item_too_large",
            TrailingBytes => "trailing_bytes",
            Malformed => "malformed",
            NotCoseSign1 => "not_cose_sign1",
            MissingAlg => "missing_alg",
            AlgInUnprotected => "alg_in_unprotected",
            UnprotectedHeaderNotEmpty => "unprotected_header_not_empty",
            UnsupportedAlg => "unsupported_alg",
            AlgMismatch => "alg_mismatch",
            BadKid => "bad_kid",
            UnknownKid => "unknown_kid",
            WrongKeyUsage => "wrong_key_usage",
            KeyRevoked => "key_revoked",
            KeyExpired => "key_expired",
            UnknownCriticalHeader => "unknown_critical_header",
            MissingTyp => "missing_typ",
            WrongTyp => "wrong_typ",
            BadSignature => "bad_signature",
            MissingClaim(_) => "missing_claim",
            InvalidClaim(_) => "invalid_claim",
            DuplicateClaim => "duplicate_claim",
            BadLifetime => "bad_lifetime",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            CertificateExpired => "certificate_expired",
            CertificateNotYetValid => "certificate_not_yet_valid",
            CertificateInvalid(_) => "certificate_invalid",
            OutsideCertificate => "outside_certificate",
            InvalidKey(_) => "invalid_key",
            DuplicateKid => "duplicate_kid",
            InvalidKeySet(_) => "invalid_key_set",
            Unseal => "unseal_failed",
            UnknownSubjectKey { .. } => "unknown_subject_key",
            UnsupportedSealVersion { .. } => "unsupported_seal_version",
            TimeOverflow => "time_overflow",
            Crypto => "crypto",
            Qr(_) => "qr",
        }
    }
}
