//! The offline gate's decisions on real codes.

use citypass_gate::*;
use citypass_token::*;

const NOW: u64 = 1_800_000_000;
const SUBJECT: [u8; 16] = [9; 16];

fn issuer() -> Issuer {
    Issuer::new(
        "cp",
        IssuerKey::from_seed(&[1; 32]).unwrap(),
        SubjectKey::from_bytes(&[2; 32]).unwrap(),
    )
}

fn gate(scene: Scene) -> Gate {
    let keys = KeySet::new(vec![PublishedKey {
        key: issuer().key().public_key().clone(),
        status: KeyStatus::Active,
    }])
    .unwrap();
    Gate::new(keys, GateConfig::new(scene))
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
    let keys = KeySet::new(vec![PublishedKey {
        key: issuer().key().public_key().clone(),
        status: KeyStatus::Active,
    }])
    .unwrap();
    let mut g = Gate::new(
        keys,
        GateConfig {
            replay_capacity: 1,
            ..GateConfig::new(Scene::Bus)
        },
    );
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
    use citypass_revocation::{Action, Entry, Kinds, RevocationReason, RevocationSet, Target};

    fn revoke(epoch: u64, target: Target) -> Entry {
        Entry {
            epoch,
            target,
            action: Action::Revoke {
                reason: RevocationReason::Administrative,
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
        let signed = live.snapshot(Kinds::ALL, NOW).sign(issuer().key());
        let keys = KeySet::new(vec![PublishedKey {
            key: issuer().key().public_key().clone(),
            status: KeyStatus::Active,
        }])
        .unwrap();
        let snapshot = signed.verify(&keys, NOW).unwrap();
        let mut g = gate(Scene::Metro);
        g.set_revocations(RevocationSet::from_snapshot(&snapshot));
        assert_eq!(g.revocation_epoch(), live.epoch());
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
}
