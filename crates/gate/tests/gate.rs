//! The offline gate's decisions on real codes.

use citypass_gate::*;
use citypass_revocation::{Kinds, RevocationSet, SignedSnapshot, SnapshotError};
use citypass_token::*;

const NOW: u64 = 1_800_000_000;
const SUBJECT: [u8; 16] = [9; 16];
/// The issuer's code-signing key.
const CODE_SEED: [u8; 32] = [1; 32];
/// The revocation service's snapshot-signing key.
const SNAPSHOT_SEED: [u8; 32] = [3; 32];

fn issuer() -> Issuer {
    Issuer::new(
        "cp",
        IssuerKey::from_seed(&CODE_SEED).unwrap(),
        SubjectKey::from_bytes(&[2; 32]).unwrap(),
    )
}

fn snapshot_key() -> SnapshotKey {
    SnapshotKey::from_seed(&SNAPSHOT_SEED, true).unwrap()
}

/// What the issuer publishes: its code key, and the snapshot key with its own usage.
fn keys() -> KeySet {
    KeySet::new(vec![
        PublishedKey {
            key: issuer().key().public_key().clone(),
            status: KeyStatus::Active,
            usage: KeyUsage::Code,
        },
        PublishedKey {
            key: snapshot_key().public_key().clone(),
            status: KeyStatus::Active,
            usage: KeyUsage::Snapshot,
        },
    ])
    .unwrap()
}

/// A snapshot of `live` taken at `at`, signed as the revocation service signs it.
fn snapshot_of(live: &RevocationSet, at: u64) -> SignedSnapshot {
    live.snapshot(Kinds::ALL, at).sign(&snapshot_key())
}

/// A gate with `config`, holding a snapshot of nothing revoked, taken at `NOW`.
fn gate_configured(config: GateConfig) -> Gate {
    let mut g = Gate::new(keys(), config);
    g.load_snapshot(&snapshot_of(&RevocationSet::new(), NOW), NOW)
        .unwrap();
    g
}

fn gate(scene: Scene) -> Gate {
    gate_configured(GateConfig::new(scene))
}

fn deny(d: Decision) -> DenyReason {
    match d {
        Decision::Deny(r) => r,
        Decision::Allow(p) => panic!("expected a denial, got {p:?}"),
    }
}

#[test]
fn online_code_is_single_use() {
    let mut g = gate(Scene::Metro);
    let code = issuer()
        .issue_token(&SUBJECT, Scopes::all(), NOW, 60)
        .unwrap();
    assert!(matches!(
        g.check(&code.text, NOW),
        Decision::Allow(Presented::Online { .. })
    ));
    assert_eq!(deny(g.check(&code.text, NOW + 1)), DenyReason::Replayed);
}

#[test]
fn scope_is_checked_before_the_code_is_burned() {
    let mut metro = gate(Scene::Metro);
    let code = issuer()
        .issue_token(&SUBJECT, Scopes::NONE.with(Scene::Hospital), NOW, 60)
        .unwrap();
    assert_eq!(
        deny(metro.check(&code.text, NOW)),
        DenyReason::ScopeNotAllowed
    );
    let mut hospital = gate(Scene::Hospital);
    assert!(matches!(
        hospital.check(&code.text, NOW),
        Decision::Allow(_)
    ));
}

#[test]
fn token_failures_pass_through_with_their_reason() {
    let mut g = gate(Scene::Metro);
    let code = issuer()
        .issue_token(&SUBJECT, Scopes::all(), NOW, 60)
        .unwrap();
    assert_eq!(
        deny(g.check(&code.text, NOW + 200)),
        DenyReason::Token(TokenError::Expired)
    );
    assert_eq!(deny(g.check("hello", NOW)).code(), "bad_prefix");
}

#[test]
fn offline_counters_only_go_up() {
    let rng = SystemRandom::new();
    let key = DeviceKey::generate(&rng).unwrap();
    let cert = issuer()
        .certify(&SUBJECT, key.public_key(), Scopes::all(), NOW, 3600)
        .unwrap();
    let signer = OfflineSigner::new(key, cert.bytes).unwrap();
    let older = signer.make_code(NOW, 60, 1, &rng).unwrap();
    let newer = signer.make_code(NOW, 60, 2, &rng).unwrap();
    let mut g = gate(Scene::Scenic);
    assert!(matches!(
        g.check(&newer, NOW),
        Decision::Allow(Presented::Offline { counter: 2, .. })
    ));
    assert_eq!(deny(g.check(&older, NOW)), DenyReason::CounterReplay);
    assert_eq!(deny(g.check(&newer, NOW)), DenyReason::Replayed);
}

#[test]
fn a_full_replay_memory_fails_closed() {
    let mut g = gate_configured(GateConfig {
        replay_capacity: 1,
        ..GateConfig::new(Scene::Bus)
    });
    let a = issuer()
        .issue_token(&SUBJECT, Scopes::all(), NOW, 60)
        .unwrap();
    let b = issuer()
        .issue_token(&SUBJECT, Scopes::all(), NOW + 60, 60)
        .unwrap();
    assert!(matches!(g.check(&a.text, NOW + 60), Decision::Allow(_)));
    assert_eq!(deny(g.check(&b.text, NOW + 60)), DenyReason::MemoryFull);
    // Once the first code's memory may lapse (exp + skew), the second gets through.
    assert!(matches!(g.check(&b.text, NOW + 91), Decision::Allow(_)));
}

mod revocations {
    use super::*;
    use citypass_revocation::{Action, Entry, Target};

    fn revoke(epoch: u64, target: Target) -> Entry {
        Entry {
            epoch,
            target,
            action: Action::Revoke {
                compromised: false,
                revoked_before: NOW + 1,
            },
            expires_at: None,
            created_at: NOW,
        }
    }

    /// The gate loads revocations the way an offline gate does: a signed snapshot,
    /// verified with the issuer's key set, then turned into a set.
    fn gate_with(entries: Vec<Entry>) -> Gate {
        let mut live = RevocationSet::new();
        live.apply_all(entries).unwrap();
        let mut g = gate(Scene::Metro);
        g.load_snapshot(&snapshot_of(&live, NOW), NOW).unwrap();
        assert_eq!(g.revocation_epoch(), Some(live.epoch()));
        g
    }

    #[test]
    fn a_revoked_code_certificate_or_key_is_refused() {
        let rng = SystemRandom::new();
        let revoked_code = issuer()
            .issue_token(&SUBJECT, Scopes::all(), NOW, 60)
            .unwrap();
        let other_code = issuer()
            .issue_token(&SUBJECT, Scopes::all(), NOW, 60)
            .unwrap();
        let key = DeviceKey::generate(&rng).unwrap();
        let cert = issuer()
            .certify(&SUBJECT, key.public_key(), Scopes::all(), NOW, 3600)
            .unwrap();
        let signer = OfflineSigner::new(key, cert.bytes).unwrap();
        let offline = signer.make_code(NOW, 60, 1, &rng).unwrap();

        let mut g = gate_with(vec![
            revoke(1, Target::Token(revoked_code.cti)),
            revoke(2, Target::Certificate(cert.serial)),
        ]);
        assert_eq!(
            deny(g.check(&revoked_code.text, NOW)),
            DenyReason::TokenRevoked
        );
        assert_eq!(deny(g.check(&offline, NOW)), DenyReason::CertificateRevoked);
        assert!(matches!(g.check(&other_code.text, NOW), Decision::Allow(_)));

        // A key revocation kills what it signed before `revoked_before`.
        let mut g = gate_with(vec![revoke(1, Target::Key(issuer().key().kid()))]);
        assert_eq!(deny(g.check(&other_code.text, NOW)), DenyReason::KeyRevoked);
    }

    /// Security finding 2: the holder of a stolen signing key chooses `iat`, so a key
    /// revoked as compromised refuses every code and certificate it signed, whatever
    /// they claim; an orderly withdrawal (`revoked_before`) still lets later ones in.
    #[test]
    fn finding_2_a_compromised_key_refuses_codes_whatever_their_iat() {
        let rng = SystemRandom::new();
        let later = NOW + 3600;
        // The thief stamps codes after `revoked_before` (and after the revocation).
        let forged = issuer()
            .issue_token(&SUBJECT, Scopes::all(), later, 60)
            .unwrap();
        let key = DeviceKey::generate(&rng).unwrap();
        let cert = issuer()
            .certify(&SUBJECT, key.public_key(), Scopes::all(), later, 3600)
            .unwrap();
        let offline = OfflineSigner::new(key, cert.bytes)
            .unwrap()
            .make_code(later, 60, 1, &rng)
            .unwrap();
        let kid = issuer().key().kid();

        let mut compromised = revoke(1, Target::Key(kid));
        compromised.action = Action::Revoke {
            compromised: true,
            revoked_before: NOW + 1,
        };
        let mut g = gate_with(vec![compromised]);
        assert_eq!(deny(g.check(&forged.text, later)), DenyReason::KeyRevoked);
        assert_eq!(deny(g.check(&offline, later)), DenyReason::KeyRevoked);

        let mut g = gate_with(vec![revoke(1, Target::Key(kid))]);
        assert!(matches!(g.check(&forged.text, later), Decision::Allow(_)));
        assert!(matches!(g.check(&offline, later), Decision::Allow(_)));
    }
}

/// Security finding 7: an offline gate started with no revocations, and accepted any
/// snapshot. Now it refuses every code until it holds a snapshot younger than
/// `max_revocation_age`, and again once that snapshot has aged past it.
#[test]
fn finding_7_a_gate_without_fresh_revocations_refuses_codes() {
    let rng = SystemRandom::new();
    let code = issuer()
        .issue_token(&SUBJECT, Scopes::all(), NOW, 60)
        .unwrap();
    let key = DeviceKey::generate(&rng).unwrap();
    let cert = issuer()
        .certify(&SUBJECT, key.public_key(), Scopes::all(), NOW, 86_400)
        .unwrap();
    let signer = OfflineSigner::new(key, cert.bytes).unwrap();

    let config = GateConfig::new(Scene::Metro);
    let mut g = Gate::new(keys(), config);
    assert_eq!(g.revocation_epoch(), None);
    assert_eq!(deny(g.check(&code.text, NOW)), DenyReason::RevocationsStale);
    let offline = signer.make_code(NOW, 60, 1, &rng).unwrap();
    assert_eq!(deny(g.check(&offline, NOW)), DenyReason::RevocationsStale);

    g.load_snapshot(&snapshot_of(&RevocationSet::new(), NOW), NOW)
        .unwrap();
    assert!(matches!(g.check(&offline, NOW), Decision::Allow(_)));

    // The same snapshot, past the gate's limit: fail closed, not open.
    let late = NOW + config.max_revocation_age + 1;
    let offline = signer.make_code(late, 60, 2, &rng).unwrap();
    assert_eq!(deny(g.check(&offline, late)), DenyReason::RevocationsStale);
    g.load_snapshot(&snapshot_of(&RevocationSet::new(), late), late)
        .unwrap();
    assert!(matches!(g.check(&offline, late), Decision::Allow(_)));
}

/// Security finding 7: a snapshot older than the one in force (a lower epoch, or the
/// same epoch taken earlier) is refused, so replaying an old snapshot to a gate cannot
/// bring a revoked certificate back; nor is a snapshot from the future accepted.
#[test]
fn finding_7_a_rolled_back_snapshot_is_refused() {
    use citypass_revocation::{Action, Entry, Target};
    let rng = SystemRandom::new();
    let key = DeviceKey::generate(&rng).unwrap();
    let cert = issuer()
        .certify(&SUBJECT, key.public_key(), Scopes::all(), NOW, 86_400)
        .unwrap();
    let signer = OfflineSigner::new(key, cert.bytes).unwrap();

    let mut before = RevocationSet::new();
    before
        .apply_all(vec![Entry {
            epoch: 1,
            target: Target::Token(Cti::from_bytes([7; 16])),
            action: Action::Revoke {
                compromised: false,
                revoked_before: NOW,
            },
            expires_at: None,
            created_at: NOW,
        }])
        .unwrap();
    let mut after = before.clone();
    after
        .apply_all(vec![Entry {
            epoch: 2,
            target: Target::Certificate(cert.serial),
            action: Action::Revoke {
                compromised: true,
                revoked_before: NOW,
            },
            expires_at: None,
            created_at: NOW + 10,
        }])
        .unwrap();
    let old = snapshot_of(&before, NOW);
    let new = snapshot_of(&after, NOW + 10);

    let mut g = Gate::new(keys(), GateConfig::new(Scene::Metro));
    assert_eq!(g.load_snapshot(&old, NOW + 10), Ok(1));
    assert_eq!(g.load_snapshot(&new, NOW + 10), Ok(2));
    let offline = signer.make_code(NOW + 20, 60, 1, &rng).unwrap();
    assert_eq!(
        deny(g.check(&offline, NOW + 20)),
        DenyReason::CertificateRevoked
    );

    assert_eq!(
        g.load_snapshot(&old, NOW + 20),
        Err(SnapshotRefused::Rollback {
            epoch: 1,
            created_at: NOW
        })
    );
    // The same epoch, taken earlier than the one in force.
    assert!(matches!(
        g.load_snapshot(&snapshot_of(&after, NOW + 5), NOW + 20),
        Err(SnapshotRefused::Rollback { epoch: 2, .. })
    ));
    assert_eq!(
        g.load_snapshot(&snapshot_of(&after, NOW + 3600), NOW + 20),
        Err(SnapshotRefused::FromTheFuture)
    );
    assert_eq!(g.revocation_epoch(), Some(2));
    let offline = signer.make_code(NOW + 30, 60, 2, &rng).unwrap();
    assert_eq!(
        deny(g.check(&offline, NOW + 30)),
        DenyReason::CertificateRevoked
    );
    // A newer snapshot of the same epoch is taken (a refresh with nothing new).
    assert_eq!(
        g.load_snapshot(&snapshot_of(&after, NOW + 40), NOW + 40),
        Ok(2)
    );
}

/// Security finding 4: the revocation service held the issuer's whole key ring to sign
/// snapshots with the code-signing key, and gates took a snapshot from any key they
/// trusted. Now a snapshot must come from a key published for snapshots: one signed
/// with a code key (what a revocation service holding the ring would sign) is refused,
/// and the gate keeps failing closed.
#[test]
fn finding_4_a_snapshot_signed_with_a_code_key_is_refused() {
    let code_key = SnapshotKey::from_seed(&CODE_SEED, true).unwrap();
    let forged = RevocationSet::new()
        .snapshot(Kinds::ALL, NOW)
        .sign(&code_key);
    assert_eq!(forged.kid, issuer().key().kid(), "signed by the code key");

    let mut g = Gate::new(keys(), GateConfig::new(Scene::Metro));
    assert_eq!(
        g.load_snapshot(&forged, NOW),
        Err(SnapshotRefused::Invalid(SnapshotError::Key(
            TokenError::WrongKeyUsage
        )))
    );
    assert_eq!(g.revocation_epoch(), None, "nothing was loaded");
    let code = issuer()
        .issue_token(&SUBJECT, Scopes::all(), NOW, 60)
        .unwrap();
    assert_eq!(deny(g.check(&code.text, NOW)), DenyReason::RevocationsStale);

    // The snapshot key's own snapshot loads.
    assert_eq!(
        g.load_snapshot(&snapshot_of(&RevocationSet::new(), NOW), NOW),
        Ok(0)
    );
    assert!(matches!(g.check(&code.text, NOW), Decision::Allow(_)));
}

/// Security finding 4, the other way round: whoever holds the snapshot key (the
/// revocation service) cannot mint codes or device certificates with it.
#[test]
fn finding_4_a_code_signed_with_the_snapshot_key_is_refused() {
    let rng = SystemRandom::new();
    let forger = Issuer::new(
        "cp",
        IssuerKey::from_seed(&SNAPSHOT_SEED).unwrap(),
        SubjectKey::from_bytes(&[2; 32]).unwrap(),
    );
    let mut g = gate(Scene::Metro);

    let code = forger
        .issue_token(&SUBJECT, Scopes::all(), NOW, 60)
        .unwrap();
    assert_eq!(
        deny(g.check(&code.text, NOW)),
        DenyReason::Token(TokenError::WrongKeyUsage)
    );

    let key = DeviceKey::generate(&rng).unwrap();
    let cert = forger
        .certify(&SUBJECT, key.public_key(), Scopes::all(), NOW, 86_400)
        .unwrap();
    let offline = OfflineSigner::new(key, cert.bytes)
        .unwrap()
        .make_code(NOW, 60, 1, &rng)
        .unwrap();
    assert_eq!(
        deny(g.check(&offline, NOW)),
        DenyReason::Token(TokenError::CertificateInvalid(Box::new(
            TokenError::WrongKeyUsage
        )))
    );

    // The code key's codes still pass.
    let code = issuer()
        .issue_token(&SUBJECT, Scopes::all(), NOW, 60)
        .unwrap();
    assert!(matches!(g.check(&code.text, NOW), Decision::Allow(_)));
}
