//! One scan, one decision: the gate's rules in their fixed order.
//!
//! The steps are public ([`check_code`], [`check_revocation`], the marks a
//! [`Presented`] code leaves), so that the online verifier service runs the same
//! pipeline with its own revocation source (a follower) and replay store (Redis):
//! one copy of the rules, two compositions.
//!
//! Order: the code itself (format, key, signature, time: all in `citypass-token`),
//! then scope, then revocation (from the last signed snapshot the gate loaded: codes by
//! `cti`, certificates by serial, keys by kid; a gate cannot unseal subjects, which is
//! why device and subject revocations cascade to certificate serials), then single
//! use. Single use comes last so that a code refused for another reason does not burn
//! its `cti`.
//!
//! Revocations fail closed: a gate refuses every code until it has loaded a snapshot,
//! and again once its snapshot is older than `max_revocation_age` (a gate cut off from
//! the network cannot know what was revoked since). A snapshot is verified with the
//! gate's own key set, and one older than the snapshot in force (a lower epoch, or an
//! earlier creation time) is refused, so an attacker who replays an old snapshot to a
//! gate cannot bring a revoked code back.
//!
//! Keys have a usage (`citypass_token::KeyUsage`): codes and certificates are accepted
//! only from keys published for codes, snapshots only from the key published for
//! snapshots. So the revocation service, which holds only the snapshot key, cannot
//! mint a code a gate accepts, and a code key cannot feed a gate revocation data
//! (security review, finding 4).

use citypass_revocation::{RevocationSet, SignedSnapshot, SnapshotError};
use citypass_token::{
    CertSerial, CodeKind, Cti, KeySet, Kid, ObjectType, Scene, SignatureCheck, SubjectId,
    SubjectOpener, TokenError, UncheckedOffline, UncheckedOnline, Validation, kind_of,
    read_offline, read_online,
};
use thiserror::Error;

use crate::counter::CounterMemory;
use crate::replay::{ReplayMemory, ReplayOutcome};

/// How a gate is set up.
#[derive(Debug, Clone, Copy)]
pub struct GateConfig {
    /// The scene this gate serves; a code must include it in its scopes.
    pub scene: Scene,
    /// Allowed clock difference, seconds.
    pub skew: u64,
    /// Most live codes remembered for single use.
    pub replay_capacity: usize,
    /// Most offline certificates whose counters are remembered.
    pub counter_capacity: usize,
    /// Oldest revocation snapshot (seconds since it was taken) the gate decides with;
    /// past it every code is refused until a newer snapshot is loaded.
    pub max_revocation_age: u64,
}

impl GateConfig {
    /// A gate for `scene` with 30 s skew, room for 100 000 live codes, and
    /// revocations at most 6 h old (a bus out of coverage for a shift still runs; an
    /// operator sets less where the gate is always online).
    pub fn new(scene: Scene) -> Self {
        GateConfig {
            scene,
            skew: 30,
            replay_capacity: 100_000,
            counter_capacity: 100_000,
            max_revocation_age: 6 * 3600,
        }
    }
}

/// What was accepted (no subject: a gate cannot unseal it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// An online token.
    Online {
        kid: Kid,
        cti: Cti,
        /// Issue time (what a key revocation is compared with).
        iat: u64,
        exp: u64,
        /// The sealed subject (`sub`): a gate cannot open it; the verifier can.
        sealed_sub: Vec<u8>,
    },
    /// An offline code and its certificate serial.
    Offline {
        issuer_kid: Kid,
        cti: Cti,
        serial: CertSerial,
        counter: u64,
        exp: u64,
        /// The certificate's issue time (what a key revocation is compared with).
        certificate_iat: u64,
        /// The certificate's expiry: how long its counter must be remembered.
        certificate_exp: u64,
        /// The certificate's sealed subject (`sub`).
        sealed_sub: Vec<u8>,
    },
}

/// Why a scan was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DenyReason {
    /// The code failed a format, key, signature or time rule.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The code does not include this gate's scene.
    #[error("scope does not include this scene")]
    ScopeNotAllowed,
    /// The code's `cti` is revoked.
    #[error("code revoked")]
    TokenRevoked,
    /// The offline code's device certificate is revoked (directly, or by its device
    /// or subject).
    #[error("device certificate revoked")]
    CertificateRevoked,
    /// The code's subject is revoked for codes issued when this one was (online only:
    /// a gate cannot unseal the subject, so it relies on the cascade to certificates).
    #[error("subject revoked")]
    SubjectRevoked,
    /// The signing key is revoked for codes issued when this one was.
    #[error("signing key revoked")]
    KeyRevoked,
    /// This code was already used.
    #[error("code already used")]
    Replayed,
    /// An offline code older than one already seen from the same certificate.
    #[error("offline counter not above the last one seen")]
    CounterReplay,
    /// The gate's single-use memory is full of live entries (fail closed).
    #[error("replay memory full")]
    MemoryFull,
    /// No revocation snapshot loaded, or the one loaded is older than
    /// `max_revocation_age` (fail closed).
    #[error("revocation data missing or too old")]
    RevocationsStale,
}

/// Why a snapshot was not loaded; the gate keeps the one it had.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotRefused {
    /// The bytes, the signature or the signing key are wrong.
    #[error(transparent)]
    Invalid(#[from] SnapshotError),
    /// Older than the snapshot in force: a lower epoch or an earlier creation time.
    #[error("snapshot (epoch {epoch}, taken at {created_at}) is older than the one in force")]
    Rollback {
        /// The refused snapshot's epoch.
        epoch: u64,
        /// When the refused snapshot was taken.
        created_at: u64,
    },
    /// Taken later than the gate's clock allows (beyond the skew).
    #[error("snapshot is dated in the future")]
    FromTheFuture,
}

impl DenyReason {
    /// Stable snake-case name (the token error's name for token failures).
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::Token(e) => e.code(),
            DenyReason::ScopeNotAllowed => "scope_not_allowed",
            DenyReason::TokenRevoked => "token_revoked",
            DenyReason::CertificateRevoked => "certificate_revoked",
            DenyReason::KeyRevoked => "key_revoked",
            DenyReason::SubjectRevoked => "subject_revoked",
            DenyReason::Replayed => "replayed",
            DenyReason::CounterReplay => "counter_replay",
            DenyReason::MemoryFull => "replay_memory_full",
            DenyReason::RevocationsStale => "revocations_stale",
        }
    }
}

/// The outcome of one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Presented),
    Deny(DenyReason),
}

/// The revocations in force and when their snapshot was taken.
#[derive(Debug)]
struct Revocations {
    set: RevocationSet,
    created_at: u64,
}

/// A gate: key set, scene, and the memories that make codes single-use.
#[derive(Debug)]
pub struct Gate {
    keys: KeySet,
    revocations: Option<Revocations>,
    config: GateConfig,
    replay: ReplayMemory,
    counters: CounterMemory,
}

impl Gate {
    /// A gate trusting `keys`. It refuses every code until [`Gate::load_snapshot`]
    /// succeeds.
    pub fn new(keys: KeySet, config: GateConfig) -> Self {
        Gate {
            keys,
            revocations: None,
            replay: ReplayMemory::new(config.replay_capacity),
            counters: CounterMemory::new(config.counter_capacity),
            config,
        }
    }

    /// Replaces the key set (after a refresh); memories are kept.
    pub fn set_keys(&mut self, keys: KeySet) {
        self.keys = keys;
    }

    /// Verifies `signed` with the gate's key set at `now` (a key published for
    /// snapshots only) and makes it the revocations in force, unless it is older than
    /// the snapshot in force (see the module documentation). Returns its epoch.
    pub fn load_snapshot(
        &mut self,
        signed: &SignedSnapshot,
        now: u64,
    ) -> Result<u64, SnapshotRefused> {
        let snapshot = signed.verify(&self.keys, now)?;
        if snapshot.created_at > now.saturating_add(self.config.skew) {
            return Err(SnapshotRefused::FromTheFuture);
        }
        if let Some(current) = &self.revocations
            && (snapshot.epoch < current.set.epoch() || snapshot.created_at < current.created_at)
        {
            return Err(SnapshotRefused::Rollback {
                epoch: snapshot.epoch,
                created_at: snapshot.created_at,
            });
        }
        self.revocations = Some(Revocations {
            set: RevocationSet::from_snapshot(&snapshot),
            created_at: snapshot.created_at,
        });
        Ok(snapshot.epoch)
    }

    /// The epoch of the revocations in force, if any are loaded.
    pub fn revocation_epoch(&self) -> Option<u64> {
        self.revocations.as_ref().map(|r| r.set.epoch())
    }

    /// The revocations to decide with at `now`, if loaded and young enough.
    fn revocations_at(&self, now: u64) -> Result<&RevocationSet, DenyReason> {
        match &self.revocations {
            Some(r) if now.saturating_sub(r.created_at) <= self.config.max_revocation_age => {
                Ok(&r.set)
            }
            _ => Err(DenyReason::RevocationsStale),
        }
    }

    /// Decides on a scanned `text` at `now` (Unix seconds).
    pub fn check(&mut self, text: &str, now: u64) -> Decision {
        match self.try_check(text, now) {
            Ok(p) => Decision::Allow(p),
            Err(reason) => Decision::Deny(reason),
        }
    }

    fn try_check(&mut self, text: &str, now: u64) -> Result<Presented, DenyReason> {
        let presented = check_code(text, &self.keys, self.config.scene, self.config.skew, now)?;
        check_revocation(&presented, self.revocations_at(now)?)?;
        match self
            .replay
            .record(presented.cti(), presented.forget_at(self.config.skew), now)
        {
            ReplayOutcome::First => {}
            ReplayOutcome::Replayed => return Err(DenyReason::Replayed),
            ReplayOutcome::Full => return Err(DenyReason::MemoryFull),
        }
        if let Presented::Offline {
            serial,
            counter,
            certificate_exp,
            ..
        } = &presented
        {
            let forget_at = certificate_exp.saturating_add(self.config.skew);
            match self.counters.advance(*serial, *counter, forget_at, now) {
                Some(true) => {}
                Some(false) => return Err(DenyReason::CounterReplay),
                None => return Err(DenyReason::MemoryFull),
            }
        }
        Ok(presented)
    }
}

/// Steps one to four of the decision, shared by this gate and the online verifier
/// service: the code itself (size cap and prefix, decoding, `kid`, pinned `alg`,
/// signature, then times with `skew` seconds of allowance: all in `citypass-token`),
/// then the scope (`scene` must be among the code's scopes). Pure: no state, no I/O.
///
/// It is [`read_code`] then [`ReadCode::finish`]; a verifier holding several codes
/// reads them all, decides their Ed25519 signatures as one batch
/// ([`ReadCode::signature_mut`]), and finishes each: the same steps, in the same order.
pub fn check_code(
    text: &str,
    keys: &KeySet,
    scene: Scene,
    skew: u64,
    now: u64,
) -> Result<Presented, DenyReason> {
    read_code(text, keys, skew, now)?.finish(scene)
}

/// A code read up to its Ed25519 signature (the issuer's: the online code's own, the
/// offline code's certificate's): nothing in it is believed yet.
#[derive(Debug)]
pub struct ReadCode {
    code: Unchecked,
    validation: Validation,
}

#[derive(Debug)]
enum Unchecked {
    Online(UncheckedOnline),
    // Boxed: its envelope, claims and certificate are several times an online code's.
    Offline(Box<UncheckedOffline>),
}

/// The first half of [`check_code`]: size cap and prefix, decoding, `kid`, pinned
/// `alg`, with the time rules of `now` and `skew` kept for the second half.
pub fn read_code(text: &str, keys: &KeySet, skew: u64, now: u64) -> Result<ReadCode, DenyReason> {
    let validation = Validation::at(now).with_skew(skew);
    let code = match kind_of(text)? {
        CodeKind::Online => Unchecked::Online(read_online(text, keys, &validation)?),
        CodeKind::Offline => Unchecked::Offline(Box::new(read_offline(text, keys, &validation)?)),
    };
    Ok(ReadCode { code, validation })
}

impl ReadCode {
    /// The issuer's Ed25519 signature, for a batch (`citypass_token::check_batch`); left
    /// alone, [`Self::finish`] checks it by itself.
    pub fn signature_mut(&mut self) -> &mut SignatureCheck {
        match &mut self.code {
            Unchecked::Online(code) => code.signature_mut(),
            Unchecked::Offline(code) => code.signature_mut(),
        }
    }

    /// The second half of [`check_code`]: the signatures, the times, then the scope.
    pub fn finish(self, scene: Scene) -> Result<Presented, DenyReason> {
        let v = self.validation;
        match self.code {
            Unchecked::Online(code) => {
                let t = code.finish(&v)?;
                if !t.claims.scopes.contains(scene) {
                    return Err(DenyReason::ScopeNotAllowed);
                }
                Ok(Presented::Online {
                    kid: t.kid,
                    cti: t.claims.cti,
                    iat: t.claims.iat,
                    exp: t.claims.exp,
                    sealed_sub: t.claims.sealed_sub,
                })
            }
            Unchecked::Offline(code) => {
                let o = (*code).finish(&v)?;
                if !o.certificate.scopes.contains(scene) {
                    return Err(DenyReason::ScopeNotAllowed);
                }
                Ok(Presented::Offline {
                    issuer_kid: o.issuer_kid,
                    cti: o.cti,
                    serial: o.certificate.serial,
                    counter: o.counter,
                    exp: o.exp,
                    certificate_iat: o.certificate.iat,
                    certificate_exp: o.certificate.exp,
                    sealed_sub: o.certificate.sealed_sub,
                })
            }
        }
    }
}

/// Step five, shared likewise: whether `set` refuses what was presented (codes by
/// `cti`, certificates by serial, keys by `kid` and issue time). Whoever calls it
/// decides first whether `set` is fresh enough to decide with.
pub fn check_revocation(presented: &Presented, set: &RevocationSet) -> Result<(), DenyReason> {
    match presented {
        Presented::Online { kid, cti, iat, .. } => {
            if set.token_revoked(cti) {
                return Err(DenyReason::TokenRevoked);
            }
            if set.key_revoked(kid, *iat) {
                return Err(DenyReason::KeyRevoked);
            }
        }
        Presented::Offline {
            issuer_kid,
            cti,
            serial,
            certificate_iat,
            ..
        } => {
            if set.certificate_revoked(serial) {
                return Err(DenyReason::CertificateRevoked);
            }
            if set.token_revoked(cti) {
                return Err(DenyReason::TokenRevoked);
            }
            if set.key_revoked(issuer_kid, *certificate_iat) {
                return Err(DenyReason::KeyRevoked);
            }
        }
    }
    Ok(())
}

/// The subject-revocation step of the online verifier, after it unsealed `subject`
/// from what was presented: a `Target::Subject` revocation dated after the code's issue
/// time (CP1: `iat`; CP2: its certificate's) refuses it with
/// [`DenyReason::SubjectRevoked`].
pub fn check_subject_revocation(
    presented: &Presented,
    subject: &SubjectId,
    set: &RevocationSet,
) -> Result<(), DenyReason> {
    if set.subject_revoked(subject, presented.issued_at()) {
        return Err(DenyReason::SubjectRevoked);
    }
    Ok(())
}

impl Presented {
    /// The subject sealed in the code (CP1: its `sub`; CP2: its certificate's), opened
    /// with `keys`: an unknown key id, another layout version or bytes that do not
    /// open are errors ([`TokenError::UnknownSubjectKey`],
    /// [`TokenError::UnsupportedSealVersion`], [`TokenError::Unseal`]).
    pub fn open_subject<K: SubjectOpener + ?Sized>(
        &self,
        keys: &K,
    ) -> Result<SubjectId, TokenError> {
        let opened = match self {
            Presented::Online {
                cti, sealed_sub, ..
            } => keys.open_subject(sealed_sub, cti.as_bytes(), ObjectType::Online.typ())?,
            Presented::Offline {
                serial, sealed_sub, ..
            } => keys.open_subject(sealed_sub, serial.as_bytes(), ObjectType::Certificate.typ())?,
        };
        SubjectId::from_slice(&opened).map_err(|_| TokenError::Unseal)
    }

    /// When the code was issued, as revocations compare it: the online code's `iat`,
    /// the offline code's certificate's.
    pub fn issued_at(&self) -> u64 {
        match self {
            Presented::Online { iat, .. } => *iat,
            Presented::Offline {
                certificate_iat, ..
            } => *certificate_iat,
        }
    }

    /// The code's `cti`.
    pub fn cti(&self) -> Cti {
        match self {
            Presented::Online { cti, .. } | Presented::Offline { cti, .. } => *cti,
        }
    }

    /// The code's expiry.
    pub fn exp(&self) -> u64 {
        match self {
            Presented::Online { exp, .. } | Presented::Offline { exp, .. } => *exp,
        }
    }

    /// When a single-use mark of this code may be forgotten: after its expiry plus
    /// the skew, it fails on time anyway.
    pub fn forget_at(&self, skew: u64) -> u64 {
        self.exp().saturating_add(skew)
    }

    /// Which kind of code it is.
    pub fn kind(&self) -> CodeKind {
        match self {
            Presented::Online { .. } => CodeKind::Online,
            Presented::Offline { .. } => CodeKind::Offline,
        }
    }
}
