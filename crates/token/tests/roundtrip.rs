//! Codes made by the issuer and the phone verify, open and inspect as made.

mod common;
use citypass_token::*;
use common::*;

#[test]
fn online_token_round_trips_and_opens_the_subject() {
    let issued = cp1();
    let verified = verify_online(&issued.text, &keyset(), &Validation::at(NOW)).unwrap();
    assert_eq!(verified.kid, issuer_key().kid());
    assert_eq!(verified.claims.cti, issued.cti);
    assert_eq!(verified.claims.exp, NOW + 60);
    assert_eq!(verified.claims.scopes, Scopes::all());
    assert_eq!(verified.claims.iss, "cp");
    assert_eq!(verified.subject(&subject_key()).unwrap(), SUBJECT);
}

/// Besides `iss` (and the signing `kid`), two codes share only the sealed subject's
/// two-byte header: its layout version and the subject key's id, the same in every code
/// sealed while that key seals.
#[test]
fn two_codes_for_one_subject_share_only_iss() {
    let (a, b) = (cp1(), cp1());
    let keys = keyset();
    let va = verify_online(&a.text, &keys, &Validation::at(NOW)).unwrap();
    let vb = verify_online(&b.text, &keys, &Validation::at(NOW)).unwrap();
    assert_ne!(va.claims.cti, vb.claims.cti);
    assert_ne!(va.claims.sealed_sub, vb.claims.sealed_sub);
    assert_eq!(va.claims.iss, vb.claims.iss);
    let (header_a, body_a) = va.claims.sealed_sub.split_at(2);
    let (header_b, body_b) = vb.claims.sealed_sub.split_at(2);
    assert_eq!(header_a, [SEAL_VERSION, subject_key().id()]);
    assert_eq!(header_a, header_b);
    // No 4-byte window of one sealed subject's ciphertext appears in the other.
    for w in body_a.windows(4) {
        assert!(!body_b.windows(4).any(|x| x == w));
    }
}

#[test]
fn offline_code_round_trips_through_its_certificate() {
    let signer = offline_signer();
    let code = signer
        .make_code(NOW + 10, 60, 7, &SystemRandom::new())
        .unwrap();
    let v = verify_offline(&code, &keyset(), &Validation::at(NOW + 20)).unwrap();
    assert_eq!(v.counter, 7);
    assert_eq!(v.iat, NOW + 10);
    assert_eq!(v.certificate.serial, signer.certificate().serial);
    assert_eq!(v.issuer_kid, issuer_key().kid());
    assert_eq!(v.subject(&subject_key()).unwrap(), SUBJECT);
}

#[test]
fn offline_code_expiry_is_cut_at_the_certificate() {
    let signer = offline_signer();
    let end = signer.certificate().exp;
    let code = signer
        .make_code(end - 10, 60, 1, &SystemRandom::new())
        .unwrap();
    let v = verify_offline(&code, &keyset(), &Validation::at(end - 5)).unwrap();
    assert_eq!(v.exp, end);
}

#[test]
fn certificate_verifies_on_its_own() {
    let rng = SystemRandom::new();
    let key = DeviceKey::generate(&rng).unwrap();
    let cert = issuer()
        .certify(
            &SUBJECT,
            key.public_key(),
            Scopes::NONE.with(Scene::Metro),
            NOW,
            3600,
        )
        .unwrap();
    let v = verify_certificate(&cert.bytes, &keyset(), &Validation::at(NOW)).unwrap();
    assert_eq!(&v.claims.offline_key, key.public_key());
    assert_eq!(v.claims.serial, cert.serial);
    assert!(v.claims.scopes.contains(Scene::Metro));
    assert!(!v.claims.scopes.contains(Scene::Hospital));
}

#[test]
fn qr_versions_stay_within_budget() {
    let one = inspect(&cp1().text).unwrap();
    assert_eq!(one.kind, CodeKind::Online);
    assert!(one.qr_version <= 9, "CP1 at version {}", one.qr_version);
    let two = inspect(&cp2()).unwrap();
    assert_eq!(two.kind, CodeKind::Offline);
    assert!(two.qr_version <= 15, "CP2 at version {}", two.qr_version);
    println!(
        "CP1: {} chars, {} COSE bytes, QR v{}; CP2: {} chars, {} COSE bytes, QR v{}",
        one.text_len, one.cose_len, one.qr_version, two.text_len, two.cose_len, two.qr_version
    );
}

#[test]
fn inspection_reports_headers_without_unsealing() {
    let issued = cp1();
    let i = inspect(&issued.text).unwrap();
    assert_eq!(i.alg, Some(Algorithm::EdDsa.cose_id()));
    assert_eq!(i.kid, Some(issuer_key().kid()));
    assert_eq!(i.typ.as_deref(), Some("cp1"));
    assert_eq!((i.iat, i.exp), (NOW, NOW + 60));
    let two = inspect(&cp2()).unwrap();
    assert_eq!(two.alg, Some(Algorithm::Es256.cose_id()));
    assert_eq!(two.counter, Some(1));
    assert_eq!(two.certificate.unwrap().kid, Some(issuer_key().kid()));
}

#[test]
fn renderings_are_well_formed() {
    let qr = Qr::encode(&cp1().text).unwrap();
    let svg = qr.to_svg(256);
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"));
    let png = qr.to_png(4).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let term = qr.to_terminal();
    // Two module rows per line, plus the quiet zone.
    assert_eq!(term.lines().count(), (qr.width() + 8).div_ceil(2));
}

#[test]
fn retired_key_verifies_until_valid_until_then_not() {
    let issued = cp1();
    let keys = KeySet::new(vec![PublishedKey {
        key: issuer_key().public_key().clone(),
        status: KeyStatus::Retired {
            valid_until: NOW + 30,
        },
        usage: KeyUsage::Code,
    }])
    .unwrap();
    assert!(verify_online(&issued.text, &keys, &Validation::at(NOW + 30)).is_ok());
    assert_eq!(
        verify_online(&issued.text, &keys, &Validation::at(NOW + 31)).unwrap_err(),
        TokenError::KeyExpired
    );
}
