//! The issuer's private key ring and its file format.
//!
//! One JSON document holds every signing seed with its status, which key signs now,
//! and the subject-sealing keys. Publishing and signing are separate steps so that a
//! rotation can follow the safe order (publish the new key, let gates refresh, switch
//! signing, retire the old key after the longest code lifetime): a key added with
//! [`Keyring::add_key`] is published but does not sign until [`Keyring::rotate`].
//!
//! The subject-sealing keys rotate the same way, within the ring: each has a one-byte
//! key id, written into every subject it seals ([`crate::SubjectKey`]). One key seals
//! ([`Keyring::subject_key`]); a key staged with [`Keyring::add_subject_key`] opens but
//! does not seal until [`Keyring::rotate_subject_key`], which retires the old one until
//! a valid-until; [`Keyring::subject_keys`] opens with every key not past it. A ring
//! written before key ids existed has one sealing key, with id 0. The file keeps the
//! sealing key in `subject_key` (with `subject_key_id`) and the others in
//! `other_subject_keys`, so an issuer that predates key ids still reads it and seals
//! with the current key.
//!
//! The ring also lists the **public** halves of the revocation service's
//! snapshot-signing keys (`snapshot_keys`), so that the issuer publishes them in its
//! key set with their own usage ([`KeyUsage::Snapshot`]). Their private halves are in
//! the revocation service's own file ([`crate::SnapshotKey`]), never here: the issuer
//! cannot sign snapshots, and the revocation service holds no code or sealing key
//! (security review, finding 4). A snapshot key is published, rotated and retired
//! like a code key: [`Keyring::publish_snapshot_key`] before the revocation service
//! signs with it, [`Keyring::retire_snapshot_keys`] once it does.
//!
//! `dev: true` marks key rings made for laptops and tests; production configuration
//! refuses them, so a dev key can never sign real codes. Reading and writing files is
//! the caller's job: this crate does no I/O.

use ring::rand::SecureRandom;

use crate::TokenError;
use crate::issuer::Issuer;
use crate::keys::{Algorithm, IssuerKey, Kid, PublicKey};
use crate::keyset::{KeySet, KeyStatus, KeyUsage, PublishedKey};
use crate::seal::{SubjectKey, SubjectKeys};

mod file;

/// The issuer's private keys.
pub struct Keyring {
    /// Made for development; refused by production configuration.
    pub dev: bool,
    /// The `iss` claim of every code this ring signs.
    pub iss: String,
    keys: Vec<(IssuerKey, KeyStatus)>,
    signing: Kid,
    /// Every subject key: the one sealing now, staged ones, retired ones.
    subject_keys: Vec<RingSubjectKey>,
    /// The id of the subject key that seals now.
    sealing: u8,
    /// Public halves of the snapshot-signing keys, published with usage `Snapshot`.
    snapshot_keys: Vec<(PublicKey, KeyStatus)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("dev", &self.dev)
            .field("iss", &self.iss)
            .field("signing", &self.signing)
            .field("keys", &self.keys.len())
            .field("sealing", &self.sealing)
            .field("subject_keys", &self.subject_keys.len())
            .field("snapshot_keys", &self.snapshot_keys.len())
            .finish_non_exhaustive()
    }
}

/// What a subject key in the ring is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKeyStatus {
    /// It seals new codes and certificates (exactly one key).
    Sealing,
    /// Staged by [`Keyring::add_subject_key`]: it opens, and seals after the next
    /// [`Keyring::rotate_subject_key`].
    Staged,
    /// It sealed until a rotation; it opens until `valid_until` (Unix seconds), then
    /// the next rotation drops it.
    Retired { valid_until: u64 },
}

struct RingSubjectKey {
    id: u8,
    secret: [u8; 32],
    /// `None` for the sealing key and staged keys.
    valid_until: Option<u64>,
}

fn bad(what: impl Into<String>) -> TokenError {
    TokenError::InvalidKeySet(what.into())
}

impl Keyring {
    /// A new ring with one signing key and a fresh subject key.
    pub fn generate(iss: &str, dev: bool, rng: &dyn SecureRandom) -> Result<Self, TokenError> {
        let key = IssuerKey::from_seed(&IssuerKey::generate_seed(rng)?)?;
        let mut subject_key = [0u8; 32];
        rng.fill(&mut subject_key).map_err(|_| TokenError::Crypto)?;
        Ok(Keyring {
            dev,
            iss: iss.to_owned(),
            signing: key.kid(),
            keys: vec![(key, KeyStatus::Active)],
            subject_keys: vec![RingSubjectKey {
                id: 0,
                secret: subject_key,
                valid_until: None,
            }],
            sealing: 0,
            snapshot_keys: Vec::new(),
        })
    }

    /// Refuses a dev ring: production configuration calls this at start-up, so a key
    /// made on a laptop can never sign real codes.
    pub fn ensure_production(&self) -> Result<(), TokenError> {
        if self.dev {
            return Err(bad("dev keys are refused in production"));
        }
        Ok(())
    }

    /// The kid that signs now.
    pub fn signing_kid(&self) -> Kid {
        self.signing
    }

    /// Publishes a new active key that does not sign yet; returns its kid.
    pub fn add_key(&mut self, rng: &dyn SecureRandom) -> Result<Kid, TokenError> {
        let key = IssuerKey::from_seed(&IssuerKey::generate_seed(rng)?)?;
        let kid = key.kid();
        self.keys.push((key, KeyStatus::Active));
        Ok(kid)
    }

    /// Switches signing to the newest published key that is not signing (adding one if
    /// there is none) and retires the old signing key until `now + retire_after`
    /// (beyond Unix seconds: [`TokenError::TimeOverflow`], and nothing changes).
    /// Retired keys already past their valid-until are dropped. Returns the new kid.
    pub fn rotate(
        &mut self,
        now: u64,
        retire_after: u64,
        rng: &dyn SecureRandom,
    ) -> Result<Kid, TokenError> {
        let valid_until = now
            .checked_add(retire_after)
            .ok_or(TokenError::TimeOverflow)?;
        let next = match self
            .keys
            .iter()
            .rev()
            .find(|(k, s)| *s == KeyStatus::Active && k.kid() != self.signing)
        {
            Some((k, _)) => k.kid(),
            None => self.add_key(rng)?,
        };
        let old = self.signing;
        for (k, status) in &mut self.keys {
            if k.kid() == old {
                *status = KeyStatus::Retired { valid_until };
            }
        }
        self.keys.retain(
            |(_, s)| !matches!(s, KeyStatus::Retired { valid_until } if *valid_until < now),
        );
        self.signing = next;
        Ok(next)
    }

    /// Marks `kid` revoked (it stays published so gates refuse it), a code key or a
    /// snapshot key. The signing key cannot be revoked until another key signs.
    pub fn revoke(&mut self, kid: Kid) -> Result<(), TokenError> {
        if kid == self.signing {
            return Err(bad("rotate before revoking the signing key"));
        }
        let status = self
            .keys
            .iter_mut()
            .find(|(k, _)| k.kid() == kid)
            .map(|(_, status)| status)
            .or_else(|| {
                self.snapshot_keys
                    .iter_mut()
                    .find(|(k, _)| k.kid() == kid)
                    .map(|(_, status)| status)
            })
            .ok_or(TokenError::UnknownKid)?;
        *status = KeyStatus::Revoked;
        Ok(())
    }

    /// Publishes the public half of a snapshot-signing key (Ed25519), active, with
    /// usage `Snapshot`. Publish it before the revocation service signs with it, so
    /// gates know it in time. A key already in the ring is refused.
    pub fn publish_snapshot_key(&mut self, key: &PublicKey) -> Result<Kid, TokenError> {
        if key.alg() != Algorithm::EdDsa {
            return Err(TokenError::InvalidKey("a snapshot key must be Ed25519"));
        }
        let kid = key.kid();
        if self.keys.iter().any(|(k, _)| k.kid() == kid)
            || self.snapshot_keys.iter().any(|(k, _)| k.kid() == kid)
        {
            return Err(TokenError::DuplicateKid);
        }
        self.snapshot_keys.push((key.clone(), KeyStatus::Active));
        Ok(kid)
    }

    /// Whether `kid` is a published snapshot key, whatever its status.
    pub fn publishes_snapshot_key(&self, kid: Kid) -> bool {
        self.snapshot_keys.iter().any(|(k, _)| k.kid() == kid)
    }

    /// After the revocation service switched to snapshot key `current`: retires every
    /// other active snapshot key until `now + retire_after` and drops retired snapshot
    /// keys already past their valid-until. `current` must be published and active.
    pub fn retire_snapshot_keys(
        &mut self,
        current: Kid,
        now: u64,
        retire_after: u64,
    ) -> Result<(), TokenError> {
        match self.snapshot_keys.iter().find(|(k, _)| k.kid() == current) {
            Some((_, KeyStatus::Active)) => {}
            Some(_) => return Err(bad("the current snapshot key is not active")),
            None => return Err(TokenError::UnknownKid),
        }
        let valid_until = now
            .checked_add(retire_after)
            .ok_or(TokenError::TimeOverflow)?;
        for (k, status) in &mut self.snapshot_keys {
            if k.kid() != current && *status == KeyStatus::Active {
                *status = KeyStatus::Retired { valid_until };
            }
        }
        self.snapshot_keys.retain(
            |(_, s)| !matches!(s, KeyStatus::Retired { valid_until } if *valid_until < now),
        );
        Ok(())
    }

    /// The public key set gates verify against: the code keys (usage `Code`), then
    /// the snapshot keys (usage `Snapshot`).
    pub fn public_keyset(&self) -> Result<KeySet, TokenError> {
        let code = self.keys.iter().map(|(k, status)| PublishedKey {
            key: k.public_key().clone(),
            status: *status,
            usage: KeyUsage::Code,
        });
        let snapshot = self.snapshot_keys.iter().map(|(k, status)| PublishedKey {
            key: k.clone(),
            status: *status,
            usage: KeyUsage::Snapshot,
        });
        KeySet::new(code.chain(snapshot).collect())
    }

    /// An issuer signing with the current key.
    pub fn issuer(&self) -> Result<Issuer, TokenError> {
        let (key, _) = self
            .keys
            .iter()
            .find(|(k, _)| k.kid() == self.signing)
            .ok_or(TokenError::UnknownKid)?;
        Ok(Issuer::new(
            self.iss.clone(),
            IssuerKey::from_seed(key.seed())?,
            self.subject_key()?,
        ))
    }

    /// The subject-sealing key that seals now, with its id.
    pub fn subject_key(&self) -> Result<SubjectKey, TokenError> {
        let key = self.sealing_key();
        SubjectKey::with_id(key.id, &key.secret)
    }

    /// The id of the subject key that seals now.
    pub fn subject_key_id(&self) -> u8 {
        self.sealing
    }

    /// Every subject key that opens at `now` (Unix seconds): the sealing key, staged
    /// keys, and retired keys not past their valid-until. A value sealed by a key not
    /// among them is refused with [`TokenError::UnknownSubjectKey`].
    pub fn subject_keys(&self, now: u64) -> Result<SubjectKeys, TokenError> {
        let keys = self
            .subject_keys
            .iter()
            .filter(|k| k.valid_until.is_none_or(|t| t >= now))
            .map(|k| SubjectKey::with_id(k.id, &k.secret))
            .collect::<Result<Vec<_>, _>>()?;
        SubjectKeys::new(keys)
    }

    /// The subject keys alone, for a service that opens sealed subjects and must not
    /// sign (the verifier's subject-key file): every key the ring holds, with the
    /// valid-until of retired ones.
    pub fn subject_key_file(&self) -> crate::SubjectKeyFile {
        let keys: Vec<(u8, [u8; 32], Option<u64>)> = self
            .subject_keys
            .iter()
            .map(|k| (k.id, k.secret, k.valid_until))
            .collect();
        crate::SubjectKeyFile::new(self.dev, &keys)
    }

    /// Each subject key's id and status (no secret), in the ring's order.
    pub fn subject_key_statuses(&self) -> Vec<(u8, SubjectKeyStatus)> {
        self.subject_keys
            .iter()
            .map(|k| {
                let status = match k.valid_until {
                    _ if k.id == self.sealing => SubjectKeyStatus::Sealing,
                    None => SubjectKeyStatus::Staged,
                    Some(valid_until) => SubjectKeyStatus::Retired { valid_until },
                };
                (k.id, status)
            })
            .collect()
    }

    /// Stages a new subject key: it opens from now on (so every holder of the ring can
    /// open what it will seal), and seals after [`Keyring::rotate_subject_key`].
    /// Returns its id.
    pub fn add_subject_key(&mut self, rng: &dyn SecureRandom) -> Result<u8, TokenError> {
        let id = (1..=u8::MAX)
            .map(|step| self.sealing.wrapping_add(step))
            .find(|id| self.subject_keys.iter().all(|k| k.id != *id))
            .ok_or_else(|| bad("every subject key id is in use"))?;
        let mut secret = [0u8; 32];
        rng.fill(&mut secret).map_err(|_| TokenError::Crypto)?;
        self.subject_keys.push(RingSubjectKey {
            id,
            secret,
            valid_until: None,
        });
        Ok(id)
    }

    /// Switches sealing to the newest staged subject key (staging one if there is
    /// none) and retires the old sealing key until `now + retire_after`: it keeps
    /// opening what it sealed until then. Retired subject keys already past their
    /// valid-until are dropped. Returns the new key's id.
    pub fn rotate_subject_key(
        &mut self,
        now: u64,
        retire_after: u64,
        rng: &dyn SecureRandom,
    ) -> Result<u8, TokenError> {
        let valid_until = now
            .checked_add(retire_after)
            .ok_or(TokenError::TimeOverflow)?;
        let next = match self
            .subject_keys
            .iter()
            .rev()
            .find(|k| k.valid_until.is_none() && k.id != self.sealing)
        {
            Some(k) => k.id,
            None => self.add_subject_key(rng)?,
        };
        let old = self.sealing;
        for key in &mut self.subject_keys {
            if key.id == old {
                key.valid_until = Some(valid_until);
            }
        }
        self.subject_keys
            .retain(|k| k.valid_until.is_none_or(|t| t >= now));
        self.sealing = next;
        Ok(next)
    }

    fn sealing_key(&self) -> &RingSubjectKey {
        // Every constructor puts the sealing key in the ring, and nothing removes it.
        self.subject_keys
            .iter()
            .find(|k| k.id == self.sealing)
            .unwrap_or(&self.subject_keys[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    #[test]
    fn file_round_trip_and_rotation() {
        let rng = ring::rand::SystemRandom::new();
        let mut ring = Keyring::generate("cp", true, &rng).unwrap();
        let first = ring.signing_kid();
        let staged = ring.add_key(&rng).unwrap();
        assert_eq!(
            ring.signing_kid(),
            first,
            "adding publishes without signing"
        );
        let next = ring.rotate(1_000, 300, &rng).unwrap();
        assert_eq!(next, staged);
        let parsed = Keyring::from_json(&ring.to_json()).unwrap();
        assert_eq!(parsed.signing_kid(), staged);
        let set = parsed.public_keyset().unwrap();
        assert_eq!(
            set.get(&first).unwrap().status,
            KeyStatus::Retired { valid_until: 1_300 }
        );
        // A later rotation past the valid-until drops the retired key.
        let mut parsed = parsed;
        parsed.rotate(2_000, 300, &rng).unwrap();
        assert!(parsed.public_keyset().unwrap().get(&first).is_none());
    }

    /// Security review, smaller findings: the subject-sealing key had no key id, so
    /// it could not be rotated without every value it had sealed failing to open.
    #[test]
    fn smaller_findings_the_sealing_key_rotates() {
        use crate::{ObjectType, Scopes, SubjectKeyStatus};
        let rng = ring::rand::SystemRandom::new();
        let mut ring = Keyring::generate("cp", true, &rng).unwrap();
        let subject = [0x5a; 16];
        let old_id = ring.subject_key_id();
        let old = ring
            .issuer()
            .unwrap()
            .issue_token(&subject, Scopes::all(), 1_000, 60)
            .unwrap();
        let cti = *old.cti.as_bytes();
        let sealed_sub = |text: &str| {
            let bytes = crate::text::decode(text, crate::CodeKind::Online).unwrap();
            let env = crate::envelope::Envelope::parse(&bytes, ObjectType::Online).unwrap();
            crate::claims::OnlineClaims::from_cbor(&env.payload)
                .unwrap()
                .sealed_sub
        };
        let open = |ring: &Keyring, now: u64, sealed: &[u8], cti: &[u8]| {
            ring.subject_keys(now)
                .unwrap()
                .open(sealed, cti, ObjectType::Online.typ())
        };

        // Step 1: a staged key opens, but the old key still seals.
        let staged = ring.add_subject_key(&rng).unwrap();
        assert_ne!(staged, old_id);
        assert_eq!(ring.subject_key_id(), old_id);
        assert_eq!(ring.issuer().unwrap().subject_key_id(), old_id);
        // Step 2: the rotation switches sealing and retires the old key (through the
        // file, as an issuer reloads it).
        assert_eq!(ring.rotate_subject_key(1_000, 300, &rng).unwrap(), staged);
        let ring = Keyring::from_json(&ring.to_json()).unwrap();
        assert_eq!(ring.subject_key_id(), staged);
        assert_eq!(
            ring.subject_key_statuses(),
            vec![
                (staged, SubjectKeyStatus::Sealing),
                (old_id, SubjectKeyStatus::Retired { valid_until: 1_300 }),
            ]
        );

        // What the old key sealed still opens, by its id.
        let sealed_old = sealed_sub(&old.text);
        assert_eq!(sealed_old[1], old_id);
        assert_eq!(open(&ring, 1_100, &sealed_old, &cti).unwrap(), subject);
        // New seals use the new key.
        let new = ring
            .issuer()
            .unwrap()
            .issue_token(&subject, Scopes::all(), 1_100, 60)
            .unwrap();
        let sealed_new = sealed_sub(&new.text);
        assert_eq!(sealed_new[1], staged);
        assert_eq!(
            open(&ring, 1_100, &sealed_new, new.cti.as_bytes()).unwrap(),
            subject
        );
        assert_eq!(
            ring.subject_key().unwrap().open(&sealed_old, &cti, "cp1"),
            Err(TokenError::UnknownSubjectKey { id: old_id }),
            "the sealing key alone does not open the old key's values"
        );
        // A value claiming a key id the ring does not hold is refused as such.
        let mut unknown = sealed_new.clone();
        unknown[1] = 0xee;
        assert_eq!(
            open(&ring, 1_100, &unknown, new.cti.as_bytes()),
            Err(TokenError::UnknownSubjectKey { id: 0xee })
        );
        // Past its valid-until the retired key opens nothing, and the next rotation
        // drops it from the ring.
        assert_eq!(
            open(&ring, 1_301, &sealed_old, &cti),
            Err(TokenError::UnknownSubjectKey { id: old_id })
        );
        let mut ring = ring;
        let third = ring.rotate_subject_key(2_000, 300, &rng).unwrap();
        assert!(![old_id, staged].contains(&third));
        assert_eq!(
            ring.subject_key_statuses()
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
            vec![staged, third]
        );
        assert_eq!(
            ring.rotate_subject_key(u64::MAX, 1, &rng),
            Err(TokenError::TimeOverflow)
        );
    }

    #[test]
    fn a_ring_written_before_subject_key_ids_seals_with_id_0() {
        let rng = ring::rand::SystemRandom::new();
        let ring = Keyring::generate("cp", true, &rng).unwrap();
        let mut file: serde_json::Value = serde_json::from_str(&ring.to_json()).unwrap();
        let object = file.as_object_mut().unwrap();
        assert_eq!(object.remove("subject_key_id"), Some(0.into()));
        assert!(!object.contains_key("other_subject_keys"));
        let old = Keyring::from_json(&file.to_string()).unwrap();
        assert_eq!(old.subject_key_id(), 0);
        assert_eq!(old.subject_keys(0).unwrap().ids(), vec![0]);

        // Two keys with one id are refused.
        let mut ring = ring;
        ring.add_subject_key(&rng).unwrap();
        let json = ring.to_json().replace("\"id\": 1", "\"id\": 0");
        assert!(matches!(
            Keyring::from_json(&json),
            Err(TokenError::InvalidKeySet(_))
        ));
    }

    #[test]
    fn retiring_beyond_the_clock_is_an_error() {
        let rng = ring::rand::SystemRandom::new();
        let mut ring = Keyring::generate("cp", true, &rng).unwrap();
        let first = ring.signing_kid();
        assert_eq!(
            ring.rotate(u64::MAX - 5, 6, &rng),
            Err(TokenError::TimeOverflow)
        );
        assert_eq!(
            ring.signing_kid(),
            first,
            "a refused rotation changes nothing"
        );
    }

    #[test]
    fn production_refuses_dev_rings() {
        let rng = ring::rand::SystemRandom::new();
        assert!(
            Keyring::generate("cp", true, &rng)
                .unwrap()
                .ensure_production()
                .is_err()
        );
        assert!(
            Keyring::generate("cp", false, &rng)
                .unwrap()
                .ensure_production()
                .is_ok()
        );
    }

    #[test]
    fn tampered_file_is_refused() {
        let rng = ring::rand::SystemRandom::new();
        let ring = Keyring::generate("cp", true, &rng).unwrap();
        let json = ring
            .to_json()
            .replace(&ring.signing_kid().to_hex(), "0000000000000000");
        assert!(matches!(
            Keyring::from_json(&json),
            Err(TokenError::InvalidKeySet(_))
        ));
    }

    #[test]
    fn snapshot_keys_are_published_with_their_own_usage() {
        let rng = ring::rand::SystemRandom::new();
        let mut ring = Keyring::generate("cp", true, &rng).unwrap();
        let first = crate::SnapshotKey::from_seed(&[7; 32], true).unwrap();
        let second = crate::SnapshotKey::from_seed(&[8; 32], true).unwrap();
        ring.publish_snapshot_key(first.public_key()).unwrap();
        assert_eq!(
            ring.publish_snapshot_key(first.public_key()),
            Err(TokenError::DuplicateKid)
        );
        // A code key cannot be published as a snapshot key too.
        let code = ring.public_keyset().unwrap().keys()[0].key.clone();
        assert_eq!(
            ring.publish_snapshot_key(&code),
            Err(TokenError::DuplicateKid)
        );
        ring.publish_snapshot_key(second.public_key()).unwrap();
        ring.retire_snapshot_keys(second.kid(), 1_000, 300).unwrap();

        // The ring's file holds only public halves: no snapshot seed.
        let json = ring.to_json();
        for seed in [[7u8; 32], [8u8; 32]] {
            assert!(!json.contains(&B64.encode(seed)));
        }
        let mut parsed = Keyring::from_json(&json).unwrap();
        let set = parsed.public_keyset().unwrap();
        let old = set.get(&first.kid()).unwrap();
        assert_eq!(old.usage, KeyUsage::Snapshot);
        assert_eq!(old.status, KeyStatus::Retired { valid_until: 1_300 });
        let new = set.get(&second.kid()).unwrap();
        assert_eq!(
            (new.usage, new.status),
            (KeyUsage::Snapshot, KeyStatus::Active)
        );
        assert_eq!(set.get(&ring.signing_kid()).unwrap().usage, KeyUsage::Code);

        parsed.revoke(first.kid()).unwrap();
        assert_eq!(
            parsed
                .public_keyset()
                .unwrap()
                .get(&first.kid())
                .unwrap()
                .status,
            KeyStatus::Revoked
        );
        // A later retirement past the valid-until drops retired snapshot keys.
        ring.retire_snapshot_keys(second.kid(), 2_000, 300).unwrap();
        assert!(ring.public_keyset().unwrap().get(&first.kid()).is_none());
        assert!(ring.retire_snapshot_keys(first.kid(), 2_000, 300).is_err());
    }
}
