//! Keys, key ids and the two signature algorithms citypass uses.
//!
//! The algorithm is a property of the key, never of the token: a `PublicKey` knows
//! whether it is Ed25519 or P-256, and verification refuses a token whose `alg`
//! differs before any signature math runs. `kid` is derived from the public key
//! (first 8 bytes of SHA-256), so two parties holding the same key agree on its id
//! without coordination, and a key set can refuse duplicates.

use ring::rand::SecureRandom;
use ring::signature::{self, KeyPair};

use crate::TokenError;

/// A COSE signature algorithm citypass accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 (COSE `EdDSA`, -8): the issuer's online tokens and device certificates.
    EdDsa,
    /// ECDSA P-256 with SHA-256 (COSE `ES256`, -7): offline codes signed on the phone.
    Es256,
}

impl Algorithm {
    /// The COSE algorithm identifier.
    pub fn cose_id(self) -> i64 {
        match self {
            Algorithm::EdDsa => -8,
            Algorithm::Es256 => -7,
        }
    }

    /// The algorithm for a COSE identifier, if citypass accepts it.
    pub fn from_cose_id(id: i64) -> Option<Self> {
        match id {
            -8 => Some(Algorithm::EdDsa),
            -7 => Some(Algorithm::Es256),
            _ => None,
        }
    }

    /// The JOSE name (RFC 8037, RFC 7518), as used in JWKS.
    pub fn jose_name(self) -> &'static str {
        match self {
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Es256 => "ES256",
        }
    }
}

/// An 8-byte key id: the first 8 bytes of SHA-256 over the public key bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kid(pub [u8; 8]);

impl Kid {
    /// Derives the id of `public_key` (raw Ed25519 key or uncompressed P-256 point).
    pub fn of(public_key: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
        let mut kid = [0u8; 8];
        kid.copy_from_slice(&digest.as_ref()[..8]);
        Kid(kid)
    }

    /// Reads a kid from header bytes; anything but 8 bytes is malformed.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TokenError> {
        let kid: [u8; 8] = bytes.try_into().map_err(|_| TokenError::BadKid)?;
        Ok(Kid(kid))
    }

    /// Parses the 16-hex-digit form.
    pub fn from_hex(hex: &str) -> Result<Self, TokenError> {
        if hex.len() != 16 || !hex.is_ascii() {
            return Err(TokenError::BadKid);
        }
        let mut kid = [0u8; 8];
        for (i, byte) in kid.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| TokenError::BadKid)?;
        }
        Ok(Kid(kid))
    }

    /// Lower-case hex, the form used in logs, files and the CLI.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Kid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kid({})", self.to_hex())
    }
}

impl std::fmt::Display for Kid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A public key with its pinned algorithm.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    alg: Algorithm,
    /// 32 raw bytes (Ed25519) or a 65-byte uncompressed SEC1 point (P-256).
    bytes: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({:?}, {})", self.alg, self.kid())
    }
}

impl PublicKey {
    /// An Ed25519 public key from its 32 raw bytes.
    pub fn ed25519(bytes: &[u8]) -> Result<Self, TokenError> {
        if bytes.len() != 32 {
            return Err(TokenError::InvalidKey(
                "Ed25519 public key must be 32 bytes",
            ));
        }
        Ok(PublicKey {
            alg: Algorithm::EdDsa,
            bytes: bytes.to_vec(),
        })
    }

    /// A P-256 public key from its uncompressed SEC1 encoding (0x04 ‖ x ‖ y).
    ///
    /// The point is checked to lie on the curve, so a malformed key is refused when it
    /// is loaded or certified rather than at every verification.
    pub fn p256(bytes: &[u8]) -> Result<Self, TokenError> {
        if bytes.len() != 65 || bytes[0] != 0x04 {
            return Err(TokenError::InvalidKey(
                "P-256 public key must be a 65-byte uncompressed point",
            ));
        }
        if !p256_point_is_valid(bytes) {
            return Err(TokenError::InvalidKey("P-256 point is not on the curve"));
        }
        Ok(PublicKey {
            alg: Algorithm::Es256,
            bytes: bytes.to_vec(),
        })
    }

    /// A P-256 key from coordinates inside an object whose issuer signature is being
    /// checked: the curve check is left to ring's verification, which refuses an
    /// invalid point, so the hot path does not pay for it twice.
    pub(crate) fn p256_from_xy_unchecked(x: &[u8], y: &[u8]) -> Result<Self, TokenError> {
        if x.len() != 32 || y.len() != 32 {
            return Err(TokenError::InvalidKey("P-256 coordinates must be 32 bytes"));
        }
        let mut bytes = Vec::with_capacity(65);
        bytes.push(0x04);
        bytes.extend_from_slice(x);
        bytes.extend_from_slice(y);
        Ok(PublicKey {
            alg: Algorithm::Es256,
            bytes,
        })
    }

    /// A P-256 public key from its affine coordinates (as in COSE_Key and JWK).
    pub fn p256_from_xy(x: &[u8], y: &[u8]) -> Result<Self, TokenError> {
        if x.len() != 32 || y.len() != 32 {
            return Err(TokenError::InvalidKey("P-256 coordinates must be 32 bytes"));
        }
        let mut point = Vec::with_capacity(65);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Self::p256(&point)
    }

    /// The algorithm pinned to this key.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The raw key bytes (see the field's invariant).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// P-256 affine coordinates; `None` for Ed25519.
    pub fn p256_xy(&self) -> Option<(&[u8], &[u8])> {
        match self.alg {
            Algorithm::Es256 => Some((&self.bytes[1..33], &self.bytes[33..65])),
            Algorithm::EdDsa => None,
        }
    }

    /// The key's id.
    pub fn kid(&self) -> Kid {
        Kid::of(&self.bytes)
    }

    /// Verifies `signature` over `message` with this key's pinned algorithm.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), TokenError> {
        let alg: &dyn signature::VerificationAlgorithm = match self.alg {
            Algorithm::EdDsa => &signature::ED25519,
            Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        };
        signature::UnparsedPublicKey::new(alg, &self.bytes)
            .verify(message, signature)
            .map_err(|_| TokenError::BadSignature)
    }
}

/// Whether `point` is an uncompressed P-256 point on the curve.
///
/// ring exposes no direct point validation, but ECDH validates the peer's point fully
/// (on the curve, not the identity) before any arithmetic; one agreement with a
/// throwaway key is the check. It costs one scalar multiplication, paid when a key is
/// loaded or certified, never per verification.
fn p256_point_is_valid(point: &[u8]) -> bool {
    use ring::agreement;
    let rng = ring::rand::SystemRandom::new();
    let Ok(ours) = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng) else {
        return false;
    };
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, point);
    agreement::agree_ephemeral(ours, &peer, |_| ()).is_ok()
}

/// The issuer's Ed25519 signing key.
pub struct IssuerKey {
    pair: signature::Ed25519KeyPair,
    seed: [u8; 32],
    public: PublicKey,
    kid: Kid,
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuerKey({})", self.kid)
    }
}

impl IssuerKey {
    /// The key for a 32-byte Ed25519 seed (the form citypass stores private keys in).
    pub fn from_seed(seed: &[u8]) -> Result<Self, TokenError> {
        let pair = signature::Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| TokenError::InvalidKey("Ed25519 seed must be 32 bytes"))?;
        let public = PublicKey::ed25519(pair.public_key().as_ref())?;
        let kid = public.kid();
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| TokenError::InvalidKey("Ed25519 seed must be 32 bytes"))?;
        Ok(IssuerKey {
            pair,
            seed,
            public,
            kid,
        })
    }

    /// A fresh random seed.
    pub fn generate_seed(rng: &dyn SecureRandom) -> Result<[u8; 32], TokenError> {
        let mut seed = [0u8; 32];
        rng.fill(&mut seed).map_err(|_| TokenError::Crypto)?;
        Ok(seed)
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The seed, for writing the key ring file.
    pub(crate) fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The key id.
    pub fn kid(&self) -> Kid {
        self.kid
    }

    /// Signs `message` (deterministic: Ed25519 needs no randomness).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// A P-256 key pair held by a phone: the bound device key or an offline key that a
/// device certificate certifies.
pub struct DeviceKey {
    pair: signature::EcdsaKeyPair,
    pkcs8: Vec<u8>,
    public: PublicKey,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceKey({})", self.public.kid())
    }
}

impl DeviceKey {
    /// A fresh key pair.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, TokenError> {
        let doc = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            rng,
        )
        .map_err(|_| TokenError::Crypto)?;
        Self::from_pkcs8(doc.as_ref(), rng)
    }

    /// The key pair from its PKCS#8 document (the form the app stores it in).
    pub fn from_pkcs8(pkcs8: &[u8], rng: &dyn SecureRandom) -> Result<Self, TokenError> {
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            rng,
        )
        .map_err(|_| TokenError::InvalidKey("not a P-256 PKCS#8 key"))?;
        let public = PublicKey::p256(pair.public_key().as_ref())?;
        Ok(DeviceKey {
            pair,
            pkcs8: pkcs8.to_vec(),
            public,
        })
    }

    /// The PKCS#8 document, for storing the key.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message` (ES256, fixed-length r ‖ s; randomised, as ring does).
    pub fn sign(&self, rng: &dyn SecureRandom, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        self.pair
            .sign(rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| TokenError::Crypto)
    }
}
