//! The negative corpus: every hostile or broken input is refused with its own error.
//!
//! Hostile envelopes are built by taking a genuine code apart, changing one thing and
//! signing again with the genuine key, so each case fails for exactly one reason.

mod common;
use citypass_token::*;
use common::*;
use coset::{CoseSign1, Label, TaggedCborSerializable, iana};

fn decode(text: &str) -> Vec<u8> {
    base45::decode(&text[4..]).unwrap()
}

fn cp1_text(bytes: &[u8]) -> String {
    format!("CP1:{}", base45::encode(bytes))
}

/// Parses a genuine CP1, lets `edit` change it, re-signs with the issuer key.
fn tampered(edit: impl FnOnce(&mut CoseSign1)) -> String {
    let mut sign1 = CoseSign1::from_tagged_slice(&decode(&cp1().text)).unwrap();
    sign1.protected.original_data = None;
    edit(&mut sign1);
    let tbs = sign1.tbs_data(&[]);
    sign1.signature = issuer_key().sign(&tbs);
    cp1_text(&sign1.to_tagged_vec().unwrap())
}

fn online(text: &str) -> TokenError {
    verify_online(text, &keyset(), &Validation::at(NOW)).unwrap_err()
}

fn typ(v: &str) -> (Label, ciborium::Value) {
    (Label::Int(16), ciborium::Value::Text(v.into()))
}

/// Claims of a genuine token, re-encoded after `edit` (as (label, value) pairs).
fn with_claims(edit: impl FnOnce(&mut Vec<(ciborium::Value, ciborium::Value)>)) -> String {
    tampered(|s| {
        let mut claims: ciborium::Value =
            ciborium::from_reader(s.payload.as_deref().unwrap()).unwrap();
        let ciborium::Value::Map(entries) = &mut claims else {
            panic!("claims are a map")
        };
        edit(entries);
        let mut out = Vec::new();
        ciborium::into_writer(&claims, &mut out).unwrap();
        s.payload = Some(out);
    })
}

#[test]
fn corpus_each_case_has_its_own_error() {
    let genuine = cp1();
    let bytes = decode(&genuine.text);
    let cert_rng = SystemRandom::new();
    let device = DeviceKey::generate(&cert_rng).unwrap();
    let cert = issuer()
        .certify(&SUBJECT, device.public_key(), Scopes::all(), NOW, 3600)
        .unwrap();
    let other_issuer = Issuer::new(
        "cp",
        IssuerKey::from_seed(&[0x33; 32]).unwrap(),
        subject_key(),
    );

    let cases: Vec<(&str, String, TokenError)> = vec![
        (
            "alg none (no alg at all)",
            tampered(|s| s.protected.header.alg = None),
            TokenError::MissingAlg,
        ),
        (
            "alg \"none\" as text",
            tampered(|s| {
                s.protected.header.alg =
                    Some(coset::RegisteredLabelWithPrivate::Text("none".into()))
            }),
            TokenError::UnsupportedAlg,
        ),
        (
            "alg only in the unprotected header",
            tampered(|s| {
                s.unprotected.alg = s.protected.header.alg.take();
            }),
            TokenError::AlgInUnprotected,
        ),
        (
            "kid in the unprotected header",
            tampered(|s| s.unprotected.key_id = vec![1; 8]),
            TokenError::UnprotectedHeaderNotEmpty,
        ),
        (
            "alg different from the key's",
            tampered(|s| {
                s.protected.header.alg = Some(iana::Algorithm::ES256.into());
            }),
            TokenError::AlgMismatch,
        ),
        (
            "unknown kid",
            other_issuer
                .issue_token(&SUBJECT, Scopes::all(), NOW, 60)
                .unwrap()
                .text,
            TokenError::UnknownKid,
        ),
        (
            "kid of the wrong length",
            tampered(|s| s.protected.header.key_id = vec![1; 4]),
            TokenError::BadKid,
        ),
        (
            "wrong typ: a device certificate shown as a code",
            cp1_text(&cert.bytes),
            TokenError::WrongTyp,
        ),
        (
            "missing typ",
            tampered(|s| s.protected.header.rest.clear()),
            TokenError::MissingTyp,
        ),
        (
            "unknown critical header",
            tampered(|s| {
                s.protected.header.crit =
                    vec![coset::RegisteredLabelWithPrivate::PrivateUse(-70_000)];
                s.protected.header.rest = vec![typ("cp1"), (Label::Int(-70_000), 1.into())];
            }),
            TokenError::UnknownCriticalHeader,
        ),
        (
            "truncated",
            cp1_text(&bytes[..bytes.len() - 10]),
            TokenError::Truncated,
        ),
        (
            "trailing bytes",
            cp1_text(&[bytes.as_slice(), &[0x00]].concat()),
            TokenError::TrailingBytes,
        ),
        (
            "nesting bomb",
            cp1_text(&[0x81; 700]),
            TokenError::TooDeep { max: 6 },
        ),
        (
            "indefinite-length array",
            cp1_text(&[0xd2, 0x9f, 0x40, 0xa0, 0x40, 0x40, 0xff]),
            TokenError::IndefiniteLength,
        ),
        (
            "untagged COSE_Sign1",
            cp1_text(&bytes[1..]),
            TokenError::NotCoseSign1,
        ),
        (
            "four items of the wrong types",
            cp1_text(&[0xd2, 0x84, 0x01, 0x02, 0x03, 0x04]),
            TokenError::Malformed,
        ),
        (
            "1 MB input",
            "CP1:".to_owned() + &"A".repeat(1 << 20),
            TokenError::TooLarge {
                len: (1 << 20) + 4,
                max: MAX_TEXT_LEN,
            },
        ),
        (
            "no prefix",
            genuine.text[4..].to_owned(),
            TokenError::BadPrefix,
        ),
        (
            "offline prefix on an online check",
            format!("CP2:{}", &genuine.text[4..]),
            TokenError::WrongPrefix,
        ),
        ("not Base45", "CP1:abc".to_owned(), TokenError::BadBase45),
        (
            "bad signature",
            {
                let mut b = bytes.clone();
                let last = b.len() - 1;
                b[last] ^= 1;
                cp1_text(&b)
            },
            TokenError::BadSignature,
        ),
        (
            "duplicate claim",
            with_claims(|c| {
                let first = c[0].clone();
                c.push(first);
            }),
            TokenError::DuplicateClaim,
        ),
        (
            "missing claim",
            with_claims(|c| c.retain(|(k, _)| *k != ciborium::Value::from(7))),
            TokenError::MissingClaim("cti"),
        ),
        (
            "claim of the wrong type",
            with_claims(|c| {
                for (k, v) in c.iter_mut() {
                    if *k == ciborium::Value::from(4) {
                        *v = ciborium::Value::Text("soon".into());
                    }
                }
            }),
            TokenError::InvalidClaim("exp"),
        ),
        (
            "lifetime longer than allowed",
            issuer()
                .issue_token(&SUBJECT, Scopes::all(), NOW, 3600)
                .unwrap()
                .text,
            TokenError::BadLifetime,
        ),
    ];

    let mut seen = std::collections::HashSet::new();
    for (name, text, expected) in &cases {
        let got = online(text);
        assert_eq!(&got, expected, "case {name:?}");
        assert!(
            seen.insert(got.code()),
            "case {name:?} shares its error code"
        );
    }
}

/// Sealed subjects: every broken or foreign value is refused with its own error, and
/// the ring of subject keys picks the key by the id in the value's header.
#[test]
fn sealed_subject_corpus_each_case_has_its_own_error() {
    let genuine = verify_online(&cp1().text, &keyset(), &Validation::at(NOW)).unwrap();
    let sealed = genuine.claims.sealed_sub.clone();
    let cti = *genuine.claims.cti.as_bytes();
    let ring = SubjectKeys::new(vec![
        subject_key(),
        SubjectKey::with_id(1, &[0x23; 32]).unwrap(),
    ])
    .unwrap();
    let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut v = sealed.clone();
        edit(&mut v);
        v
    };
    assert_eq!(ring.open(&sealed, &cti, "cp1").unwrap(), SUBJECT);
    let cases: Vec<(&str, Vec<u8>, &[u8], TokenError)> = vec![
        (
            "unknown key id",
            edited(&|v| v[1] = 7),
            &cti,
            TokenError::UnknownSubjectKey { id: 7 },
        ),
        (
            "another held key's id",
            edited(&|v| v[1] = 1),
            &cti,
            TokenError::Unseal,
        ),
        (
            "unknown layout version",
            edited(&|v| v[0] = 0),
            &cti,
            TokenError::UnsupportedSealVersion { version: 0 },
        ),
        (
            "too short for a header and a tag",
            sealed[..17].to_vec(),
            &cti,
            TokenError::Unseal,
        ),
        (
            "ciphertext changed",
            edited(&|v| *v.last_mut().unwrap() ^= 1),
            &cti,
            TokenError::Unseal,
        ),
        (
            "lifted into another code",
            sealed.clone(),
            &[0u8; 16],
            TokenError::Unseal,
        ),
    ];
    for (name, value, unique, expected) in cases {
        assert_eq!(
            ring.open(&value, unique, "cp1").unwrap_err(),
            expected,
            "case {name:?}"
        );
    }
    let codes: std::collections::HashSet<_> = [
        TokenError::UnknownSubjectKey { id: 7 },
        TokenError::UnsupportedSealVersion { version: 0 },
        TokenError::Unseal,
    ]
    .iter()
    .map(TokenError::code)
    .collect();
    assert_eq!(codes.len(), 3, "each refusal has its own code");
}

#[test]
fn revoked_key_is_refused() {
    let keys = KeySet::new(vec![PublishedKey {
        key: issuer_key().public_key().clone(),
        status: KeyStatus::Revoked,
        usage: KeyUsage::Code,
    }])
    .unwrap();
    assert_eq!(
        verify_online(&cp1().text, &keys, &Validation::at(NOW)).unwrap_err(),
        TokenError::KeyRevoked
    );
}

/// `exp` is NOW+60 and `iat` NOW; the skew is 30 s either way, boundaries inclusive.
#[test]
fn time_boundaries_at_the_skew_plus_and_minus_one_second() {
    let text = cp1().text;
    let keys = keyset();
    let at = |t: u64| verify_online(&text, &keys, &Validation::at(t).with_skew(30));
    assert!(at(NOW + 60 + 30).is_ok(), "last valid second");
    assert_eq!(at(NOW + 60 + 31).unwrap_err(), TokenError::Expired);
    assert!(at(NOW + 60 + 29).is_ok());
    assert!(at(NOW - 30).is_ok(), "earliest valid second");
    assert_eq!(at(NOW - 31).unwrap_err(), TokenError::NotYetValid);
    assert!(at(NOW - 29).is_ok());
}

#[test]
fn offline_failures_have_their_own_errors() {
    let rng = SystemRandom::new();
    let signer = offline_signer();
    let keys = keyset();
    let code = signer.make_code(NOW, 60, 1, &rng).unwrap();
    let cert_end = signer.certificate().exp;

    // The certificate has expired (the code itself is fresh relative to "now").
    let late = signer.make_code(cert_end - 10, 60, 2, &rng).unwrap();
    assert_eq!(
        verify_offline(&late, &keys, &Validation::at(cert_end + 31)).unwrap_err(),
        TokenError::CertificateExpired
    );
    // The certificate is not valid yet.
    assert_eq!(
        verify_offline(&code, &keys, &Validation::at(NOW - 31)).unwrap_err(),
        TokenError::CertificateNotYetValid
    );
    // The certificate's issuer key is unknown to this gate.
    let empty = KeySet::new(vec![]).unwrap();
    assert_eq!(
        verify_offline(&code, &empty, &Validation::at(NOW)).unwrap_err(),
        TokenError::CertificateInvalid(Box::new(TokenError::UnknownKid))
    );
    // Signed by a key other than the certified one.
    let other = DeviceKey::generate(&rng).unwrap();
    let bytes = base45::decode(&code[4..]).unwrap();
    let sign1 = CoseSign1::from_tagged_slice(&bytes).unwrap();
    let mut forged = sign1.clone();
    forged.signature = other.sign(&rng, &sign1.tbs_data(&[])).unwrap();
    let forged = format!("CP2:{}", base45::encode(forged.to_tagged_vec().unwrap()));
    assert_eq!(
        verify_offline(&forged, &keys, &Validation::at(NOW)).unwrap_err(),
        TokenError::BadSignature
    );
    // An online token is not an offline code, and vice versa.
    assert_eq!(
        verify_offline(&cp1().text, &keys, &Validation::at(NOW)).unwrap_err(),
        TokenError::WrongPrefix
    );
    assert_eq!(
        verify_online(&code, &keys, &Validation::at(NOW)).unwrap_err(),
        TokenError::WrongPrefix
    );
    // A device certificate wrapped as a CP2 code is refused by its typ.
    let rng2 = SystemRandom::new();
    let dk = DeviceKey::generate(&rng2).unwrap();
    let cert = issuer()
        .certify(&SUBJECT, dk.public_key(), Scopes::all(), NOW, 60)
        .unwrap();
    assert_eq!(
        verify_offline(
            &format!("CP2:{}", base45::encode(&cert.bytes)),
            &keys,
            &Validation::at(NOW)
        )
        .unwrap_err(),
        TokenError::WrongTyp
    );
}

#[test]
fn offline_code_outside_its_certificate_is_refused() {
    let rng = SystemRandom::new();
    let signer = offline_signer();
    let keys = keyset();
    // A code that claims to start long before its certificate.
    let early = signer.make_code(NOW - 100, 60, 1, &rng).unwrap();
    assert_eq!(
        verify_offline(&early, &keys, &Validation::at(NOW - 60)).unwrap_err(),
        TokenError::CertificateNotYetValid
    );
    let v = Validation::at(NOW);
    let early_but_fresh = signer.make_code(NOW - 45, 100, 1, &rng).unwrap();
    assert_eq!(
        verify_offline(&early_but_fresh, &keys, &v).unwrap_err(),
        TokenError::OutsideCertificate
    );
    // A phone cannot mint a long-lived code.
    let long = signer.make_code(NOW, 3600, 1, &rng).unwrap();
    assert_eq!(
        verify_offline(&long, &keys, &v).unwrap_err(),
        TokenError::BadLifetime
    );
}

#[test]
fn untagged_or_wrongly_tagged_inputs_never_panic() {
    // Arbitrary short inputs run through every decoder without panicking.
    for len in 0..64usize {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
        let text = cp1_text(&bytes);
        let _ = verify_online(&text, &keyset(), &Validation::at(NOW));
        let _ = inspect(&text);
        let _ = verify_certificate(&bytes, &keyset(), &Validation::at(NOW));
    }
}
