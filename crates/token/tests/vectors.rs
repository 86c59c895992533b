//! Fixed test vectors: fixed keys and times give fixed bytes.
//!
//! The files in `tests/vectors/` let another implementation (the phone SDK, a gate
//! vendor's firmware) check itself against this one. Ed25519 is deterministic, so the
//! online token and the certificate are sign-and-compare vectors; ring's ECDSA is
//! randomised, so the offline code is a verify vector: stored text that must verify
//! at the stored time to the stored claims.
//!
//! Regenerate after a deliberate format change with
//! `CITYPASS_WRITE_VECTORS=1 cargo test -p citypass-token --test vectors`.

use std::path::PathBuf;

use citypass_token::*;
use serde_json::{Value, json};

const ISSUER_SEED: [u8; 32] = [0x11; 32];
const SUBJECT_KEY: [u8; 32] = [0x22; 32];
/// The subject key's id, written into the sealed subject's header.
const SUBJECT_KEY_ID: u8 = 1;
const SUBJECT: [u8; 16] = *b"citizen-00000001";
const IAT: u64 = 1_800_000_000;
const CTI: Cti = Cti::from_bytes([0xc7; 16]);
const SERIAL: CertSerial = CertSerial::from_bytes([0x5e; 16]);
/// A fixed P-256 offline key (PKCS#8), so the certificate vector is fixed bytes.
const OFFLINE_PKCS8_HEX: &str = "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420471019bfeb20d7bac4e19c7be64442219d99217741fbc5acb0f38726032f8931a144034200046688b280d616be16c77ec69958c45c3f7965f8269c6de90944883b33391e6317a97e5b708c5a4cfeafb380ad09a03d6d9b356f33e1374d46ed683e8d4307b8a1";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn writing() -> bool {
    std::env::var_os("CITYPASS_WRITE_VECTORS").is_some()
}

fn issuer() -> Issuer {
    Issuer::new(
        "cp",
        IssuerKey::from_seed(&ISSUER_SEED).unwrap(),
        subject_key(),
    )
}

fn subject_key() -> SubjectKey {
    SubjectKey::with_id(SUBJECT_KEY_ID, &SUBJECT_KEY).unwrap()
}

fn keyset() -> KeySet {
    KeySet::new(vec![PublishedKey {
        key: IssuerKey::from_seed(&ISSUER_SEED)
            .unwrap()
            .public_key()
            .clone(),
        status: KeyStatus::Active,
        usage: KeyUsage::Code,
    }])
    .unwrap()
}

fn offline_key() -> DeviceKey {
    DeviceKey::from_pkcs8(
        &hex::decode(OFFLINE_PKCS8_HEX).unwrap(),
        &SystemRandom::new(),
    )
    .expect("fixed offline key")
}

fn check_or_write(name: &str, actual: Value) {
    let path = dir().join(name);
    if writing() {
        std::fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
        return;
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        stored, actual,
        "{name} differs from this implementation's output"
    );
}

fn inputs() -> Value {
    json!({
        "issuer_ed25519_seed": hex::encode(ISSUER_SEED),
        "subject_key_chacha20poly1305": hex::encode(SUBJECT_KEY),
        "subject_key_id": SUBJECT_KEY_ID,
        "iss": "cp",
        "subject": hex::encode(SUBJECT),
        "iat": IAT,
    })
}

#[test]
fn online_token_vector() {
    // The four scenes the vector was written with (the government scene, bit 4, came
    // later; the vector's bytes stay fixed).
    let scopes = Scopes::from_bits(0b1111);
    let issued = issuer()
        .issue_token_with_cti(&SUBJECT, scopes, IAT, IAT + 60, CTI)
        .unwrap();
    let cose = base45::decode(&issued.text[4..]).unwrap();
    let v = verify_online(&issued.text, &keyset(), &Validation::at(IAT)).unwrap();
    check_or_write(
        "cp1.json",
        json!({
            "inputs": inputs(),
            "exp": IAT + 60,
            "cti": hex::encode(CTI),
            "scopes": scopes.bits(),
            "kid": IssuerKey::from_seed(&ISSUER_SEED).unwrap().kid().to_hex(),
            "sealed_sub_hex": hex::encode(&v.claims.sealed_sub),
            "cose_sign1_hex": hex::encode(&cose),
            "text": issued.text,
        }),
    );
    assert_eq!(v.claims.cti, CTI);
    assert_eq!(v.claims.sealed_sub[..2], [SEAL_VERSION, SUBJECT_KEY_ID]);
    assert_eq!(v.subject(&subject_key()).unwrap(), SUBJECT);
}

#[test]
fn certificate_vector() {
    let key = offline_key();
    let scopes = Scopes::NONE.with(Scene::Metro).with(Scene::Bus);
    let cert = issuer()
        .certify_with_serial(
            &SUBJECT,
            key.public_key(),
            scopes,
            IAT,
            IAT + 86_400,
            SERIAL,
        )
        .unwrap();
    check_or_write(
        "certificate.json",
        json!({
            "inputs": inputs(),
            "exp": IAT + 86_400,
            "serial": hex::encode(SERIAL),
            "scopes": scopes.bits(),
            "offline_public_key_sec1_hex": hex::encode(key.public_key().as_bytes()),
            "sealed_sub_hex": hex::encode(
                &verify_certificate(&cert.bytes, &keyset(), &Validation::at(IAT))
                    .unwrap()
                    .claims
                    .sealed_sub
            ),
            "cose_sign1_hex": hex::encode(&cert.bytes),
        }),
    );
}

#[test]
fn offline_code_vector() {
    let path = dir().join("cp2.json");
    let key = offline_key();
    let text = if writing() {
        let cert = issuer()
            .certify_with_serial(
                &SUBJECT,
                key.public_key(),
                Scopes::from_bits(0b1111),
                IAT,
                IAT + 86_400,
                SERIAL,
            )
            .unwrap();
        let signer = OfflineSigner::new(offline_key(), cert.bytes).unwrap();
        let text = signer
            .make_code(IAT + 100, 60, 42, &SystemRandom::new())
            .unwrap();
        let v = verify_offline(&text, &keyset(), &Validation::at(IAT + 100)).unwrap();
        let doc = json!({
            "inputs": inputs(),
            "offline_pkcs8_hex": OFFLINE_PKCS8_HEX,
            "verify_at": IAT + 100,
            "expect": { "iat": IAT + 100, "exp": IAT + 160, "counter": 42,
                        "certificate_serial": hex::encode(SERIAL), "cti": hex::encode(v.cti) },
            "text": text,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
        text
    } else {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let text = doc["text"].as_str().unwrap().to_owned();
        let v = verify_offline(&text, &keyset(), &Validation::at(IAT + 100)).unwrap();
        assert_eq!(v.counter, doc["expect"]["counter"].as_u64().unwrap());
        assert_eq!(v.exp, doc["expect"]["exp"].as_u64().unwrap());
        assert_eq!(hex::encode(v.cti), doc["expect"]["cti"].as_str().unwrap());
        assert_eq!(
            hex::encode(v.certificate.serial),
            doc["expect"]["certificate_serial"].as_str().unwrap()
        );
        assert_eq!(v.subject(&subject_key()).unwrap(), SUBJECT);
        text
    };
    assert!(text.starts_with("CP2:"));
}

#[test]
fn keyset_vector() {
    let path = dir().join("keyset.jwks.json");
    let jwks = keyset().to_jwks();
    if writing() {
        std::fs::write(&path, jwks + "\n").unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap();
    assert_eq!(KeySet::from_jwks(&stored).unwrap(), keyset());
}
