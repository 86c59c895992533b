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
